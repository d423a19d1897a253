"""Masked autoencoders (He et al., 2022, "Masked Autoencoders Are Scalable Vision Learners").

An asymmetric encoder-decoder. The images are cut into patches and each example gets its own
random permutation of the patches (`jax.random.permutation`, or the argsort of given noise). The
encoder, a plain ViT (models/vit.py's `Block` and nn/'s `PatchEmbed`), sees only the first
`int(N * (1 - mask_ratio))` patches of the permutation, plus the class token. The lightweight
decoder embeds the encoded tokens to its own width and appends one shared learned mask token for
every removed patch. It then unshuffles the sequence to the image order, adds position embeddings
again and predicts the pixels of every patch with a linear layer. The number of kept patches is a
Python int, so every shape is static under jit.

Position embeddings are the fixed 2-D sin-cos tables of the reference code (nn/embed.py, with a
zero row for the class token), in both encoder and decoder. They are computed in numpy and are not
parameters. Initialisation also follows the reference: Xavier-uniform linear layers and patch
embedding (the patch kernel is treated as a linear layer), N(0, 0.02) class and mask tokens,
LayerNorm eps 1e-6.

Parameter names: the encoder's are those of `VisionTransformer` (patch_embed, cls_token,
blocks.N, norm), so its params load into a ViT for fine-tuning or probing with `config.init_from`
(decoder params are skipped with `init_skip`). The decoder's follow the reference code
(decoder_embed, mask_token, decoder_blocks.N, decoder_norm, decoder_pred).

Parameter counts, trainable params only (HF's and the reference code's `parameters()` also
count the two fixed sin-cos tables, +252,160 / +302,592 / +460,544):
mae_vit_base_patch16 111,655,680; mae_vit_large_patch16 329,239,296; mae_vit_huge_patch14
656,613,964 (tests/test_mae.py checks them against HF `ViTMAEForPreTraining`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.core import sharding
from papers_jax.errors import ConfigError
from papers_jax.models import intermediates
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.models.vit import WIDTHS, Block, apply_blocks, block_flops, check_remat, patch_embed_flops
from papers_jax.nn import LayerNorm, PatchEmbed, param, pool_tokens
from papers_jax.nn.embed import sincos_pos_embed_2d
from papers_jax.nn.linear import Dense


def num_kept(num_patches: int, mask_ratio: float) -> int:
  """How many patches the encoder sees: int(N * (1 - ratio)), the reference code's rounding."""
  if not 0.0 <= mask_ratio < 1.0:
    raise ConfigError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
  keep = int(num_patches * (1 - mask_ratio))
  if keep < 1:
    raise ConfigError(f"mask_ratio {mask_ratio} keeps no patch of {num_patches}; lower it")
  return keep


def random_masking(x: jax.Array, len_keep: int, *, rng: jax.Array | None = None, noise: jax.Array | None = None,
                   ids_shuffle: jax.Array | None = None):
  """Keeps `len_keep` tokens of each example, drawn independently per example.

  x: (B, N, D). The order comes from `ids_shuffle` (B, N) if given, else from the argsort of
  `noise` (B, N) (HF's `noise` argument), else from one `jax.random.permutation` per example
  drawn from `rng`. Returns (kept (B, len_keep, D), mask (B, N) with 1 = removed,
  ids_restore (B, N): the position of each patch in the shuffled order).
  """
  b, n, _ = x.shape
  if ids_shuffle is None:
    if noise is not None:
      ids_shuffle = jnp.argsort(noise, axis=1)
    elif rng is not None:
      ids_shuffle = jax.vmap(lambda key: jax.random.permutation(key, n))(jax.random.split(rng, b))
    else:
      raise ValueError("random_masking needs one of rng, noise or ids_shuffle")
  ids_shuffle = ids_shuffle.astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  kept = jnp.take_along_axis(x, ids_shuffle[:, :len_keep, None], axis=1)
  mask = (ids_restore >= len_keep).astype(jnp.float32)
  return kept, mask, ids_restore


def _table(grid_size, dim: int) -> np.ndarray:
  """The fixed (1, 1 + N, dim) table: a zero row for the class token, then 2-D sin-cos."""
  grid = sincos_pos_embed_2d(grid_size, dim)
  return np.concatenate([np.zeros((1, 1, dim), np.float32), grid], axis=1)


