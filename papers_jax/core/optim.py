"""Optimizers and learning-rate schedules from the config.

`config.optimizer`: name (adamw | adam | bert_adam | sgd | lars | lamb | rmsprop), lr, and the optimizer's own
fields (bert_adam: BERT's Adam with decoupled weight decay and no bias correction, see `bert_adam`; rmsprop:
TensorFlow's RMSProp of the Inception-v3 / MnasNet / MixNet recipes, with `decay`, `momentum` and `eps` inside
the square root, the mean square started at 1, and L2 `weight_decay` added to the gradient as for sgd);
`weight_decay` with `wd_exclude` (regexes over parameter paths such as "blocks/3/attn/qkv/bias");
`clip_grad_norm` (global norm, 0 = off); `layer_decay` (layer-wise LR decay, 1 = off);
`freeze` (regexes of parameters that receive no update and keep no optimizer state);
`lr_multipliers`: ((regex, factor), ...), the first pattern that matches a parameter's path scales its
whole update, decay included (a per-group lr: DETR's backbone trains at 0.1 × the lr).
`config.schedule`: name (cosine | linear | rsqrt | step | exponential | constant), warmup_steps,
end_lr_ratio, for `step`: boundaries (fractions of training) with decay_factor; for `exponential`
(Inception-v3, MnasNet, MixNet): lr × decay_factor^⌊s / (decay_every · steps)⌋ after the warmup, decay_every
a fraction of the whole schedule's steps. Warmup rises linearly from 0,
or with `warmup_shape="constant"` holds lr × `warmup_lr_ratio` (ResNet-110 on CIFAR: 0.01, then 0.1).
A run that continues another (BERT's phase 2 after phase 1) sets `total_steps`, the length of the
whole schedule (0: this run's), and `step_offset`, the steps already done: the lr at this run's step s
is the whole schedule's at step_offset + s, and warmup_steps and boundaries count from the start of
the whole schedule.
"""

import dataclasses
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from papers_jax.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "bert_adam", "sgd", "lars", "lamb", "rmsprop")
SCHEDULES = ("cosine", "linear", "rsqrt", "step", "exponential", "constant", "poly")


def param_paths(params) -> dict:
  """A tree like `params` whose leaves are their '/'-joined paths ('blocks/0/attn/qkv/kernel')."""
  def path_str(path, _):
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
  return jax.tree_util.tree_map_with_path(path_str, params)


def _matches(patterns, path: str) -> bool:
  return any(re.search(p, path) for p in patterns)


def _lr_multiplier(multipliers, path: str) -> float:
  for entry in multipliers:
    if len(entry) != 2:
      raise ConfigError(f"optimizer.lr_multipliers takes (regex, factor) pairs, got {entry!r}")
    if re.search(entry[0], path):
      return float(entry[1])
  return 1.0


def make_schedule(cfg, base_lr: float, total_steps: int):
  """The lr at each step of a run of `total_steps` steps (a continuation: see the module docstring)."""
  offset = int(cfg.get("step_offset", 0))
  whole = int(cfg.get("total_steps", 0) or 0) or offset + total_steps
  if offset < 0 or offset + total_steps > whole:
    raise ConfigError(f"schedule.step_offset ({offset}) + this run's {total_steps} steps exceed "
                      f"schedule.total_steps ({whole}); set total_steps to the whole run's length")
  schedule = _whole_schedule(cfg, base_lr, whole)
  return (lambda step: schedule(step + offset)) if offset else schedule


