"""ViLT (Kim, Son and Kim, ICML 2021, "ViLT: Vision-and-Language Transformer Without Convolution or
Region Supervision").

One single-stream transformer over [text tokens; image patches]:
  text   BERT's embeddings (word + position + token type → LayerNorm → dropout, models/bert.py);
  image  a linear patch projection (no CNN, no region features) with a class token and learned
         position embeddings, as ViT; images of another size than `img_size` get the position table
         resampled bilinearly with aligned corners (HF's ViltEmbeddings.visual_embed);
  both   plus a modality-type embedding (0 text, 1 image; 2 the second image of NLVR2 pairs), then
         pre-norm ViT blocks (models/vit.py Block), a final LayerNorm and a pooler (dense + tanh on
         the first token, the text's [CLS]).
Heads: `itm_head` (pooled → 2 logits, image-text matching), `mlm_head` (BERT's: dense → GELU →
LayerNorm → logits against the tied word embeddings + a bias, on the text tokens), and with
`num_answers` > 0 `vqa_head`, the paper's VQA classifier: Linear(D, 2D) → LayerNorm → GELU →
Linear(2D, answers), trained with binary cross-entropy on soft answer scores.

    model = models.create("vilt_b32", num_answers=3129, rngs=nnx.Rngs(0))
    out = model(input_ids, images, attention_mask)   # {"sequence", "pooled", "itm_logits", "mlm_logits", "vqa_logits"}

Parameter names: the image side and the transformer use ViT's (patch_embed, cls_token, pos_embed,
blocks.N.{norm1,attn,norm2,mlp}, norm), so a ViT params checkpoint of the same width and depth
initialises ViLT through `init_from` (the paper starts from ViT-B/32, not BERT): set
`init_skip = VIT_INIT_SKIP`, which leaves the text embeddings, modality-type embeddings, pooler and
heads at their init and ignores the ViT's classifier; a ViT pos_embed of another square grid is
resampled by the loader. HF transformers' ViltModel / ViltForMaskedLM / ViltForQuestionAnswering
load through convert/hf_vilt.py.

Sizes: ViLT-B/32 is ViT-B/32 at 384×384 with BERT-base-uncased's 30,522-token vocabulary and 40 text
positions (`vilt_b32`). Departures and choices: LayerNorm eps 1e-12 everywhere (HF's config; the
official code's transformer, a timm ViT, uses 1e-6); the MLM decoder is tied to the word
embeddings as HF forces it (the official MLMHead has its own decoder matrix); no pixel masks (every
image of a batch has the model's size, so HF's patch sampling with `max_image_length` keeps all
patches and only permutes them, which nothing downstream sees but the image tokens' order).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.bert import BertEmbeddings, MaskedLMHead, lookup, truncated_normal
from papers_jax.models.registry import Preprocessing, register
from papers_jax.models.vit import Block, apply_blocks, block_flops, check_remat, patch_embed_flops
from papers_jax.nn import Dropout, LayerNorm, PatchEmbed, param
from papers_jax.nn.linear import Dense

# `init_skip` for `init_from` a ViT params checkpoint: the parts a ViT does not have, and its head.
VIT_INIT_SKIP = ("^head/", "^text_embeddings/", "^modality_type_embeddings$", "^pooler/", "^itm_head/",
                 "^mlm_head/", "^vqa_head/", "^fc_norm/", "^pre_logits/")


def align_corners_matrix(n_out: int, n_in: int) -> np.ndarray:
  """(n_out, n_in) weights of 1-D linear interpolation with aligned corners (torch's align_corners=True)."""
  w = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    lo = min(int(np.floor(src)), n_in - 1)
    hi = min(lo + 1, n_in - 1)
    frac = src - lo
    w[i, lo] += 1.0 - frac
    w[i, hi] += frac
  return w


class VQAHead(nnx.Module):
  """Linear(D, 2D) → LayerNorm (eps 1e-5, torch's default) → GELU → Linear(2D, answers)."""

  def __init__(self, dim: int, num_answers: int, *, init, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Dense(dim, 2 * dim, axes=("embed", "mlp"), kernel_init=init, **kw)
    self.norm = LayerNorm(2 * dim, eps=1e-5, **kw)
    self.fc2 = Dense(2 * dim, num_answers, axes=("mlp", "classes"), kernel_init=init, **kw)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.norm(self.fc1(x)), approximate=False)).astype(jnp.float32)


