"""Logical-axis sharding: the one place that talks to JAX's sharding APIs.

Parameters carry logical axis names in their `axes` metadata (see nn/linear.py `param`) and
activations are constrained at block boundaries with names such as `act_batch`. A rules table
maps each logical name to mesh axes of ("data", "fsdp", "tensor"). A dimension whose size the
mesh axes do not divide is replicated instead, so small heads and odd widths never fail to shard.
"""

import contextlib
import math
import threading
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from papers_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes (a name, a tuple of names, or None for replicated).
DEFAULT_RULES = (
    ("act_batch", ("data", "fsdp")),
    ("act_len", None),
    ("act_emb", None),
    ("act_heads", "tensor"),
    ("act_kv", None),
    ("act_mlp", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("classes", None),
    ("norm", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
)

_context = threading.local()


def rules_to_config(rules=DEFAULT_RULES) -> dict:
  """The rules as config strings: logical name -> "" (replicated), "fsdp" or "data,fsdp"."""
  text = lambda axes: "" if axes is None else axes if isinstance(axes, str) else ",".join(axes)  # noqa: E731
  return {name: text(axes) for name, axes in rules}


def rules_from_config(table) -> tuple:
  """`config.sharding_rules` (logical name -> mesh axes as text, see `rules_to_config`) as a rules table.

  Every logical name must have a rule, so the table a run used is complete in its config.json;
  `--config.sharding_rules.embed=tensor` changes one of them.
  """
  table = dict(table)
  missing = [name for name, _ in DEFAULT_RULES if name not in table]
  if missing:
    raise ConfigError(f"sharding_rules has no rule for {missing}; give each one (\"\" replicates)")
  rules = []
  for name, text in table.items():
    axes = tuple(a.strip() for a in str(text or "").split(",") if a.strip())
    unknown = [a for a in axes if a not in MESH_AXES]
    if unknown or len(set(axes)) != len(axes):
      raise ConfigError(f"sharding_rules.{name}={text!r}: give mesh axes from {MESH_AXES}, comma-separated, "
                        "each at most once, or \"\" to replicate")
    rules.append((name, None if not axes else axes[0] if len(axes) == 1 else axes))
  return tuple(rules)


def make_mesh(shape: dict, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh from sizes such as {data: -1, fsdp: 1, tensor: 1}; -1 fills."""
  devices = list(jax.devices() if devices is None else devices)
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise ConfigError(f"unknown mesh axes {sorted(unknown)}; the mesh axes are {MESH_AXES}")
  sizes = [int(shape.get(name, 1)) for name in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {len(devices)} devices")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                     f"but {len(devices)} are available; set one axis to -1 to fill")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def _mesh_axis_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


def logical_to_spec(logical_axes: Sequence[str | None], rules=DEFAULT_RULES, shape=None,
                    mesh: Mesh | None = None) -> PartitionSpec:
  """Maps logical names to a PartitionSpec; with `shape` and `mesh`, undividable dims stay replicated."""
  table = dict(rules)
  used, spec = set(), []
  for i, name in enumerate(logical_axes):
    axes = table.get(name) if name is not None else None
    if axes is not None:
      names = (axes,) if isinstance(axes, str) else tuple(axes)
      names = tuple(a for a in names if a not in used and (mesh is None or mesh.shape[a] > 1))
      if shape is not None and mesh is not None and shape[i] % _mesh_axis_size(mesh, names):
        names = ()
      used.update(names)
      axes = None if not names else names[0] if len(names) == 1 else names
    spec.append(axes)
  return PartitionSpec(*spec)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules=DEFAULT_RULES):
  """Makes `constrain` active while tracing models for this mesh."""
  previous = getattr(_context, "value", None)
  _context.value = (mesh, tuple(rules))
  try:
    yield mesh
  finally:
    _context.value = previous


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """Constrains an activation's sharding by logical names; a no-op outside `use_mesh`."""
  ctx = getattr(_context, "value", None)
  if ctx is None:
    return x
  mesh, rules = ctx
  spec = logical_to_spec(logical_axes, rules, x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
  """Leading (batch) axis over the data-parallel axes, everything else replicated."""
  return NamedSharding(mesh, PartitionSpec(dict(rules).get("act_batch")))


def data_parallel_size(mesh: Mesh, rules=DEFAULT_RULES) -> int:
  return _mesh_axis_size(mesh, dict(rules).get("act_batch"))


def variable_axes(variable: nnx.Variable) -> tuple | None:
  """The logical axis names a variable was created with (None when it has none)."""
  return variable.get_metadata().get("axes")


def state_shardings(state: nnx.State, mesh: Mesh, rules=DEFAULT_RULES):
  """NamedShardings for an (abstract) nnx.State, as a pure dict with the state's structure."""
  def one(variable):
    axes = variable_axes(variable)
    shape = variable.get_value().shape
    if axes is None:
      return NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, logical_to_spec(axes, rules, shape, mesh))
  return nnx.to_pure_dict(jax.tree.map(one, state, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def replicated_report(abstract_params: nnx.State, mesh: Mesh, rules=DEFAULT_RULES, *, min_size: int) -> list[dict]:
  """Parameters of at least `min_size` elements that the rules would shard over a mesh axis of size
  > 1 but that stay replicated along some dimension, because the mesh axes do not divide it."""
  rows = []
  def visit(path, variable):
    axes, shape = variable_axes(variable), variable.get_value().shape
    if axes is None or math.prod(shape) < min_size:
      return
    wanted = logical_to_spec(axes, rules, mesh=mesh)
    got = logical_to_spec(axes, rules, shape, mesh)
    for dim, (w, g) in enumerate(zip(wanted, got)):
      if w is not None and g != w:
        rows.append({"param": "/".join(str(getattr(k, "key", k)) for k in path), "shape": tuple(shape),
                     "dim": dim, "logical": axes[dim], "mesh_axes": w, "mesh_size": _mesh_axis_size(mesh, w)})
  jax.tree_util.tree_map_with_path(visit, abstract_params, is_leaf=lambda v: isinstance(v, nnx.Variable))
  return rows


def format_replicated_report(rows: list[dict]) -> str:
  lines = [f"{len(rows)} large parameter dimension(s) stay replicated because the mesh does not divide them:"]
  lines += [f"  {r['param']} {r['shape']}: dim {r['dim']} ({r['logical']}, size {r['shape'][r['dim']]}) "
            f"is not divisible by mesh axes {r['mesh_axes']} (size {r['mesh_size']})" for r in rows]
  lines.append("  Choose a mesh whose axes divide these sizes, or change config.sharding_rules.")
  return "\n".join(lines)


def tree_shardings_like(tree, mesh: Mesh, leaf_sharding=None):
  """Replicated shardings (or `leaf_sharding(path, leaf)`) for an arbitrary pytree."""
  if leaf_sharding is None:
    return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)
  return jax.tree_util.tree_map_with_path(leaf_sharding, tree)


def global_batch(local_batch: dict, mesh: Mesh, rules=DEFAULT_RULES) -> dict:
  """Turns each host's slice of the batch into one global array sharded over the data axes."""
  sharding = batch_sharding(mesh, rules)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def bytes_per_device(tree) -> dict:
  """Bytes of each device's addressable shards over all arrays of a pytree."""
  totals: dict = {}
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
  return totals
