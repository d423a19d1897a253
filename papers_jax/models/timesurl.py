"""TimesURL's network (Liu & Chen, AAAI 2024): TS2Vec's encoder (models/ts2vec.py) with the time-reconstruction
head of the official code (BertInterpHead): Linear(output_dims → 4·output_dims), ReLU, Linear(→ input_dims),
applied to each timestamp's representation. The representation is the encoder's output; the head is used only
by the reconstruction loss in training.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import conv_flops, ts2vec
from papers_jax.models.registry import register
from papers_jax.nn.linear import Dense


class TimesURL(ts2vec.TS2VecEncoder):
  def __init__(self, *, input_dims: int = 1, output_dims: int = 320, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs, **encoder):
    super().__init__(input_dims=input_dims, output_dims=output_dims, dtype=dtype, param_dtype=param_dtype,
                     rngs=rngs, **encoder)
    dense = lambda i, o: Dense(i, o, axes=(None, None), kernel_init=ts2vec._torch_uniform(i),  # noqa: E731
                               bias_init=ts2vec._torch_uniform(i), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.recon_head = nnx.Sequential(dense(output_dims, 4 * output_dims), jax.nn.relu,
                                     dense(4 * output_dims, input_dims))

  def reconstruct(self, x, *, valid=None, train: bool = False, rngs: nnx.Rngs | None = None):
    """(batch, T, input_dims): the head's reconstruction of every timestamp of `x` from its representation."""
    return self.recon_head(self(x, valid=valid, train=train, rngs=rngs))


def param_count(input_dims: int, output_dims: int = 320, hidden_dims: int = 64, depth: int = 10) -> int:
  """The official code's parameter count (TSEncoder: input_fc, DilatedConvEncoder, interphead) from its layer
  shapes: what `TimesURL` must hold."""
  count = input_dims * hidden_dims + hidden_dims
  widths = [hidden_dims] * depth + [output_dims]
  for i, out in enumerate(widths):
    cin = widths[i - 1] if i else hidden_dims
    count += (cin * 3 + 1) * out + (out * 3 + 1) * out
    if cin != out or i == len(widths) - 1:
      count += cin * out + out
  return count + output_dims * 4 * output_dims + 4 * output_dims + 4 * output_dims * input_dims + input_dims


forward_flops = ts2vec.forward_flops  # the representation: the encoder alone


def reconstruct_flops(model, *, seq_len: int) -> float:
  """FLOPs of the encoder and the reconstruction head on one series of `seq_len` steps (traced, as forward_flops)."""
  series = jax.ShapeDtypeStruct((1, seq_len, model.input_dims), jnp.float32)
  return conv_flops.traced_flops(lambda m, x: m.reconstruct(x), model, series, count_padding=False)
EMBEDDINGS = ()

register("timesurl", TimesURL)