class MaskedAutoencoderViT(nnx.Module):
  """`model(images, rng=key)` → (pred (B, N, p*p*C) float32, mask (B, N)); images NHWC, normalised."""

  def __init__(self, *, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 1024, depth: int = 24,
               num_heads: int = 16, decoder_embed_dim: int = 512, decoder_depth: int = 8,
               decoder_num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True, mask_ratio: float = 0.75,
               encoder_mask_token: bool = False, drop_path_rate: float = 0.0, attention_impl: str | None = None,
               remat: str = "", scan: bool = False, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    for name, dim, heads in (("", embed_dim, num_heads), ("decoder_", decoder_embed_dim, decoder_num_heads)):
      if dim % heads:
        raise ConfigError(f"{name}embed_dim {dim} is not divisible by {name}num_heads {heads}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    xavier = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=3)
    self.embed_dim = embed_dim
    self.decoder_embed_dim = decoder_embed_dim
    self.in_chans = in_chans
    self.mask_ratio = mask_ratio
    self.dtype = dtype
    self.encoder_mask_token = encoder_mask_token
    check_remat(remat)
    self.remat, self.scan = remat, scan

    # ------------------------------------------------------------------ encoder (ViT names)
    self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, kernel_init=xavier, **kw)
    self.num_patches = self.patch_embed.num_patches
    num_kept(self.num_patches, mask_ratio)  # validates the ratio now, not at the first step
    self.cls_token = param(rngs, nnx.initializers.normal(0.02), (1, 1, embed_dim), param_dtype, (None, None, "embed"))
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
    self.blocks = nnx.List([
        Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate,
              attention_impl=attention_impl, **kw) for rate in rates])
    self.norm = LayerNorm(embed_dim, **kw)
    if encoder_mask_token:  # the paper's "encoder w/ [M]" ablation (Table 1c): every token goes through the encoder
      self.encoder_mask = param(rngs, nnx.initializers.normal(0.02), (1, 1, embed_dim), param_dtype,
                                (None, None, "embed"))

    # ------------------------------------------------------------------ decoder
    self.decoder_embed = Dense(embed_dim, decoder_embed_dim, axes=("embed", "embed"), **kw)
    if not encoder_mask_token:
      self.mask_token = param(rngs, nnx.initializers.normal(0.02), (1, 1, decoder_embed_dim), param_dtype,
                              (None, None, "embed"))
    self.decoder_blocks = nnx.List([
        Block(decoder_embed_dim, decoder_num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
              attention_impl=attention_impl, **kw) for _ in range(decoder_depth)])
    self.decoder_norm = LayerNorm(decoder_embed_dim, **kw)
    ph, pw = self.patch_embed.patch_size
    self.decoder_pred = Dense(decoder_embed_dim, ph * pw * in_chans, axes=("embed", None), **kw)

  # ------------------------------------------------------------------------ pieces
  @property
  def patch_size(self) -> tuple[int, int]:
    return self.patch_embed.patch_size

  @property
  def grid_size(self) -> tuple[int, int]:
    return self.patch_embed.grid_size

  def pos_embed(self) -> np.ndarray:
    return _table(self.grid_size, self.embed_dim)

  def decoder_pos_embed(self) -> np.ndarray:
    return _table(self.grid_size, self.decoder_embed_dim)

  def _embed(self, images):
    x = self.patch_embed(images)
    return x + jnp.asarray(self.pos_embed()[:, 1:], x.dtype)

  def _prepend_cls(self, x):
    cls = self.cls_token[...].astype(x.dtype) + jnp.asarray(self.pos_embed()[:, :1], x.dtype)
    return jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.embed_dim)), x], axis=1)

  def _encode(self, x, *, deterministic=None, rngs=None):
    x = sharding.constrain(self._prepend_cls(x), ("act_batch", "act_len", "act_emb"))
    x = apply_blocks(self.blocks, x, remat=self.remat, scan=self.scan, deterministic=deterministic, rngs=rngs)
    return self.norm(x)

  def forward_encoder(self, images, *, rng=None, noise=None, ids_shuffle=None, mask_ratio: float | None = None,
                      deterministic=None, rngs=None):
    """Encodes the visible patches: (latent (B, 1 + kept, D), mask (B, N), ids_restore (B, N)).

    With `encoder_mask_token` the removed patches are replaced by a learned token (plus their
    position embedding) and all 1 + N tokens are encoded, in the image order.
    """
    ratio = self.mask_ratio if mask_ratio is None else mask_ratio
    x = self._embed(images)
    kept, mask, ids_restore = random_masking(x, num_kept(self.num_patches, ratio), rng=rng, noise=noise,
                                             ids_shuffle=ids_shuffle)
    if self.encoder_mask_token:
      token = self.encoder_mask[...].astype(x.dtype) + jnp.asarray(self.pos_embed()[:, 1:], x.dtype)
      kept = jnp.where(mask[..., None] > 0, token, x)
    return self._encode(kept, deterministic=deterministic, rngs=rngs), mask, ids_restore

  def forward_decoder(self, latent, ids_restore, *, deterministic=None, rngs=None):
    """Latent tokens + mask tokens → predicted pixels of every patch, (B, N, p*p*C) in float32."""
    x = self.decoder_embed(latent)
    if not self.encoder_mask_token:  # the latent holds the kept patches only, in the shuffled order
      b, n = ids_restore.shape
      mask_tokens = jnp.broadcast_to(self.mask_token[...].astype(x.dtype), (b, n + 1 - x.shape[1], x.shape[2]))
      patches = jnp.concatenate([x[:, 1:], mask_tokens], axis=1)
      patches = jnp.take_along_axis(patches, ids_restore[..., None], axis=1)  # back to the image order
      x = jnp.concatenate([x[:, :1], patches], axis=1)
    x = x + jnp.asarray(self.decoder_pos_embed(), x.dtype)
    x = sharding.constrain(x, ("act_batch", "act_len", "act_emb"))
    x = apply_blocks(self.decoder_blocks, x, remat=self.remat, scan=self.scan, deterministic=deterministic,
                     rngs=rngs)
    x = self.decoder_norm(x)
    return self.decoder_pred(x)[:, 1:].astype(jnp.float32)

  def forward_features(self, images, *, deterministic=None, rngs=None):
    """All patches, no masking (how the encoder is used after pre-training): (B, 1 + N, D)."""
    return self._encode(self._embed(images), deterministic=deterministic, rngs=rngs)

  def forward_intermediates(self, images, *, indices=None, stop_early: bool = False, return_attention: bool = False,
                            pool: str = "token", train: bool | None = None, rngs=None) -> dict:
    """The encoder's named features on all patches (models/intermediates.py): "stem" (patch tokens),
    "block{i:02d}/+sa", "block{i:02d}/+mlp" [and "/attn"] for the blocks `indices` picks, then
    "encoded" (`forward_features`) and "pre_logits" (its class token, or with pool="avg" the mean
    of its patch tokens) unless `stop_early`."""
    deterministic = None if train is None else not train  # as in __call__
    picked = intermediates.select(indices, len(self.blocks))
    x = self.patch_embed(images)
    out = {"stem": x}
    if stop_early and not picked:
      return out
    x = x + jnp.asarray(self.pos_embed()[:, 1:], x.dtype)
    x = sharding.constrain(self._prepend_cls(x), ("act_batch", "act_len", "act_emb"))
    for i, block in enumerate(self.blocks):
      x, block_out = block.forward_intermediates(x, return_attention=return_attention and i in picked,
                                                 deterministic=deterministic, rngs=rngs)
      if i in picked:
        out.update({intermediates.block_key(i, k): v for k, v in block_out.items()})
      if stop_early and i == picked[-1]:
        return out
    out["encoded"] = x = self.norm(x)
    out["pre_logits"] = pool_tokens(x, pool, num_prefix_tokens=1)
    return out

  def __call__(self, images, *, rng=None, noise=None, ids_shuffle=None, mask_ratio: float | None = None,
               train: bool | None = None, rngs: nnx.Rngs | None = None):
    """(pred (B, N, p*p*C) float32, mask (B, N)). The masking comes from `rng`, `noise` or `ids_shuffle`."""
    deterministic = None if train is None else not train
    latent, mask, ids_restore = self.forward_encoder(images, rng=rng, noise=noise, ids_shuffle=ids_shuffle,
                                                     mask_ratio=mask_ratio, deterministic=deterministic, rngs=rngs)
    return self.forward_decoder(latent, ids_restore, deterministic=deterministic, rngs=rngs), mask


