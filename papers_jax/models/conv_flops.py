"""Analytic matmul FLOPs of a convolutional network's forward pass, read off its traced program.

The classic CNNs (AlexNet, GoogLeNet, Inception-v3, MixNet) have dozens of branches whose shapes a
hand-written counter would have to repeat layer by layer. Instead `forward_flops` traces one example's
eval-mode forward to a jaxpr (`jax.make_jaxpr` on abstract shapes: nothing is computed or compiled) and
counts every `conv_general_dilated` and `dot_general` from its operand shapes, 2 per multiply-add. Grouped
and depthwise convolutions count (in / groups) inputs per output; a transposed convolution (input dilation)
counts only the taps on real inputs, never those on the inserted zeros. `count_padding=False` leaves out the
kernel taps that land on the zero padding, as XLA's cost analysis does. Element-wise work (BatchNorm,
activations, pooling, SE gates) is left out, as in the other families' counters, unless `elementwise=True`:
then each arithmetic element-wise op adds one FLOP per output element and each reduction one per input
element (less one per output of a reduce: n - 1 additions sum n numbers; a pooling window one per window
element and output), as XLA counts them
(transcendentals such as exp and the sigmoid are counted apart by XLA, and left out here); comparisons,
logic and rounding (masks, index arithmetic) count one per output element too. MixNet counts element-wise
work (models/mixnet.py), and so do the families counted through `traced_flops`: the GAN pair, the VAE, the
detection transformers, the DDPM UNet, VQ-VAE, wav2vec 2.0 and CPC, whose norms, attention softmaxes,
deformable sampling and gates are a larger share of the work.

A `scan` counts its body once per step. XLA's cost analysis of the lowered loop counts it once, so
`xla_flops`, the tests' reference, adds the other steps.
"""

import math

import jax
import jax.extend
import jax.numpy as jnp
from flax import nnx


def _taps(size: int, k: int, stride: int, lo: int, hi: int, count_padding: bool, out: int, lhs_dilation: int = 1,
          rhs_dilation: int = 1) -> int:
  """Kernel taps summed over the `out` outputs of one spatial dimension. A tap on a hole of a dilated input
  (a transposed convolution's zeros) is never counted, one on the zero padding only with `count_padding`."""
  if lhs_dilation == 1 and rhs_dilation == 1:
    if count_padding:
      return out * k
    return sum(min(k, size + lo - o * stride) - max(0, lo - o * stride) for o in range(out))
  taps = 0
  for o in range(out):
    for j in range(k):
      u = o * stride - lo + j * rhs_dilation  # the tap's position in the dilated input
      if u % lhs_dilation == 0 and (count_padding or 0 <= u // lhs_dilation < size):
        taps += 1
  return taps


def _conv(eqn, count_padding: bool) -> int:
  lhs, rhs, out = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
  dn = eqn.params["dimension_numbers"]
  taps = 1
  for i, (lhs_d, rhs_d, out_d) in enumerate(zip(dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:])):
    lo, hi = eqn.params["padding"][i]
    taps *= _taps(lhs[lhs_d], rhs[rhs_d], eqn.params["window_strides"][i], lo, hi, count_padding, out[out_d],
                  eqn.params["lhs_dilation"][i], eqn.params["rhs_dilation"][i])
  batch, in_per_group, out_features = lhs[dn.lhs_spec[0]], rhs[dn.rhs_spec[1]], rhs[dn.rhs_spec[0]]
  return 2 * batch * taps * in_per_group * out_features


def _dot(eqn) -> int:
  (contract, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)


# The element-wise primitives XLA counts one FLOP per output element, and the reductions it counts one
# per input element.
ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "max", "min", "neg", "abs", "sign", "square", "integer_pow",
                         "pow", "rem", "select_n", "clamp",
                         # comparisons, logic and rounding: index arithmetic, masks, bilinear sampling
                         "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor", "floor", "ceil", "round"})
