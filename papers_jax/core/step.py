"""The jitted train and eval steps: pure functions of (state, batch).

A task supplies `loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))`
where `loss` is the mean over the batch, and optionally `post_update` (EMA teachers). The train step optionally splits the batch into
`grad_accum_steps` micro-batches with `lax.scan`, averages their gradients, applies the optimizer
and skips the update (keeping params and optimizer state) when the loss or gradient is not finite.

`ema_decay` > 0 keeps a weight EMA in `state.extra["ema_params"]` (core/state.add_weight_ema), as
DeiT (timm's ModelEmaV2): after every applied step ema ← d·ema + (1 − d)·params in float32, with
a constant d from the first step on: no warm-up and no bias correction, the average starting at
the initial (or `init_from`) params. `uniform_average` keeps the plain mean of the params after steps
1 … n there instead (Polyak / SWA averaging, torch's AveragedModel).

Optimizer phases (core/optim.py: Phase, Phased): when `tx` is a `Phased`, `loss_fn` is {phase name:
loss_fn} and one step runs the phases in order. Each phase differentiates its own loss with respect to its
own parameters only (the others enter as constants), applies its own optimizer, and hands the updated params
and model state (BatchNorm statistics) to the next phase: a GAN's generator loss sees the discriminator
its phase just updated. Each phase draws its randomness from `fold_in(rng, phase index)`, splits the batch
into micro-batches as above, and sees the same batch. A non-finite loss or gradient in any phase keeps the
whole state. The metrics are each phase's `<name>/loss`, `<name>/grad_norm`, `<name>/lr` and its own
metrics as `<name>/<metric>`, plus `loss` (the sum of the phases' losses), `grad_norm` (over all phases'
gradients) and `lr` (the first phase's), which the loop logs and checks as for one optimizer.
"""

import jax
import jax.numpy as jnp
import optax

from papers_jax.core import optim, sharding


def _split_micro(batch, num_micro: int):
  """(B, ...) → (num_micro, B/num_micro, ...); each micro-batch keeps the batch's sharding."""
  def split(x):
    x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:]).swapaxes(0, 1)
    return sharding.constrain(x, (None, "act_batch") + (None,) * (x.ndim - 2))
  return jax.tree.map(split, batch)


