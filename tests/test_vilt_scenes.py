"""ViLT's scenes configs: images normalised with the scenes' own statistics (the first demo, with 0.5 / 0.5,
did not use the image; docs/vision_language.md)."""

import pytest

from conftest import load_config
from papers_jax.data import vqa_scenes


@pytest.mark.parametrize("name", ["vilt/scenes_pretrain.py", "vilt/scenes_vqa.py"])
def test_scenes_configs_normalise_with_the_scenes_statistics(name):
  config = load_config(name)
  assert tuple(config.data.mean) == vqa_scenes.MEAN and tuple(config.data.std) == vqa_scenes.STD