# Primitives XLA lowers to a polynomial before counting: FLOPs per output element (f32). erfc: the exact
# GELU's, a rational approximation (plus one exp that XLA counts apart as a transcendental).
EXPANDED = {"erfc": 62}
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "cumsum"})
# Pooling, which XLA counts as one op per window element per output.
WINDOWS = frozenset({"reduce_window_sum", "reduce_window_max", "reduce_window_min"})
# Reductions to fewer elements, which XLA counts as (inputs - outputs): n - 1 additions sum n numbers.
FOLDS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin"})


def jaxpr_flops(jaxpr, count_padding: bool = True, elementwise: bool = False) -> int:
  """Matmul FLOPs of a (closed) jaxpr, sub-jaxprs (jit, custom_jvp, remat) included; with `elementwise`
  the element-wise and reduction FLOPs too."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      total += _conv(eqn, count_padding)
    elif name == "dot_general":
      total += _dot(eqn)
    elif elementwise and name in ELEMENTWISE:
      total += math.prod(eqn.outvars[0].aval.shape)
    elif elementwise and name in EXPANDED:
      total += EXPANDED[name] * math.prod(eqn.outvars[0].aval.shape)
    elif elementwise and name in WINDOWS:
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(eqn.params["window_dimensions"])
    elif elementwise and name in REDUCTIONS:
      total += math.prod(eqn.invars[0].aval.shape) - (math.prod(eqn.outvars[0].aval.shape) if name in FOLDS else 0)
    # A scan runs its body `length` times (XLA's cost analysis of a loop counts the body once).
    repeat = eqn.params["length"] if name == "scan" else 1
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += repeat * jaxpr_flops(sub, count_padding, elementwise)
  return total


def traced_flops(forward, model, *inputs, count_padding: bool = True, elementwise: bool = True) -> float:
  """FLOPs per example of `forward(model, *inputs)` (`jaxpr_flops` divided by the first input's leading
  axis), traced on abstract inputs (jax.ShapeDtypeStruct). Works on an abstract model (`nnx.eval_shape`)."""
  graphdef, state = nnx.split(model)
  jaxpr = jax.make_jaxpr(lambda s, *x: forward(nnx.merge(graphdef, s), *x))(state, *inputs)
  return float(jaxpr_flops(jaxpr, count_padding, elementwise)) / inputs[0].shape[0]


def images(img_size: int, chans: int, batch: int = 1) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((batch, img_size, img_size, chans), jnp.float32)


def forward_flops(model, img_size: int, *, count_padding: bool = True, elementwise: bool = False) -> float:
  """FLOPs of one eval-mode forward pass of `model` on one img_size × img_size image (`jaxpr_flops`).
  Works on an abstract model (`nnx.eval_shape`)."""
  return traced_flops(lambda m, x: m(x, train=False), model, images(img_size, model.in_chans),
                      count_padding=count_padding, elementwise=elementwise)


def _lowered_flops(closed) -> float:
  args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
  cost = jax.jit(jax.extend.core.jaxpr_as_fun(closed)).lower(*args).cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost).get("flops", 0.0)


def _loop_steps_left_out(jaxpr) -> float:
  """What XLA's count of `jaxpr` leaves out by counting each scan's body once: (length - 1) bodies, inner
  loops included."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  extra = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      body = eqn.params["jaxpr"]
      once = _lowered_flops(body)
      extra += eqn.params["length"] * (once + _loop_steps_left_out(body)) - once
    else:
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        extra += _loop_steps_left_out(sub)
  return extra


def xla_flops(fn, *args) -> float:
  """XLA's FLOP count of fn(*args) (its cost analysis of the lowered program: nothing is compiled), with
  each scan's body counted once per step, as `jaxpr_flops` counts it. The counters' reference in the tests."""
  closed = jax.make_jaxpr(fn)(*args)
  return _lowered_flops(closed) + _loop_steps_left_out(closed)
