"""BEiT-3 (Wang et al., CVPR 2023, "Image as a Foreign Language: BEiT Pretraining for Vision and
Vision-Language Tasks"): one Multiway Transformer over images, texts and image-text pairs.

Multiway block (§2.1): a shared pre-norm multi-head self-attention, then a pool of feed-forward experts,
each token going through its modality's expert:
  x = x + Attn(LN(x))                                    shared by every token
  x = x + FFN_m(LN_m(x))                                 m = vision for image tokens, language for text
The top `vl_layers` blocks also hold a vision-language expert, which every token of an image-text pair
goes through in those blocks ("the top three Multiway Transformer layers have vision-language experts");
an image alone or a text alone still uses its own expert there. Routing is static: a pair's sequence is
[image tokens; text tokens], so the first `n_image` tokens go to the vision expert and the rest to the
language expert (no token is computed twice).

Inputs: images → a patch projection with a class token and learned positions (masked patches replaced
by a learned [MASK] embedding before the positions are added, as BEiT); texts → word + learned position
embeddings. `encode` takes either or both, a key-padding mask for the text, and optionally a full
(B, 1, N, N) attention mask (the captioning prefix-LM mask: `prefix_lm_mask`). A final LayerNorm ends
the encoder. Heads: `mlm_head` (Linear D → vocab, text tokens; also the captioner's, `caption_logits`),
`mim_head` (Linear D → visual tokens, image patches), and with `nlvr_head` the NLVR2 head of the released
BEiT-3 code (BEiT3ForVisualReasoning): each image of the pair encoded with the statement, the image class
token's and the text's first token's outputs of both passes concatenated (4D), then Linear(4D, 2D) →
LayerNorm → GELU → Linear(2D, 2).

Variants (`beit3_giant_patch14_224` is the paper's Table 2; base and large are the released models'
sizes, README of microsoft/unilm/beit3): base L12 D768 FFN 3072 H12, large L24 D1024 FFN 4096 H16,
giant L40 D1408 FFN 6144 H16, patch 14. The vocabulary is the released code's 64,010 SentencePiece
pieces (the paper: a 64k vocabulary). The paper states VL experts only for giant ("top three layers");
base and large here use three as well, and the released base/large checkpoints have none.

Choices and departures: the LayerNorm before the attention and the final LayerNorm are shared (VLMo's
layout; the released torchscale code keeps one per modality, also for the attention's projections, its
"decoupled" Multiway, and adds Magneto's sub-LayerNorms); no dropout or drop-path; weights from a
normal(0.02) truncated at 2σ, zero biases.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models.bert import embedding_table, lookup, truncated_normal
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.models.vit import patch_embed_flops
from papers_jax.nn import Attention, LayerNorm, Mlp, PatchEmbed, param
from papers_jax.nn.linear import Dense

MODES = ("vision", "language", "pair")


class Expert(nnx.Module):
  """One modality's feed-forward expert: LayerNorm → fc1 → GELU → fc2."""

  def __init__(self, dim: int, hidden: int, *, eps: float, init, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = LayerNorm(dim, eps=eps, **kw)
    self.mlp = Mlp(dim, hidden, kernel_init=init, bias_init=nnx.initializers.zeros, **kw)

  def __call__(self, x):
    return self.mlp(self.norm(x))


class MultiwayBlock(nnx.Module):
  """Shared self-attention + modality experts (see the module docstring)."""

  def __init__(self, dim: int, num_heads: int, hidden: int, *, vl_expert: bool, eps: float, init,
               attention_impl=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(dim, eps=eps, **kw)
    self.attn = Attention(dim, num_heads, qkv_bias=True, kernel_init=init, implementation=attention_impl, **kw)
    self.vision = Expert(dim, hidden, eps=eps, init=init, **kw)
    self.language = Expert(dim, hidden, eps=eps, init=init, **kw)
    self.vl = Expert(dim, hidden, eps=eps, init=init, **kw) if vl_expert else None

  def ffn(self, x, mode: str, n_image: int):
    if mode == "vision":
      return self.vision(x)
    if mode == "language":
      return self.language(x)
    if self.vl is not None:
      return self.vl(x)
    return jnp.concatenate([self.vision(x[:, :n_image]), self.language(x[:, n_image:])], axis=1)

  def __call__(self, x, *, mode: str, n_image: int, mask=None):
    x = x + self.attn(self.norm1(x), mask=mask, deterministic=True)
    x = x + self.ffn(x, mode, n_image)
    return sharding.constrain(x, ("act_batch", "act_len", "act_emb"))


class NLVRHead(nnx.Module):
  """Linear(4D, 2D) → LayerNorm → GELU → Linear(2D, classes) on [image cls, text cls] of both images."""

  def __init__(self, dim: int, num_classes: int = 2, *, init, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Dense(4 * dim, 2 * dim, axes=("embed", "mlp"), kernel_init=init, **kw)
    self.norm = LayerNorm(2 * dim, eps=1e-5, **kw)
    self.fc2 = Dense(2 * dim, num_classes, axes=("mlp", "classes"), kernel_init=init, **kw)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.norm(self.fc1(x)), approximate=False)).astype(jnp.float32)


def prefix_lm_mask(n_image: int, text_mask):
  """The captioning mask (§2.3 / the official captioning code): (B, 1, N, N) bool, N = n_image + T, True =
  may attend. Image tokens see every image token and no text; a text token sees every image token, the
  real text tokens at or before it, and itself. `text_mask` (B, T) is 1 on real text tokens."""
  b, t = text_mask.shape
  n = n_image + t
  q = jnp.arange(n)[:, None]
  k = jnp.arange(n)[None, :]
  image_q, image_k = q < n_image, k < n_image
  allowed = jnp.where(image_q, image_k, image_k | (k <= q))                      # (N, N)
  keys = jnp.concatenate([jnp.ones((b, n_image), bool), text_mask.astype(bool)], axis=1)  # (B, N)
  return (allowed[None] & keys[:, None, :])[:, None]


class BEiT3(nnx.Module):
  """See the module docstring."""

  def __init__(self, *, vocab_size: int = 64010, max_text_len: int = 64, img_size=224, patch_size=16,
               in_chans: int = 3, hidden_size: int = 768, depth: int = 12, num_heads: int = 12, mlp_dim: int = 3072,
               vl_layers: int = 3, layer_norm_eps: float = 1e-5, initializer_range: float = 0.02,
               mlm_head: bool = False, num_visual_tokens: int = 0, nlvr_head: bool = False,
               attention_impl: str | None = None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if hidden_size % num_heads:
      raise ConfigError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    if not 0 <= vl_layers <= depth:
      raise ConfigError(f"vl_layers must be in [0, depth={depth}], got {vl_layers}")
    self.hidden_size, self.vocab_size, self.max_text_len = hidden_size, vocab_size, max_text_len
    self.depth, self.vl_layers, self.dtype = depth, vl_layers, dtype
    init = truncated_normal(initializer_range)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.word_embeddings = embedding_table(rngs, vocab_size, hidden_size, init, param_dtype, "vocab")
    self.text_pos_embed = embedding_table(rngs, max_text_len, hidden_size, init, param_dtype, None)
    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, hidden_size, kernel_init=init, **kw)
    self.cls_token = param(rngs, init, (1, 1, hidden_size), param_dtype, (None, None, "embed"))
    self.mask_token = param(rngs, init, (1, 1, hidden_size), param_dtype, (None, None, "embed"))
    self.pos_embed = param(rngs, init, (1, 1 + self.patch_embed.num_patches, hidden_size), param_dtype,
                           (None, None, "embed"))
    self.blocks = nnx.List([
        MultiwayBlock(hidden_size, num_heads, mlp_dim, vl_expert=i >= depth - vl_layers, eps=layer_norm_eps,
                      init=init, attention_impl=attention_impl, **kw)
        for i in range(depth)])
    self.norm = LayerNorm(hidden_size, eps=layer_norm_eps, **kw)
    self.mlm_head = (Dense(hidden_size, vocab_size, axes=("embed", "vocab"), kernel_init=init, **kw)
                     if mlm_head else None)
    self.mim_head = (Dense(hidden_size, num_visual_tokens, axes=("embed", "classes"), kernel_init=init, **kw)
                     if num_visual_tokens else None)
    self.nlvr_head = NLVRHead(hidden_size, init=init, **kw) if nlvr_head else None

  @property
  def num_image_tokens(self) -> int:
    return 1 + self.patch_embed.num_patches

  def embed_image(self, images, image_mask=None):
    """(B, H, W, C) → (B, 1 + P, D); patches where `image_mask` (B, P) is True become [MASK]."""
    x = self.patch_embed.project(images)
    dtype = x.dtype
    if image_mask is not None:
      x = jnp.where(image_mask[..., None], self.mask_token[...].astype(dtype), x)
    cls = jnp.broadcast_to(self.cls_token[...].astype(dtype), (x.shape[0], 1, x.shape[-1]))
    return jnp.concatenate([cls, x], axis=1) + self.pos_embed[...].astype(dtype)

  def embed_text(self, input_ids):
    t = input_ids.shape[1]
    if t > self.max_text_len:
      raise ValueError(f"{t} text tokens exceed max_text_len={self.max_text_len}")
    dtype = self.dtype or self.word_embeddings.dtype
    return lookup(self.word_embeddings, input_ids, dtype) + self.text_pos_embed[:t].astype(dtype)[None]

  def encode(self, images=None, input_ids=None, text_mask=None, *, image_mask=None, attention_mask=None):
    """→ (sequence (B, N, D) after the final norm, n_image). Either or both inputs; a pair's sequence is
    [image tokens; text tokens]. `text_mask` (B, T): 1 on real text tokens (padding is never attended to);
    `attention_mask` (B, 1, N, N) bool further restricts who sees whom (e.g. `prefix_lm_mask`)."""
    parts, keys = [], []
    if images is not None:
      parts.append(self.embed_image(images, image_mask))
      keys.append(jnp.ones(parts[-1].shape[:2], bool))
    n_image = parts[0].shape[1] if parts else 0
    if input_ids is not None:
      parts.append(self.embed_text(input_ids).astype(parts[0].dtype if parts else None))
      keys.append(jnp.ones(input_ids.shape, bool) if text_mask is None else text_mask.astype(bool))
    if not parts:
      raise ValueError("BEiT3.encode needs images, input_ids or both")
    mode = "pair" if len(parts) == 2 else ("vision" if images is not None else "language")
    x = sharding.constrain(jnp.concatenate(parts, axis=1), ("act_batch", "act_len", "act_emb"))
    mask = jnp.concatenate(keys, axis=1)[:, None, None, :]
    if attention_mask is not None:
      mask = mask & attention_mask
    for block in self.blocks:
      x = block(x, mode=mode, n_image=n_image, mask=mask)
    return self.norm(x), n_image

  def caption_logits(self, images, input_ids, text_mask):
    """Captioning (§3.2): the pair under `prefix_lm_mask`, so a text token sees the image, the text before it
    and itself → float32 MLM-head logits (B, T, vocab) at every text position; a [MASK] input at position j
    is predicted from the image and the caption's first j tokens."""
    n = self.num_image_tokens
    x, _ = self.encode(images, input_ids, text_mask, attention_mask=prefix_lm_mask(n, text_mask))
    return self.mlm_head(x[:, n:]).astype(jnp.float32)

  def nlvr_logits(self, images, input_ids, text_mask):
    """images (B, 2, H, W, C) [left, right] and one statement per pair → float32 logits (B, 2)."""
    b = images.shape[0]
    x, n = self.encode(images.reshape((2 * b,) + images.shape[2:]), jnp.repeat(input_ids, 2, axis=0),
                       jnp.repeat(text_mask, 2, axis=0))
    rep = jnp.concatenate([x[:, 0], x[:, n]], axis=-1)  # the image's class token and the text's [CLS]
    return self.nlvr_head(rep.reshape(b, 4 * self.hidden_size))


# The paper's Table 2 (giant) and the released base / large sizes. The names are timm's, so their
# preprocessing is timm's pretrained_cfg for them (ImageNet mean / std, crop 1.0); the released
# pre-training code normalises with mean = std = 0.5 instead (set data.mean / data.std to train that way).
_PRE = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=1.0)
VARIANTS = {
    "beit3_base_patch16_224": dict(hidden_size=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16),
    "beit3_large_patch16_224": dict(hidden_size=1024, depth=24, num_heads=16, mlp_dim=4096, patch_size=16),
    "beit3_giant_patch14_224": dict(hidden_size=1408, depth=40, num_heads=16, mlp_dim=6144, patch_size=14),
}
for _name, _sizes in VARIANTS.items():
  register(_name, BEiT3, img_size=224, vl_layers=3, vocab_size=64010, **_sizes, preprocessing=_PRE)


def forward_flops(model, text_len: int | None = None, pair_images: int = 1) -> float:
  """Matmul FLOPs of one forward pass on an image-text pair per example (`pair_images` = 2: the NLVR
  head's two passes), text of `text_len` tokens (default max_text_len), 2 per multiply-add: the patch
  projection, the attention and one expert per token in every block, and the heads present (MLM on every
  text token, MIM on every patch)."""
  t, d = text_len or model.max_text_len, model.hidden_size
  n = t + model.num_image_tokens
  hidden = model.blocks[0].vision.mlp.fc1.kernel.shape[1]
  block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
  flops = (patch_embed_flops(model.patch_embed) + model.depth * block) * pair_images
  if model.mlm_head is not None:
    flops += 2 * t * d * model.vocab_size
  if model.mim_head is not None:
    flops += 2 * model.patch_embed.num_patches * d * model.mim_head.kernel.shape[1]
  if model.nlvr_head is not None:
    flops += 2 * (4 * d) * (2 * d) + 2 * 2 * d * 2
  return float(flops)


EMBEDDINGS = ("word_embeddings", "text_pos_embed", "patch_embed.proj", "cls_token", "mask_token", "pos_embed")
