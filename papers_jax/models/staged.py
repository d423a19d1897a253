"""The stage loop and pooled head shared by the attention ResNets (models/sasa.py, models/axial.py).

A subclass sets `stages` (lists of blocks called as block(x, train=...)), `fc` (a Dense or None) and `_stem(x,
train)`; this gives it `forward_features`, `forward_intermediates` (models/intermediates.py's names), `forward_head`
(global average pool, then `fc`) and `__call__`.
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.models import intermediates


class StagedBackbone:
  """Mixin: NHWC stages after a stem, mean-pooled into a linear head."""

  def forward_features(self, x, *, train: bool = False):
    x = self._stem(x, train)
    for stage in self.stages:
      for block in stage:
        x = block(x, train=train)
      x = sharding.constrain(x, ("act_batch", None, None, None))
    return x

  def forward_intermediates(self, x, *, indices=None, stop_early: bool = False, train: bool = False) -> dict:
    """Named features, NHWC (models/intermediates.py): "stem", "stage{i}" for the stages `indices` picks, then
    "encoded", "pre_logits" and "logits" unless `stop_early`."""
    picked = intermediates.select(indices, len(self.stages))
    out = {"stem": (x := intermediates.tap("stem", self._stem(x, train)))}
    if stop_early and not picked:
      return out
    for i, stage in enumerate(self.stages):
      for block in stage:
        x = block(x, train=train)
      x = intermediates.tap(f"stage{i}", x)
      if i in picked:
        out[f"stage{i}"] = x
      if stop_early and i == picked[-1]:
        return out
    return intermediates.add_head_outputs(out, self, x)

  def forward_head(self, x, *, pre_logits: bool = False):
    x = x.astype(jnp.float32).mean(axis=(1, 2))
    if pre_logits or self.fc is None:
      return x
    return self.fc(x)

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None):
    del rngs  # no dropout
    return self.forward_head(self.forward_features(x, train=bool(train)))