class ViLT(nnx.Module):
  """See the module docstring. `model(input_ids, images, attention_mask)` → dict of outputs."""

  def __init__(self, *, vocab_size: int = 30522, max_text_len: int = 40, type_vocab_size: int = 2,
               modality_types: int = 2, img_size=384, patch_size=32, in_chans: int = 3, hidden_size: int = 768,
               depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               layer_norm_eps: float = 1e-12, dropout_rate: float = 0.1, initializer_range: float = 0.02,
               itm_head: bool = True, mlm_head: bool = True, num_answers: int = 0, remat: str = "",
               scan: bool = False, attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if hidden_size % num_heads:
      raise ConfigError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    if modality_types < 2:
      raise ConfigError(f"modality_types must be at least 2 (text and image), got {modality_types}")
    check_remat(remat)
    self.hidden_size, self.vocab_size, self.max_text_len = hidden_size, vocab_size, max_text_len
    self.remat, self.scan, self.dtype = remat, scan, dtype
    init = truncated_normal(initializer_range)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.text_embeddings = BertEmbeddings(vocab_size, hidden_size, max_text_len, type_vocab_size,
                                          dropout_rate=dropout_rate, eps=layer_norm_eps, init=init, **kw)
    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, hidden_size, **kw)
    self.cls_token = param(rngs, nnx.initializers.zeros, (1, 1, hidden_size), param_dtype, (None, None, "embed"))
    self.pos_embed = param(rngs, init, (1, 1 + self.patch_embed.num_patches, hidden_size), param_dtype,
                           (None, None, "embed"))
    self.modality_type_embeddings = param(rngs, init, (modality_types, hidden_size), param_dtype, (None, "embed"))
    self.pos_drop = Dropout(dropout_rate)
    self.blocks = nnx.List([
        Block(hidden_size, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=dropout_rate,
              norm_eps=layer_norm_eps, attention_impl=attention_impl, **kw)
        for _ in range(depth)])
    self.norm = LayerNorm(hidden_size, eps=layer_norm_eps, **kw)
    self.pooler = Dense(hidden_size, hidden_size, axes=("embed", None), kernel_init=init, **kw)
    self.itm_head = Dense(hidden_size, 2, axes=("embed", "classes"), kernel_init=init, **kw) if itm_head else None
    self.mlm_head = (MaskedLMHead(hidden_size, vocab_size, act="gelu", eps=layer_norm_eps, init=init, **kw)
                     if mlm_head else None)
    self.vqa_head = VQAHead(hidden_size, num_answers, init=init, **kw) if num_answers else None

  # ------------------------------------------------------------------ embeddings
  def image_pos_embed(self, grid: tuple[int, int]) -> jax.Array:
    """(1, 1 + h·w, D): the class token's row and the patch table resampled to `grid` if it differs."""
    table = self.pos_embed[...]
    gh, gw = self.patch_embed.grid_size
    if tuple(grid) == (gh, gw):
      return table
    patches = table[0, 1:].reshape(gh, gw, -1)
    rows, cols = align_corners_matrix(grid[0], gh), align_corners_matrix(grid[1], gw)
    patches = jnp.einsum("hg,wk,gkd->hwd", rows, cols, patches).reshape(1, grid[0] * grid[1], -1)
    return jnp.concatenate([table[:, :1], patches], axis=1)

  def embed_image(self, images, image_token_type: int = 1, *, deterministic=None, rngs=None):
    """(B, H, W, C) → (B, 1 + patches, D): class token + patches + positions, dropout, + modality type."""
    b, h, w, _ = images.shape
    ph, pw = self.patch_embed.patch_size
    if h % ph or w % pw:
      raise ValueError(f"images of {h}x{w} are not divisible by the patch size {ph}x{pw}")
    x = self.patch_embed.project(images)
    dtype = x.dtype
    cls = jnp.broadcast_to(self.cls_token[...].astype(dtype), (b, 1, x.shape[-1]))
    x = jnp.concatenate([cls, x], axis=1) + self.image_pos_embed((h // ph, w // pw)).astype(dtype)
    x = self.pos_drop(x, deterministic=deterministic, rngs=rngs)
    return x + lookup(self.modality_type_embeddings, jnp.asarray(image_token_type), dtype)

  def embed_text(self, input_ids, token_type_ids=None, *, deterministic=None, rngs=None):
    x = self.text_embeddings(input_ids, token_type_ids, deterministic=deterministic, rngs=rngs)
    return x + lookup(self.modality_type_embeddings, jnp.asarray(0), x.dtype)

  # ------------------------------------------------------------------ encoder
  def encode(self, input_ids, images, attention_mask=None, *, token_type_ids=None, image_token_type: int = 1,
             train: bool = False, rngs=None):
    """→ (sequence (B, T + 1 + patches, D) after the final norm, pooled (B, D)). `attention_mask`
    (B, T) is 1 for real text tokens; every image token is attended to."""
    kw = dict(deterministic=not train, rngs=rngs)
    text = self.embed_text(input_ids, token_type_ids, **kw)
    image = self.embed_image(images, image_token_type, **kw).astype(text.dtype)
    x = sharding.constrain(jnp.concatenate([text, image], axis=1), ("act_batch", "act_len", "act_emb"))
    mask = None
    if attention_mask is not None:
      keys = jnp.concatenate([attention_mask.astype(bool), jnp.ones(image.shape[:2], bool)], axis=1)
      mask = keys[:, None, None, :]
    x = apply_blocks(self.blocks, x, mask=mask, remat=self.remat, scan=self.scan, **kw)
    x = self.norm(x)
    return x, jnp.tanh(self.pooler(x[:, 0]))

  def mlm_logits(self, text_features, masked_positions=None):
    """float32 logits (B, T or P, V) on the text features, at `masked_positions` (B, P) if given."""
    if masked_positions is not None:
      text_features = jnp.take_along_axis(text_features, masked_positions.astype(jnp.int32)[..., None], axis=1)
    return self.mlm_head(text_features, self.text_embeddings.word_embeddings[...])

  def __call__(self, input_ids, images, attention_mask=None, *, token_type_ids=None, masked_positions=None,
               train: bool = False, rngs=None) -> dict:
    x, pooled = self.encode(input_ids, images, attention_mask, token_type_ids=token_type_ids, train=train,
                            rngs=rngs)
    out = {"sequence": x, "pooled": pooled}
    if self.itm_head is not None:
      out["itm_logits"] = self.itm_head(pooled).astype(jnp.float32)
    if self.mlm_head is not None:
      out["mlm_logits"] = self.mlm_logits(x[:, :input_ids.shape[1]], masked_positions)
    if self.vqa_head is not None:
      out["vqa_logits"] = self.vqa_head(pooled)
    return out


# ViLT-B/32 (the paper's only size): ViT-B/32 at 384 with BERT-base-uncased's vocabulary; ImageNet-style
# normalisation as the official code's (mean = std = 0.5).
register("vilt_b32", ViLT, hidden_size=768, depth=12, num_heads=12, patch_size=32, img_size=384,
         vocab_size=30522, max_text_len=40, preprocessing=Preprocessing(384, (0.5,) * 3, (0.5,) * 3, crop_pct=1.0))


def forward_flops(model, text_len: int | None = None) -> float:
  """Matmul FLOPs of one forward pass (`__call__`) per example with `text_len` text tokens (default:
  max_text_len) and images of the model's size, 2 per multiply-add: the patch projection, the blocks
  on text + 1 + patches tokens, the pooler and every head (MLM at every text position)."""
  t, d = text_len or model.max_text_len, model.hidden_size
  n = t + 1 + model.patch_embed.num_patches
  flops = patch_embed_flops(model.patch_embed)
  flops += sum(block_flops(n, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  flops += 2 * d * d  # pooler
  if model.itm_head is not None:
    flops += 2 * d * 2
  if model.mlm_head is not None:
    flops += 2 * t * d * d + 2 * t * d * model.vocab_size
  if model.vqa_head is not None:
    flops += 2 * d * 2 * d + 2 * 2 * d * model.vqa_head.fc2.kernel.shape[1]
  return float(flops)


# The embedding parameters (models.embedding_params), as models/vit.py and models/bert.py count them.
EMBEDDINGS = ("text_embeddings.word_embeddings", "text_embeddings.position_embeddings",
              "text_embeddings.token_type_embeddings", "modality_type_embeddings", "mlm_head.bias",
              "patch_embed.proj", "pos_embed", "cls_token")
