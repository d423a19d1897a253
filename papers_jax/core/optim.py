"""Optimizers and learning-rate schedules from the config.

`config.optimizer`: name (adamw | adam | bert_adam | sgd | lars | lamb | rmsprop), lr, and the optimizer's own
fields (bert_adam: BERT's Adam with decoupled weight decay and no bias correction, see `bert_adam`; rmsprop:
TensorFlow's RMSProp of the Inception-v3 / MnasNet / MixNet recipes, with `decay`, `momentum` and `eps` inside
the square root, the mean square started at 1, and L2 `weight_decay` added to the gradient as for sgd);
`weight_decay` with `wd_exclude` (regexes over parameter paths such as "blocks/3/attn/qkv/bias");
`clip_grad_norm` (global norm, 0 = off); `layer_decay` (layer-wise LR decay, 1 = off);
`freeze` (regexes of parameters that receive no update and keep no optimizer state).
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

import re

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
  """Multiplies each update by a constant per-parameter factor."""
  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state
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
  tx = optax.chain(*parts) if len(parts) > 1 else tx

  freeze = tuple(cfg.get("freeze", ()))
  if freeze:
    labels = jax.tree.map(lambda p: "frozen" if _matches(freeze, p) else "train", paths)
    if all(l == "frozen" for l in jax.tree.leaves(labels)):
      raise ConfigError(f"optimizer.freeze {list(freeze)} matches every parameter; nothing would train")
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule
