"""Model registry: `create(name, **overrides)` with timm / HF names, `list_models()`.

Each family module registers its variants when imported; importing this package imports them all.
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
