"""Analytic matmul FLOPs of a convolutional network's forward pass, read off its traced program.

The classic CNNs (AlexNet, GoogLeNet, Inception-v3, MixNet) have dozens of branches whose shapes a
hand-written counter would have to repeat layer by layer. Instead `forward_flops` traces one example's
eval-mode forward to a jaxpr (`jax.make_jaxpr` on abstract shapes: nothing is computed or compiled) and
counts every `conv_general_dilated` and `dot_general` from its operand shapes, 2 per multiply-add. Grouped
and depthwise convolutions count (in / groups) inputs per output. `count_padding=False` leaves out the
kernel taps that land on the zero padding, as XLA's cost analysis does. Element-wise work (BatchNorm,
activations, pooling, SE gates) is left out, as in the other families' counters, unless `elementwise=True`:
then each arithmetic element-wise op adds one FLOP per output element and each reduction one per input
element, as XLA counts them (transcendentals such as exp and the sigmoid are counted apart by XLA, and
left out here). MixNet counts it: see models/mixnet.py.
"""

import math

import jax
import jax.extend
import jax.numpy as jnp
from flax import nnx


def _taps(size: int, k: int, stride: int, lo: int, hi: int, count_padding: bool) -> tuple[int, int]:
  """(output size, kernel taps summed over the outputs), only those inside the input unless `count_padding`."""
  out = (size + lo + hi - k) // stride + 1
  if count_padding:
    return out, out * k
  return out, sum(min(k, size + lo - o * stride) - max(0, lo - o * stride) for o in range(out))


def _dilated_taps(size: int, k: int, stride: int, lo: int, hi: int, dilation: int) -> int:
  """Kernel taps summed over the outputs that land on a real element of an input dilated by `dilation`
  (a transposed convolution's holes count nothing, as in XLA's cost analysis)."""
  dilated = (size - 1) * dilation + 1
  out = (dilated + lo + hi - k) // stride + 1
  return sum(1 for o in range(out) for t in range(k)
             if 0 <= o * stride + t - lo < dilated and (o * stride + t - lo) % dilation == 0)


def _conv(eqn, count_padding: bool) -> int:
  lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
  dn = eqn.params["dimension_numbers"]
  if any(d != 1 for d in eqn.params["rhs_dilation"]):
    raise NotImplementedError("dilated kernels are not counted")
  in_spatial = [lhs[d] for d in dn.lhs_spec[2:]]
  kernel_spatial = [rhs[d] for d in dn.rhs_spec[2:]]
  taps = 1
  for size, k, s, (lo, hi), d in zip(in_spatial, kernel_spatial, eqn.params["window_strides"], eqn.params["padding"],
                                     eqn.params["lhs_dilation"]):
    taps *= _taps(size, k, s, lo, hi, count_padding)[1] if d == 1 else _dilated_taps(size, k, s, lo, hi, d)
  batch, in_per_group, out_features = lhs[dn.lhs_spec[0]], rhs[dn.rhs_spec[1]], rhs[dn.rhs_spec[0]]
  return 2 * batch * taps * in_per_group * out_features


def _dot(eqn) -> int:
  (contract, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)


# The element-wise primitives XLA counts one FLOP per output element, and the reductions it counts one
# per input element.
ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "max", "min", "neg", "abs", "sign", "square", "integer_pow",
                         "pow", "rem", "select_n", "clamp"})
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_window_sum", "reduce_window_max",
                        "argmax", "argmin", "cumsum"})


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
    elif elementwise and name in REDUCTIONS:
      total += math.prod(eqn.invars[0].aval.shape)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += jaxpr_flops(sub, count_padding, elementwise)
  return total


def forward_flops(model, img_size: int, *, count_padding: bool = True, elementwise: bool = False) -> float:
  """FLOPs of one eval-mode forward pass of `model` on one img_size × img_size image (`jaxpr_flops`).
  Works on an abstract model (`nnx.eval_shape`)."""
  graphdef, state = nnx.split(model)
  image = jax.ShapeDtypeStruct((1, img_size, img_size, model.in_chans), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x, train=False))(state, image)
  return float(jaxpr_flops(jaxpr, count_padding, elementwise))