def make_train_step(loss_fn, tx, schedule, *, grad_accum_steps: int = 1, post_update=None, ema_decay: float = 0.0,
                    uniform_average: bool = False):
  """Builds `train_step(state, batch) -> (state, metrics)`; metrics are float32 scalars.

  With optimizer phases, `loss_fn` is {phase name: loss_fn}, `tx` an `optim.Phased` and `schedule` unused.

  `post_update(params, model_state, step) -> model_state`, if given, runs after the optimizer on
  the new params: momentum (EMA) encoders and teachers that live in the model state follow the
  online weights there, inside the same jitted step.
  """

  def grads_and_metrics(params, model_state, batch, rng, loss_fn=loss_fn):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if grad_accum_steps == 1:
      (loss, (metrics, model_state)), grads = grad_fn(params, model_state, batch, rng)
      return loss, metrics, model_state, grads

    def micro_step(carry, micro):
      grads_sum, loss_sum, metrics_sum, model_state, i = carry
      (loss, (metrics, model_state)), grads = grad_fn(params, model_state, micro, jax.random.fold_in(rng, i))
      grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
      metrics_sum = jax.tree.map(jnp.add, metrics_sum, metrics)
      return (grads_sum, loss_sum + loss, metrics_sum, model_state, i + 1), None

    micro_batches = _split_micro(batch, grad_accum_steps)
    first = jax.tree.map(lambda x: x[0], micro_batches)
    metrics_shape = jax.eval_shape(lambda: grad_fn(params, model_state, first, rng)[0][1][0])
    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)
    carry = (zeros(params), jnp.zeros((), jnp.float32), zeros(metrics_shape), model_state, jnp.zeros((), jnp.int32))
    (grads, loss, metrics, model_state, _), _ = jax.lax.scan(micro_step, carry, micro_batches)
    n = float(grad_accum_steps)
    return loss / n, jax.tree.map(lambda m: m / n, metrics), model_state, jax.tree.map(lambda g: g / n, grads)

  def inject_nan(injected_nan, loss, grads):
    if injected_nan is None:
      return loss, grads
    bad = injected_nan.any()
    return jnp.where(bad, jnp.nan, loss), jax.tree.map(lambda g: jnp.where(bad, jnp.nan, g), grads)

  def phased_update(state, batch, rng, injected_nan):
    """The phases in order (module docstring); (params, opt_state, model_state, loss, grad_norm, metrics)."""
    params, model_state, opt_state, metrics, losses, norms = state.params, state.model_state, {}, {}, [], []
    for i, phase in enumerate(tx.phases):
      name = phase.name
      sub = optim.select(params, tx.masks[name])
      phase_loss = lambda s, ms, b, r, params=params, fn=loss_fn[name]: fn(optim.overlay(params, s), ms, b, r)
      loss, phase_metrics, model_state, grads = grads_and_metrics(sub, model_state, batch,
                                                                  jax.random.fold_in(rng, i), loss_fn=phase_loss)
      loss, grads = inject_nan(injected_nan, loss, grads)
      updates, opt_state[name] = tx.txs[name].update(grads, state.opt_state[name], sub)
      params = optim.overlay(params, optax.apply_updates(sub, updates))
      norms.append(optax.tree.norm(grads))
      losses.append(loss)
      metrics |= {f"{name}/{k}": v for k, v in phase_metrics.items()}
      metrics |= {f"{name}/loss": loss, f"{name}/grad_norm": norms[-1],
                  f"{name}/lr": jnp.asarray(tx.schedules[name](state.step), jnp.float32)}
    grad_norm = jnp.sqrt(jnp.sum(jnp.stack(norms) ** 2))
    metrics["lr"] = metrics[f"{tx.phases[0].name}/lr"]
    return params, opt_state, model_state, sum(losses), grad_norm, metrics

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    batch = dict(batch)
    injected_nan = batch.pop("nan", None)  # fault injection (config.debug.nan_at_positions)
    if isinstance(tx, optim.Phased):
      params, opt_state, model_state, loss, grad_norm, metrics = phased_update(state, batch, rng, injected_nan)
    else:
      loss, metrics, model_state, grads = grads_and_metrics(state.params, state.model_state, batch, rng)
      loss, grads = inject_nan(injected_nan, loss, grads)
      grad_norm = optax.tree.norm(grads)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      metrics = {**metrics, "lr": jnp.asarray(schedule(state.step), jnp.float32)}
    if post_update is not None:
      model_state = post_update(params, model_state, state.step)
    extra = state.extra
    if ema_decay or uniform_average:
      params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
      # uniform: the mean of the params after steps 1 … n, the first update a copy (AveragedModel's)
      step_size = 1.0 / (state.step.astype(jnp.float32) + 1.0) if uniform_average else 1.0 - ema_decay
      extra = {**extra, "ema_params": optax.incremental_update(params32, extra["ema_params"], step_size)}
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state),
                              model_state=keep(model_state, state.model_state), extra=keep(extra, state.extra))
    metrics = {**{k: v.astype(jnp.float32) for k, v in metrics.items()}, "loss": loss.astype(jnp.float32),
               "grad_norm": grad_norm.astype(jnp.float32), "nonfinite": 1.0 - finite.astype(jnp.float32)}
    return new_state, metrics

  return train_step


def jit_train_step(train_step, state_shardings, mesh, rules):
  """jax.jit with explicit shardings; the state is donated."""
  return jax.jit(train_step, in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules)),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))


def jit_eval_step(eval_fn, state_shardings, mesh, rules):
  """`eval_fn(params, model_state, batch) -> dict of per-batch sums` under jit."""
  def step(state, batch):
    return eval_fn(state.params, state.model_state, batch)
  return jax.jit(step, in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules)),
                 out_shardings=sharding.replicated(mesh))