def _whole_schedule(cfg, base_lr: float, total_steps: int):
  name, warmup = cfg.name, int(cfg.get("warmup_steps", 0))
  if name not in SCHEDULES:
    raise ConfigError(f"unknown schedule {name!r}; choose from {SCHEDULES}")
  if warmup >= total_steps and name != "constant":
    raise ConfigError(f"schedule.warmup_steps ({warmup}) must be smaller than the {total_steps} training steps")
  end = base_lr * float(cfg.get("end_lr_ratio", 0.0))
  shape = cfg.get("warmup_shape", "linear")
  if shape not in ("linear", "constant"):
    raise ConfigError(f"schedule.warmup_shape={shape!r}; choose 'linear' (from 0) or 'constant' (lr × warmup_lr_ratio)")
  if not warmup:
    warm = None
  elif shape == "constant":
    warm = optax.constant_schedule(base_lr * float(cfg.get("warmup_lr_ratio", 0.1)))
  else:
    warm = optax.linear_schedule(0.0, base_lr, warmup)
  decay_steps = total_steps - warmup
  if name == "cosine":
    main = optax.cosine_decay_schedule(base_lr, decay_steps, alpha=end / base_lr if base_lr else 0.0)
  elif name == "linear":
    main = optax.linear_schedule(base_lr, end, decay_steps)
  elif name == "rsqrt":  # The Transformer's schedule: lr ∝ 1/sqrt(step) after warmup.
    shift = max(warmup, 1)
    main = lambda step: base_lr * jnp.sqrt(shift / (step + shift))
  elif name == "step":
    boundaries = {int(b * total_steps) - warmup: float(cfg.get("decay_factor", 0.1)) for b in cfg.boundaries}
    main = optax.piecewise_constant_schedule(base_lr, boundaries)
  elif name == "poly":  # DeepLab's and DANet's: lr · (1 − step / steps)^power (schedule.power, 0.9 there)
    main = optax.polynomial_schedule(base_lr, end, float(cfg.get("power", 0.9)), decay_steps)
  elif name == "exponential":
    every = max(1, round(float(cfg.decay_every) * total_steps))
    main = optax.exponential_decay(base_lr, every, float(cfg.get("decay_factor", 0.1)), staircase=True)
  else:
    main = optax.constant_schedule(base_lr)
  return optax.join_schedules([warm, main], [warmup]) if warm else main


def layer_ids(params, num_layers: int | None = None) -> dict:
  """Layer index per parameter for layer-wise LR decay: embeddings 0, blocks/i → i+1, rest num_layers+1."""
  paths = param_paths(params)
  blocks = [int(m.group(1)) for p in jax.tree.leaves(paths) if (m := re.search(r"(?:^|/)blocks/(\d+)/", p))]
  num_layers = (max(blocks) + 1 if blocks else 0) if num_layers is None else num_layers
  def one(path):
    if m := re.search(r"(?:^|/)blocks/(\d+)/", path):
      return int(m.group(1)) + 1
    if re.search(r"(^|/)(patch_embed|cls_token|pos_embed|reg_token|embeddings)(/|$)", path):
      return 0
    return num_layers + 1
  return jax.tree.map(one, paths), num_layers


