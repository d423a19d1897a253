"""Model registry: `create(name, **overrides)` with timm / HF names, `list_models()`.

Each family module registers its variants when imported; importing this package imports them all.
A family with an analytic FLOP counter has `forward_flops(model)` next to its variant table;
`forward_flops` here picks it by the model's class (None for a family without one).
"""

from papers_jax.models.registry import create, list_models, model_config, register  # noqa: F401
from papers_jax.models import vit, vit_hybrid  # noqa: F401  (register their variants)
from papers_jax.models import mae  # noqa: F401  (registers its variants)
from papers_jax.models import mixer  # noqa: F401  (registers its variants)
from papers_jax.models import swin  # noqa: F401  (registers its variants)
from papers_jax.models import resnet  # noqa: F401  (registers its variants)
from papers_jax.models import gpt  # noqa: F401  (registers its variants)
from papers_jax.models import bert, fnet  # noqa: F401  (register their variants)
from papers_jax.models import clip  # noqa: F401  (registers its variants)
from papers_jax.models import transformer  # noqa: F401  (registers its variants)
from papers_jax.models import alexnet, inception, mixnet  # noqa: F401  (register their variants)


FLOP_COUNTERS = {vit.VisionTransformer: vit.forward_flops, swin.SwinTransformer: swin.forward_flops,
                 mixer.MlpMixer: mixer.forward_flops, mae.MaskedAutoencoderViT: mae.forward_flops,
                 clip.CLIP: clip.forward_flops, resnet.ResNet: resnet.flops, alexnet.AlexNet: alexnet.forward_flops,
                 inception.GoogLeNet: inception.forward_flops, inception.InceptionV3: inception.forward_flops,
                 mixnet.MixNet: mixnet.forward_flops}


def forward_flops(model) -> float | None:
  """Matmul FLOPs of one forward pass per example (2 per multiply-add), or None without a counter."""
  counter = FLOP_COUNTERS.get(type(model))
  return counter(model) if counter else None
