"""A ViT with the ViT paper's masked-patch-prediction head (§4.6, Appendix B.1.2): the encoder of
models/vit.py under `vit/` (so `init_from` with `init_prefix="vit/"` fine-tunes it as a classifier), a
learned [mask] embedding, and a linear head from each output patch token to its mean-colour class
(objectives/masked_patch.py). `model(images, rng=key)` corrupts the patch embeddings with the key's draw
and returns (logits (B, N, classes), corrupted (B, N)); `rng=None` corrupts nothing.
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.models import vit
from papers_jax.models.registry import register, sort_options
from papers_jax.nn.linear import Dense, param
from papers_jax.objectives import masked_patch


class MaskedPatchPredictionViT(nnx.Module):
  def __init__(self, *, colour_bits: int = 3, corrupt_ratio: float = 0.5, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs, **vit_kwargs):
    vit_kwargs = sort_options(vit.VisionTransformer, vit_kwargs | dict(num_classes=0))  # flat keys → groups
    self.vit = vit.VisionTransformer(**vit_kwargs, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_chans = vit_kwargs.get("in_chans", 3)
    self.patch_size = self.vit.patch_embed.patch_size
    self.colour_bits, self.corrupt_ratio = colour_bits, corrupt_ratio
    self.num_colours = (2 ** colour_bits) ** self.in_chans
    d = self.vit.embed_dim
    self.mask_token = param(rngs, nnx.initializers.normal(0.02), (1, 1, d), param_dtype, (None, None, "embed"))
    self.head = Dense(d, self.num_colours, axes=("embed", "classes"), kernel_init=nnx.initializers.zeros,
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, images, *, rng=None, train: bool | None = None, rngs=None):
    deterministic = None if train is None else not train
    x = self.vit.patch_embed(images)
    b, n, _ = x.shape
    corrupted = jnp.zeros((b, n), bool)
    if rng is not None:
      corrupted, to_mask, to_other, other = masked_patch.corruption(rng, b, n, ratio=self.corrupt_ratio)
      others = jnp.take_along_axis(x, other[..., None], axis=1)
      x = jnp.where(to_mask[..., None], self.mask_token[...].astype(x.dtype), jnp.where(to_other[..., None], others, x))
    tokens = self.vit.encode_patches(x, deterministic=deterministic, rngs=rngs)
    logits = self.head(tokens[:, self.vit.num_prefix_tokens:]).astype(jnp.float32)
    return logits, corrupted

  def forward_intermediates(self, images, *, train: bool | None = None, rngs=None, **kwargs) -> dict:
    """The encoder's named features (models/vit.py) of the uncorrupted images."""
    return self.vit.forward_intermediates(images, train=train, rngs=rngs, **kwargs)


def forward_flops(model: MaskedPatchPredictionViT) -> float:
  """The encoder's (vit.forward_flops, no class head) plus the colour head on every patch token."""
  return vit.forward_flops(model.vit) + float(2 * model.vit.embed_dim * model.num_colours
                                             * model.vit.patch_embed.num_patches)


for _width in ("tiny", "small", "base", "large", "huge"):
  register(f"mpp_vit_{_width}_patch16_224", MaskedPatchPredictionViT, **vit.WIDTHS[_width], patch_size=16,
           img_size=224)

EMBEDDINGS = ("vit.patch_embed.proj", "vit.pos_embed", "vit.cls_token", "mask_token")
