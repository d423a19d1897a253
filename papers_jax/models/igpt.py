"""Image GPT (Chen et al., ICML 2020, "Generative Pretraining from Pixels"): a GPT-2 over the pixels of a
downsampled image, each pixel one of `num_clusters` colours of a k-means palette (objectives/igpt.py), in
raster order.

The blocks are models/gpt.py's with iGPT's two changes: the norms scale by the root mean square without
centring or bias (`RMSNorm`), and the MLP's activation is x·σ(1.702x). Token embedding (the palette plus a
start-of-sequence token, id `num_clusters`), learned position embedding, a final RMSNorm and an untied linear
head without bias to the `num_clusters` colours (HF's `ImageGPTForCausalImageModeling`, which
convert/hf_imagegpt.py maps onto this model).

Two objectives share the model (§2.1-2.2): autoregressive (`causal=True`: the input is [SOS, x_1..x_{n-1}]
and position i predicts x_{i+1}) and BERT (`causal=False`, with `mask` (B, n) True where the pixel's token
embedding is replaced by the learned [MASK] embedding, which a model built with `mask_token=True` has).
`forward_intermediates` gives every block's output for the paper's linear probes on intermediate layers.

Initialisation: GPT-2's (models/gpt.py): N(0, 0.02) kernels and embeddings, the residual projections scaled
by 1/√(2·depth). Dropout is off by default (HF's default config has 0.1).
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import gpt, intermediates
from papers_jax.models.registry import register
from papers_jax.models.vit import block_flops
from papers_jax.nn import Dropout, param
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import RMSNorm


class ImageGPT(nnx.Module):
  """`model(tokens)`: (B, T) int32 → (B, T, num_clusters) float32 logits; see the module docstring."""

  def __init__(self, *, num_clusters: int = 512, n_positions: int = 1024, embed_dim: int = 512, depth: int = 24,
               num_heads: int = 8, mlp_ratio: float = 4.0, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
               norm_eps: float = 1e-5, init_std: float = 0.02, mask_token: bool = False,
               attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if embed_dim % num_heads:
      raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if num_clusters < 2 or n_positions < 1 or depth < 1:
      raise ConfigError(f"num_clusters ≥ 2, n_positions ≥ 1 and depth ≥ 1 needed, got {num_clusters}, "
                        f"{n_positions}, {depth}")
    self.num_clusters, self.n_positions, self.embed_dim, self.dtype = num_clusters, n_positions, embed_dim, dtype
    self.sos_id = num_clusters
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = nnx.initializers.normal(init_std)
    self.token_embed = param(rngs, init, (num_clusters + 1, embed_dim), param_dtype, ("vocab", "embed"))
    self.pos_embed = param(rngs, init, (n_positions, embed_dim), param_dtype, (None, "embed"))
    self.mask_token = param(rngs, init, (embed_dim,), param_dtype, ("embed",)) if mask_token else None
    self.embed_drop = Dropout(drop_rate)
    self.blocks = nnx.List([
        gpt.Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                  norm_eps=norm_eps, init_std=init_std, residual_std=init_std / (2 * depth) ** 0.5,
                  attention_impl=attention_impl, act="quick_gelu", norm="rms", **kw)
        for _ in range(depth)])
    self.norm = RMSNorm(embed_dim, eps=norm_eps, **kw)
    self.head = Dense(embed_dim, num_clusters, axes=("embed", "vocab"), use_bias=False, kernel_init=init, **kw)

  def embed(self, tokens, mask=None):
    t = tokens.shape[1]
    if t > self.n_positions:
      raise ValueError(f"{t} tokens exceed n_positions={self.n_positions}")
    dtype = self.dtype or self.token_embed[...].dtype
    x = jnp.take(self.token_embed[...], tokens, axis=0).astype(dtype)
    if mask is not None:
      if self.mask_token is None:
        raise ConfigError("a mask needs the [MASK] embedding: build the ImageGPT with mask_token=True")
      x = jnp.where(mask[..., None], self.mask_token[...].astype(dtype), x)
    return x + self.pos_embed[:t].astype(dtype)[None]

  def _blocks(self, tokens, mask, causal, deterministic, rngs, picked=(), stop_early=False):
    x = self.embed_drop(self.embed(tokens, mask), deterministic=deterministic, rngs=rngs)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    out = {}
    for i, block in enumerate(self.blocks):
      x = block(x, is_causal=causal, deterministic=deterministic, rngs=rngs)
      if i in picked:
        out[intermediates.block_key(i, "+mlp")] = x
      if stop_early and picked and i == picked[-1]:
        break
    return x, out

  def __call__(self, tokens, *, mask=None, causal: bool = True, train: bool = False, rngs: nnx.Rngs | None = None):
    x, _ = self._blocks(tokens, mask, causal, not train, rngs)
    return self.head(self.norm(x)).astype(jnp.float32)

  def forward_intermediates(self, tokens, *, indices=None, stop_early: bool = False, causal: bool = True,
                            train: bool | None = None, rngs=None) -> dict:
    """"block{i:02d}/+mlp" (B, T, D) for the blocks `indices` picks, and unless `stop_early` "encoded" (the
    final norm's output) and "logits"."""
    picked = intermediates.select(indices, len(self.blocks))
    x, out = self._blocks(tokens, None, causal, not train, rngs, picked, stop_early)
    if not stop_early:
      out["encoded"] = self.norm(x)
      out["logits"] = self.head(out["encoded"]).astype(jnp.float32)
    return out


def forward_flops(model: ImageGPT, seq_len: int | None = None) -> float:
  """Matmul FLOPs of one forward pass on `seq_len` pixels (default n_positions), 2 per multiply-add: the
  blocks (every attention pair, as the dense causal kernel computes them) and the head at every position."""
  t, d = seq_len or model.n_positions, model.embed_dim
  flops = sum(block_flops(t, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  return float(flops + 2 * t * d * model.num_clusters)


# The paper's iGPT-S / M / L (its Table: 76M, 455M, 1.4B parameters) at 32×32 with the 9-bit palette, the sizes
# of the released checkpoints (HF openai/imagegpt-{small,medium,large}).
VARIANTS = {
    "igpt_small": dict(embed_dim=512, depth=24, num_heads=8),
    "igpt_medium": dict(embed_dim=1024, depth=36, num_heads=8),
    "igpt_large": dict(embed_dim=1536, depth=48, num_heads=16),
}
for _name, _row in VARIANTS.items():
  register(_name, ImageGPT, num_clusters=512, n_positions=1024, **_row)

EMBEDDINGS = ("token_embed", "pos_embed", "mask_token")