def scale_by_tree(scales) -> optax.GradientTransformation:
  """Multiplies each update by a constant per-parameter factor. Inside `optimizer.freeze`'s multi_transform
  the frozen parameters' updates are optax's MaskedNode placeholders, which pass through."""
  def scale(s, u):
    return u if isinstance(u, optax.MaskedNode) else u * jnp.asarray(s, u.dtype)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(scale, scales, updates), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def scale_by_adam_without_bias_correction(b1: float = 0.9, b2: float = 0.999,
                                          eps: float = 1e-6) -> optax.GradientTransformation:
  """Adam's direction m / (sqrt(v) + eps) with m, v the plain moving averages: no division by
  1 - b^t, so the first steps are smaller than Adam's (optax.scale_by_adam always corrects)."""
  def init_fn(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(count=optax.safe_increment(state.count), mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def bert_adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, weight_decay: float = 0.01,
              mask=None) -> optax.GradientTransformation:
  """BERT's optimizer (`AdamWeightDecayOptimizer` of the reference TensorFlow code, `BertAdam` in HF's
  first PyTorch port): p ← p − lr · (m / (sqrt(v) + eps) + weight_decay · p), with Adam's moments not
  bias-corrected and the decay decoupled from them (as AdamW) and skipped where `mask` is False."""
  return optax.chain(scale_by_adam_without_bias_correction(b1, b2, eps),
                     optax.add_decayed_weights(weight_decay, mask=mask),
                     optax.scale_by_learning_rate(learning_rate))


def make_optimizer(cfg, schedule_cfg, params, total_steps: int):
  """Returns (optax transformation, learning-rate schedule) for a params tree (pure dict)."""
  name = cfg.name
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
  schedule = make_schedule(schedule_cfg, float(cfg.lr), total_steps)
  paths = param_paths(params)
  exclude = tuple(cfg.get("wd_exclude", ()))
  wd_mask = jax.tree.map(lambda p: not _matches(exclude, p), paths)
  wd = float(cfg.get("weight_decay", 0.0))
  if name == "adamw":
    tx = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                     weight_decay=wd, mask=wd_mask)
  elif name == "bert_adam":
    tx = bert_adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-6),
                   weight_decay=wd, mask=wd_mask)
  elif name == "adam":
    tx = optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(wd, mask=wd_mask),
                     optax.sgd(schedule, momentum=cfg.get("momentum", 0.9) or None,
                               nesterov=cfg.get("nesterov", False)))
  elif name == "rmsprop":
    tx = optax.chain(optax.add_decayed_weights(wd, mask=wd_mask),
                     optax.rmsprop(schedule, decay=cfg.get("decay", 0.9), eps=cfg.get("eps", 1e-3),
                                   initial_scale=1.0, eps_in_sqrt=True, momentum=cfg.get("momentum", 0.9) or None))
  elif name == "lars":
    tx = optax.lars(schedule, weight_decay=wd, weight_decay_mask=wd_mask, trust_ratio_mask=wd_mask,
                    trust_coefficient=cfg.get("trust_coefficient", 0.001), momentum=cfg.get("momentum", 0.9),
                    nesterov=cfg.get("nesterov", False))
  else:
    tx = optax.lamb(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-6),
                    weight_decay=wd, mask=wd_mask)

  parts = []
  clip = float(cfg.get("clip_grad_norm", 0.0))
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  parts.append(tx)
  layer_decay = float(cfg.get("layer_decay", 1.0))
  if layer_decay != 1.0:
    ids, num_layers = layer_ids(params)
    parts.append(scale_by_tree(jax.tree.map(lambda i: layer_decay ** (num_layers + 1 - i), ids)))
  multipliers = tuple(cfg.get("lr_multipliers", ()))
  if multipliers:
    parts.append(scale_by_tree(jax.tree.map(lambda p: _lr_multiplier(multipliers, p), paths)))
  tx = optax.chain(*parts) if len(parts) > 1 else tx

  freeze = tuple(cfg.get("freeze", ()))
  if freeze:
    labels = jax.tree.map(lambda p: "frozen" if _matches(freeze, p) else "train", paths)
    if all(l == "frozen" for l in jax.tree.leaves(labels)):
      raise ConfigError(f"optimizer.freeze {list(freeze)} matches every parameter; nothing would train")
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule


# ---------------------------------------------------------------------------- optimizer phases
# A task that trains parts of its model with different optimizers and losses (a GAN: the discriminator, then
# the generator) declares `phases`, an ordered tuple of `Phase`s, and its `make_loss_fn` returns
# {phase name: loss_fn}. Each phase owns a group of parameters (every parameter belongs to exactly one) and
# reads its optimizer and schedule from `config.phases.<name>.optimizer` / `.schedule`, sections of the same
# form as `config.optimizer` / `config.schedule`. `Phased` holds the phases' transformations; the train step
# (core/step.py) runs the phases in order inside one jitted step, each seeing the params the earlier ones
# updated. The optimizer state is {phase name: that phase's optax state over its own parameters}, sharded
# like those parameters and checkpointed with the rest of the train state.


@dataclasses.dataclass(frozen=True)
class Phase:
  """One optimizer phase: `name` (its config section and metrics prefix) and `params`, the parameters it
  updates: a regex searched in each '/'-joined parameter path ("^discriminator/"), or a predicate on it."""
  name: str
  params: str | Callable[[str], bool]

  def owns(self, path: str) -> bool:
    return bool(re.search(self.params, path)) if isinstance(self.params, str) else bool(self.params(path))


