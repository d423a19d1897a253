"""unCLIP (Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents", DALL·E 2):
the diffusion prior and the decoder's conditioning, over the embeddings of a frozen CLIP.

Text to image runs: caption → CLIP text tower → prior → a CLIP image embedding → decoder → image (PAPERS.md
mistake #18: it generates images from text, not text from images).

`DiffusionPrior` (§2.2): a decoder-only Transformer with a causal attention mask over the sequence
  [the caption's token encodings (B, L), the CLIP text embedding, the timestep embedding, the noised CLIP
   image embedding z_t, a final learned query]
each projected to the model width, plus a learned position embedding; the final query's output, after a
LayerNorm and a linear map, is the prediction of the unnoised image embedding z_0 (not of the noise).
Padding tokens of the caption are masked out as keys. Blocks: pre-LN, multi-head self-attention with biases,
MLP 4× with exact GELU, LayerNorm ε 1e-5. The layout (names, the timestep embedding's [cos, sin] order, the
sequence order) follows the released unCLIP prior as diffusers' `PriorTransformer` has it (Karlo's), so that
tests/test_unclip.py can check it against that code.

The decoder (§2.1) is GLIDE's UNet with unCLIP's CLIP-embedding conditioning: models/glide.py `UnCLIPDecoder`.

Paper sizes (Appendix C, Table 3): the diffusion prior is a Transformer of width 2048 and 24 blocks (32 heads),
"1B" parameters; `unclip_prior_paper` builds it on 1024-d CLIP embeddings (the width of ViT-H/16's embedding is not
in the paper) and 77 caption tokens (CLIP's context; the table's "text encoder context" is 256): 1,225,559,040
parameters (tests/test_unclip.py). The 64×64 decoder is GLIDE's 3.5B model (models/glide.py).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.models import ddpm_unet
from papers_jax.models.registry import register
from papers_jax.models.vit import Block
from papers_jax.nn import LayerNorm, param
from papers_jax.nn.linear import Dense

NUM_EXTRA_TOKENS = 4  # text embedding, timestep, z_t, the final query


class DiffusionPrior(nnx.Module):
  """f(z_t, t, text) → ẑ_0: `embed_dim` the CLIP joint width, `text_dim` the width of the text token encodings,
  `num_text_tokens` the caption length L, `width` / `depth` / `num_heads` the Transformer."""

  def __init__(self, *, embed_dim: int = 1024, text_dim: int | None = None, num_text_tokens: int = 77,
               width: int = 2048, depth: int = 24, num_heads: int = 32, dropout: float = 0.0, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.width, self.num_text_tokens = width, num_text_tokens
    self.time_embedding = ddpm_unet.TimestepEmbedding(width, width, **kw)
    self.proj_in = Dense(embed_dim, width, axes=(None, "embed"), **kw)
    self.embedding_proj = Dense(embed_dim, width, axes=(None, "embed"), **kw)
    self.encoder_hidden_states_proj = Dense(text_dim or embed_dim, width, axes=(None, "embed"), **kw)
    self.positional_embedding = param(rngs, nnx.initializers.normal(0.02), (num_text_tokens + NUM_EXTRA_TOKENS, width),
                                      param_dtype, (None, "embed"))
    self.prd_embedding = param(rngs, nnx.initializers.normal(0.02), (width,), param_dtype, ("embed",))
    self.blocks = nnx.List([Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True, proj_drop=dropout, norm_eps=1e-5,
                                  act="gelu", **kw) for _ in range(depth)])
    self.norm_out = LayerNorm(width, eps=1e-5, **kw)
    self.proj_to_clip_embeddings = Dense(width, embed_dim, axes=("embed", None), **kw)

  def __call__(self, z_t, t, text_embedding, text_tokens, text_mask=None, *, train: bool = False, rngs=None):
    """z_t (B, D) noised image embeddings, t (B,) steps, text_embedding (B, D), text_tokens (B, L, text_dim),
    text_mask (B, L) bool (False: padding or a dropped caption). Returns ẑ_0 (B, D) float32."""
    b, length = text_tokens.shape[:2]
    t = jnp.broadcast_to(jnp.asarray(t), (b,))
    temb = self.time_embedding(ddpm_unet.timestep_embedding(t, self.width, flip_sin_to_cos=True, freq_shift=0))
    dtype = temb.dtype
    x = jnp.concatenate([
        self.encoder_hidden_states_proj(text_tokens.astype(dtype)),
        self.embedding_proj(text_embedding.astype(dtype))[:, None],
        temb[:, None],
        self.proj_in(z_t.astype(dtype))[:, None],
        jnp.broadcast_to(self.prd_embedding[...].astype(dtype), (b, 1, self.width)),
    ], axis=1)
    x = x + self.positional_embedding[...][:length + NUM_EXTRA_TOKENS].astype(dtype)
    n = length + NUM_EXTRA_TOKENS
    keys = jnp.ones((b, n), bool) if text_mask is None else jnp.concatenate(
        [text_mask.astype(bool), jnp.ones((b, NUM_EXTRA_TOKENS), bool)], axis=1)
    causal = jnp.tril(jnp.ones((n, n), bool))
    # A masked token still sees itself (no empty softmax row); no kept token ever attends to it.
    mask = (causal[None] & keys[:, None, :]) | jnp.eye(n, dtype=bool)[None]
    deterministic = not train
    for block in self.blocks:
      x = block(x, mask=mask[:, None], deterministic=deterministic, rngs=rngs)
    return self.proj_to_clip_embeddings(self.norm_out(x[:, -1])).astype(jnp.float32)


# The paper's diffusion prior: a 1B-parameter Transformer (its table of hyperparameters); width 2048, 24 blocks
# of 32 heads on ViT-H/16's 1024-d embeddings and 77 caption tokens of width 1024.
register("unclip_prior_paper", DiffusionPrior, embed_dim=1024, text_dim=1024, num_text_tokens=77, width=2048,
         depth=24, num_heads=32)
register("unclip_prior", DiffusionPrior, embed_dim=64, text_dim=64, num_text_tokens=24, width=128, depth=4,
         num_heads=4)

EMBEDDINGS = ()


def forward_flops(model, img_size: int = 32, *, count_padding: bool = True) -> float:
  """FLOPs of one call per example: the prior on one caption of `num_text_tokens` tokens; the decoder
  (models/glide.py) on one img_size × img_size image."""
  from papers_jax.models import conv_flops, glide
  if isinstance(model, glide.UnCLIPDecoder):
    return glide.forward_flops(model, img_size, count_padding=count_padding)
  spec = jax.ShapeDtypeStruct
  d, dt = model.proj_in.in_features[0], model.encoder_hidden_states_proj.in_features[0]
  return conv_flops.traced_flops(lambda m, z, t, e, tok: m(z, t, e, tok), model, spec((1, d), jnp.float32),
                                 spec((1,), jnp.int32), spec((1, d), jnp.float32),
                                 spec((1, model.num_text_tokens, dt), jnp.float32), count_padding=count_padding)
