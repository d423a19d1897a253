"""The train state: a pytree of plain arrays, created directly with its final sharding.

`params` and `model_state` are pure nested dicts (nnx.State.to_pure_dict); plain dicts flatten in
C++, so passing the state into the jitted step costs little per call, unlike nnx.State objects.
`extra` is the slot for a task's additional state (EMA teachers, queues, centres); supervised
training keeps only the optional weight EMA there (`extra["ema_params"]`, `add_weight_ema`).
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from papers_jax.core import optim, sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  extra: Any = flax.struct.field(default_factory=dict)


def split_model(model: nnx.Module):
  """(graphdef, params pure dict, other state pure dict)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def merge_model(graphdef, params, model_state) -> nnx.Module:
  """Rebuilds the module from pure dicts (inside jit this is free: it only re-wraps arrays)."""
  return nnx.merge(graphdef, params, model_state, copy=True)


def abstract_model(build_model):
  """(graphdef, abstract params State, abstract rest State) without allocating any array."""
  model = nnx.eval_shape(lambda: build_model(nnx.Rngs(params=0)))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params, rest


def create_train_state(build_model, make_tx, mesh, rules, seed: int):
  """Initialises params, model state and optimizer state sharded over `mesh`.

  `build_model(rngs)` makes the nnx.Module; `make_tx(params)` returns the optax transformation, or an
  `optim.Phased` for a task with optimizer phases (then `opt_state` is {phase name: its state}).
  Nothing full-size is materialised on one device: init runs under jit with out_shardings.
  Returns (state, state_shardings, graphdef, tx).
  """
  graphdef, abs_params, abs_rest = abstract_model(build_model)
  param_sh = sharding.state_shardings(abs_params, mesh, rules)
  rest_sh = sharding.state_shardings(abs_rest, mesh, rules)
  abs_params_pure = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(abs_params))
  tx = make_tx(abs_params_pure)

  def init(key):
    _, params, rest = split_model(build_model(nnx.Rngs(params=key)))
    return params, rest

  key = jax.random.PRNGKey(seed)
  init_key, train_key = jax.random.split(key)
  params, model_state = jax.jit(init, out_shardings=(param_sh, rest_sh))(init_key)
  if isinstance(tx, optim.Phased):  # {phase: its optimizer state over its own params} (core/optim.py)
    opt_sh = {name: opt_state_shardings(tx.txs[name], optim.select(abs_params_pure, mask),
                                        optim.select(param_sh, mask), mesh) for name, mask in tx.masks.items()}
  else:
    opt_sh = opt_state_shardings(tx, abs_params_pure, param_sh, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
  rep = sharding.replicated(mesh)
  state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), rep), params=params, model_state=model_state,
                     opt_state=opt_state, rng=jax.device_put(train_key, rep))
  shardings = TrainState(step=rep, params=param_sh, model_state=rest_sh, opt_state=opt_sh, rng=rep)
  return state, shardings, graphdef, tx


def add_weight_ema(state: TrainState, shardings: TrainState):
  """(state, shardings) with `extra["ema_params"]`: a float32 copy of the params, sharded like them.

  Called after any `init_from`, so the average starts at the loaded weights (timm's ModelEmaV2 copies
  the model when it is built). `make_train_step(ema_decay=...)` updates it; checkpoints carry it.
  """
  # A real copy (jnp.array(copy=True)): the state is donated to the step, so the average must not share
  # the params' buffers.
  ema = jax.jit(lambda p: jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), p),
                out_shardings=shardings.params)(state.params)
  return (state.replace(extra={**state.extra, "ema_params": ema}),
          shardings.replace(extra={**shardings.extra, "ema_params": shardings.params}))


def opt_state_shardings(tx, abs_params, param_shardings, mesh):
  """Optimizer-state leaves shaped like a parameter take its sharding; the rest is replicated."""
  abs_opt = jax.eval_shape(tx.init, abs_params)
  rep = sharding.replicated(mesh)
  masked = lambda x: isinstance(x, optax.MaskedNode)  # params a masked transform (freeze) leaves out
  return optax.tree_map_params(tx, lambda p, s: p if masked(p) else s, abs_opt, param_shardings,
                               transform_non_params=lambda _: rep, is_leaf=masked)


def abstract_state(shardings: TrainState, state_shapes: TrainState) -> TrainState:
  """ShapeDtypeStructs with shardings, the target for restoring onto any mesh."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shapes, shardings)