def phase_masks(phases, params) -> dict:
  """{phase name: tree of bools like `params`}; a ValueError unless every parameter is in exactly one phase."""
  paths = jax.tree.leaves(param_paths(params))
  owners = {p: [ph.name for ph in phases if ph.owns(p)] for p in paths}
  bad = {p: o for p, o in owners.items() if len(o) != 1}
  if bad:
    raise ValueError("every parameter must belong to exactly one optimizer phase; these do not (path: phases): "
                     + ", ".join(f"{p}: {o}" for p, o in list(bad.items())[:10]))
  empty = [ph.name for ph in phases if not any(ph.name in o for o in owners.values())]
  if empty:
    raise ValueError(f"the optimizer phases {empty} own no parameters")
  return {ph.name: jax.tree.map(lambda p, name=ph.name: owners[p] == [name], param_paths(params))
          for ph in phases}


def select(tree: dict, mask: dict) -> dict:
  """The nested dict of `tree`'s leaves where `mask` is True (empty branches dropped); paths are kept, so
  path regexes (wd_exclude, freeze) mean the same on the subset."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      sub = select(value, mask[key])
      if sub:
        out[key] = sub
    elif mask[key]:
      out[key] = value
  return out


def overlay(tree: dict, sub: dict) -> dict:
  """A copy of `tree` with the leaves of `sub` (a `select`ed subset) in their places."""
  out = dict(tree)
  for key, value in sub.items():
    out[key] = overlay(tree[key], value) if isinstance(value, dict) else value
  return out


@dataclasses.dataclass(eq=False)  # hashed by identity: jax.jit(tx.init)
class Phased:
  """The transformations of a task's optimizer phases: `txs` and `schedules` by phase name, `masks` their
  parameter groups (`phase_masks`), `phases` the order."""
  phases: tuple
  masks: dict
  txs: dict
  schedules: dict

  def init(self, params) -> dict:
    return {ph.name: self.txs[ph.name].init(select(params, self.masks[ph.name])) for ph in self.phases}


def make_phased_optimizer(config, phases, params, total_steps: int) -> Phased:
  """A `Phased` from `config.phases.<name>.optimizer` / `.schedule` (see `check_phase_config`)."""
  masks = phase_masks(phases, params)
  txs, schedules = {}, {}
  for ph in phases:
    section = config.phases[ph.name]
    txs[ph.name], schedules[ph.name] = make_optimizer(section.optimizer, section.schedule,
                                                      select(params, masks[ph.name]), total_steps)
  return Phased(tuple(phases), masks, txs, schedules)


def check_phase_config(config, phases) -> None:
  """ConfigErrors for a missing `phases.<name>` section or a bad optimizer / schedule setting in one."""
  from papers_jax.core import config as config_lib
  sections = config.get("phases") or {}
  missing = [ph.name for ph in phases if ph.name not in sections or not {"optimizer", "schedule"} <= set(
      sections[ph.name])]
  if missing:
    raise ConfigError(f"task {config.task!r} trains in the optimizer phases {[ph.name for ph in phases]}; set "
                      f"config.phases.<name>.optimizer and .schedule for {missing} (core/config.py: phase_sections)")
  extra = sorted(set(sections) - {ph.name for ph in phases})
  if extra:
    raise ConfigError(f"config.phases has sections {extra} that task {config.task!r} does not train; its phases "
                      f"are {[ph.name for ph in phases]}")
  ranges = [(p, s) for p, s in config_lib.RANGES if p.startswith(("optimizer.", "schedule."))]
  for ph in phases:
    config_lib.check_ranges(sections[ph.name], ranges, f"phases.{ph.name}.")
    config_lib.check_choices(sections[ph.name], {"optimizer.name": OPTIMIZERS, "schedule.name": SCHEDULES})
