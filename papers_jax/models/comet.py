"""COMET's encoder ("Contrast Everything: A Hierarchical Contrastive Framework for Medical Time-Series",
Wang et al., NeurIPS 2023): TS2Vec's dilated-conv encoder (models/ts2vec.py: input projection, 10 residual
blocks of dilated convolutions, 320 output dimensions, dropout 0.1 on the output), whose timestamp mask is
chosen per call, as the official code's `TSEncoder(x, mask=...)`: COMET encodes the batch twice for each of
its four levels, with no mask ("all_true") for the patient and trial levels and continuous spans masked for
the sample and observation levels.

The paper's PTB configuration: 15 input channels, hidden 64, depth 10, 320 output dimensions: 638,144
parameters (tests/test_comet.py).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import ts2vec
from papers_jax.models.registry import register


class COMETEncoder(ts2vec.TS2VecEncoder):
  def __init__(self, *, mask_mode: str = "all_true", **kwargs):
    super().__init__(mask_mode=mask_mode, **kwargs)

  def __call__(self, x, *, mask: str | None = None, valid=None, train: bool = False, rngs: nnx.Rngs | None = None):
    """x (batch, T, input_dims); `mask` one of models/ts2vec.MASK_MODES for this call (training only)."""
    mask = mask or self.mask_mode
    if mask not in ts2vec.MASK_MODES:
      raise ValueError(f"mask={mask!r}; choose one of {ts2vec.MASK_MODES}")
    observed = ~jnp.isnan(x).any(-1)
    h = self.input_fc(jnp.where(observed[..., None], x, 0.0))
    keep = observed
    if train and mask == "binomial":
      keep = keep & jax.random.bernoulli(rngs.mask(), 0.5, observed.shape)
    elif train and mask == "continuous":
      keep = keep & ts2vec.continuous_mask(rngs.mask(), *observed.shape)
    h = h * keep[..., None].astype(h.dtype)
    segment = (jnp.ones_like(observed) if valid is None else valid)[..., None].astype(h.dtype)
    for block in self.blocks:
      h = block(h, segment)
    return self.dropout(h, deterministic=not train, rngs=rngs)


forward_flops = ts2vec.forward_flops
EMBEDDINGS = ()

register("comet", COMETEncoder)
