"""The model registry: flat config keys reach a constructor's option groups; unknown keys are errors."""

import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.models import registry, vit

TINY = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)


def _shape(name, **kwargs):
  return nnx.eval_shape(lambda: models.create(name, **kwargs))


def test_flat_keys_go_into_the_option_groups():
  kwargs = registry.sort_options(vit.VisionTransformer, dict(TINY, mlp_ratio=2.0, norm_eps=1e-5, frozen_blocks=1,
                                                             head_norm="batchnorm"))
  assert kwargs["block"] == vit.BlockOptions(mlp_ratio=2.0, norm_eps=1e-5)
  assert kwargs["finetune"] == vit.FineTuneOptions(frozen_blocks=1, head_norm="batchnorm")
  assert not {"mlp_ratio", "norm_eps", "frozen_blocks", "head_norm"} & set(kwargs)
  # A group given whole is the starting point of the flat keys.
  kwargs = registry.sort_options(vit.VisionTransformer, {"block": vit.BlockOptions(act="quick_gelu"), "qkv_bias": False})
  assert kwargs["block"] == vit.BlockOptions(act="quick_gelu", qkv_bias=False)
  model = _shape("vit_tiny_patch16_224", **TINY, mlp_ratio=2.0, norm_eps=1e-5, frozen_blocks=1, head_norm="batchnorm")
  assert model.blocks[0].mlp.fc1.kernel.shape == (16, 32) and model.norm.eps == 1e-5
  assert model.frozen_blocks == 1 and model.head_norm is not None
  # The hybrid passes its keywords on to the ViT: the same keys reach the groups, unknown ones are errors.
  hybrid = _shape("vit_small_r26_s32_224", depth=1, mlp_ratio=2.0, num_classes=0)
  assert hybrid.blocks[0].mlp.fc1.kernel.shape == (384, 768)
  for name in ("vit_tiny_patch16_224", "vit_small_r26_s32_224"):
    with pytest.raises(ConfigError, match="takes no setting mlp_ratioo"):
      models.create(name, mlp_ratioo=2.0)
