"""DeiT's distilled ViT (Touvron et al., ICML 2021, "Training data-efficient image transformers & distillation
through attention", §4).

A ViT with a second prefix token, the distillation token: it is appended after the class token, has its own
position embedding, attends like any other token, and its output feeds its own linear head (`head_dist`).
During distillation training the class head learns from the true labels and the distillation head from the
teacher (objectives/distillation.py; the classification task's `config.distillation`); at test time the model
returns the mean of the two heads' logits (§4, "Classification with our approach: joint classifiers").
Names follow timm's `VisionTransformerDistilled` (dist_token, head_dist), so its checkpoints load one to
one. Init as DeiT: trunc-normal(0.02) for the distillation token.

The variants are the paper's Table 1 widths (Ti/S/B) at patch 16, with the distillation token
(`deit_{tiny,small,base}_distilled_patch16_224`, `deit_base_distilled_patch16_384`). DeiT without
distillation is the ViT of models/vit.py with the same widths (`vit_{tiny,small,base}_patch16_224`).
"""

import jax.numpy as jnp
from flax import nnx

from papers_jax.errors import ConfigError
from papers_jax.models import vit
from papers_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, register
from papers_jax.nn.linear import Dense, param


class DistilledVisionTransformer(vit.VisionTransformer):
  """ViT + distillation token. `model(images)` returns the mean of the class and distillation heads'
  logits; `model(images, return_distillation=True)` returns both (class head, distillation head)."""

  def __init__(self, *, rngs: nnx.Rngs, **kwargs):
    if kwargs.get("global_pool", "token") != "token" or not kwargs.get("class_token", True):
      raise ConfigError("a distilled ViT reads its class and distillation tokens: keep global_pool='token' "
                        "and class_token=True")
    if kwargs.get("pos_embed", "learn") != "learn":
      raise ConfigError("a distilled ViT has learned position embeddings (pos_embed='learn')")
    if kwargs.get("representation_size") or kwargs.get("scan"):
      raise ConfigError("a distilled ViT has no pre-logits layer and does not scan its blocks")
    super().__init__(rngs=rngs, **kwargs)
    param_dtype = kwargs.get("param_dtype", jnp.float32)
    kw = dict(dtype=kwargs.get("dtype"), param_dtype=param_dtype, rngs=rngs)
    d = self.embed_dim
    self.num_prefix_tokens = 2
    self.dist_token = param(rngs, nnx.initializers.truncated_normal(0.02), (1, 1, d), param_dtype,
                            (None, None, "embed"))
    self.pos_embed = param(rngs, nnx.initializers.normal(0.02), (1, 2 + self.patch_embed.num_patches, d),
                           param_dtype, (None, None, "embed"))
    std = kwargs.get("finetune", vit.FineTuneOptions()).head_init_std  # as the class head's
    head_init = nnx.initializers.normal(std) if std else nnx.initializers.zeros
    self.head_dist = (Dense(d, self.num_classes, axes=("embed", "classes"), kernel_init=head_init, **kw)
                      if self.num_classes > 0 else None)

  def _pos_embed(self, x):
    b = x.shape[0]
    prefix = jnp.concatenate([self.cls_token[...], self.dist_token[...]], axis=1).astype(x.dtype)
    x = jnp.concatenate([jnp.broadcast_to(prefix, (b, 2, self.embed_dim)), x], axis=1)
    return x + self.pos_embed[...].astype(x.dtype)

  def forward_head(self, x, *, pre_logits: bool = False, return_distillation: bool = False, deterministic=None,
                   rngs=None):
    cls, dist = x[:, 0], x[:, 1]
    cls = self.head_drop(cls, deterministic=deterministic, rngs=rngs)
    dist = self.head_drop(dist, deterministic=deterministic, rngs=rngs)
    if pre_logits or self.head is None:
      return (cls + dist) / 2
    cls, dist = self.head(cls).astype(jnp.float32), self.head_dist(dist).astype(jnp.float32)
    return (cls, dist) if return_distillation else (cls + dist) / 2

  def __call__(self, x, *, train: bool | None = None, rngs: nnx.Rngs | None = None,
               return_distillation: bool = False):
    deterministic = None if train is None else not train
    x = self.forward_features(x, deterministic=deterministic, rngs=rngs)
    return self.forward_head(x, return_distillation=return_distillation, deterministic=deterministic, rngs=rngs)


def forward_flops(model: DistilledVisionTransformer) -> float:
  """vit.forward_flops (which counts both prefix tokens) plus the distillation head."""
  extra = 2 * model.embed_dim * model.num_classes if model.head_dist is not None else 0
  return vit.forward_flops(model) + float(extra)


# timm's pretrained_cfg for DeiT: ImageNet mean and std, bicubic, crop 0.9 (1.0 at 384); the official
# evaluation crops 224 of 256 (0.875), which configs/deit/imagenet.py sets.
for _width, _img in (("tiny", 224), ("small", 224), ("base", 224), ("base", 384)):
  register(f"deit_{_width}_distilled_patch16_{_img}", DistilledVisionTransformer, **vit.WIDTHS[_width],
           patch_size=16, img_size=_img,
           preprocessing=Preprocessing(_img, IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.9 if _img == 224 else 1.0))

EMBEDDINGS = vit.EMBEDDINGS + ("dist_token",)