# The reference code's three models: ViT-B/16, ViT-L/16 and ViT-H/14 encoders, each with the
# 8-block, 512-wide, 16-head decoder.
VARIANTS = (("base", 16), ("large", 16), ("huge", 14))

for _width, _patch in VARIANTS:
  _w = WIDTHS[_width]
  register(f"mae_vit_{_width}_patch{_patch}", MaskedAutoencoderViT, img_size=224, patch_size=_patch,
           embed_dim=_w["embed_dim"], depth=_w["depth"], num_heads=_w["num_heads"], decoder_embed_dim=512,
           decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
           # the released weights' (timm's pretrained_cfg of the same encoders, `vit_*_224.mae`)
           preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.9))


def forward_flops(model) -> float:
  """Matmul FLOPs of one MAE forward pass per example: every patch embedded, the encoder on the class
  token + the kept patches (all N with `encoder_mask_token`), the decoder on 1 + N tokens."""
  n = model.num_patches
  n_enc = 1 + (n if model.encoder_mask_token else num_kept(n, model.mask_ratio))
  d, dd = model.embed_dim, model.decoder_embed_dim
  flops = patch_embed_flops(model.patch_embed)
  flops += sum(block_flops(n_enc, d, block.mlp.fc1.kernel.shape[1]) for block in model.blocks)
  flops += 2 * n_enc * d * dd  # decoder_embed
  flops += sum(block_flops(1 + n, dd, block.mlp.fc1.kernel.shape[1]) for block in model.decoder_blocks)
  flops += 2 * (1 + n) * dd * model.decoder_pred.kernel.shape[1]
  return float(flops)


# The embedding parameters (models.embedding_params): the patch projection, the class token and the
# learned [M] tokens (the position embeddings are fixed sin-cos tables, not parameters).
EMBEDDINGS = ("patch_embed.proj", "cls_token", "mask_token", "encoder_mask")
