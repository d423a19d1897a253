"""ALBEF's and BLIP's scenes demos: their images are normalised with the scenes' own mean and std, and BLIP
CapFilt's bookkeeping (tasks/blip.py): the corrupted captions that measure the filter, the tidying of decoded
captions, and the filter's precision and recall from the round's counts. Numpy only, no model is built."""

import os

import pytest

from papers_jax import models
from papers_jax.core.config import image_preprocessing, load
from papers_jax.data import vqa_scenes
from papers_jax.tasks import blip

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


@pytest.mark.parametrize("name", ["albef/scenes_pretrain.py", "albef/scenes_retrieval.py", "blip/scenes_pretrain.py",
                                  "blip/scenes_capfilt.py:captions=x.json", "blip/scenes_vqa.py"])
def test_scenes_configs_normalise_with_the_scenes_statistics(name):
  """With 0.5 / 0.5 the dark scenes' background is a constant −0.8 that swamped BEiT-3's patch projection."""
  mean, std, _ = image_preprocessing(load(os.path.join(CONFIGS, name)))
  assert mean == vqa_scenes.MEAN and std == vqa_scenes.STD


def test_demo_models_register_the_scenes_statistics():
  for name in ("albef_tiny", "blip_tiny"):
    assert models.preprocessing(name).mean == vqa_scenes.MEAN and models.preprocessing(name).std == vqa_scenes.STD


def test_decoded_captions_are_tidied_to_the_scenes_spelling():
  scene = next(s for s in vqa_scenes.scenes("test") if s["captions"][0].startswith("from left to right:"))
  listing = scene["captions"][0]
  decoded = listing.replace(":", " :").replace(",", " ,").replace(".", "..")
  assert not vqa_scenes.caption_holds(scene["objects"], decoded)
  assert blip.tidy_caption(decoded) == listing
  assert vqa_scenes.caption_holds(scene["objects"], blip.tidy_caption(decoded))
  assert blip.tidy_caption("from left to right : a red") == "from left to right: a red"  # cut off, no period


def test_corrupted_captions_never_hold_for_their_scene():
  source = vqa_scenes.VQAScenesSource("test", "captions")
  corrupted = blip.corrupted_captions(source, seed=0)
  assert len(corrupted) == len(source)
  own = sum(text in scene["captions"] for text, scene in zip(corrupted, source.scenes))
  assert own == 0
  assert not any(vqa_scenes.caption_holds(scene["objects"], text) for text, scene in zip(corrupted, source.scenes))
  assert len(set(corrupted)) > len(source) // 4  # drawn from many scenes, not one
  assert blip.corrupted_captions(source, seed=0) == corrupted


def test_filter_quality_from_counts():
  counts = {"original": 10, "original_kept": 6, "original_true": 10, "original_true_kept": 6,
            "corrupted": 4, "corrupted_kept": 1, "corrupted_true": 0, "corrupted_true_kept": 0,
            "synthetic": 4, "synthetic_kept": 3, "synthetic_true": 2, "synthetic_true_kept": 2}
  q = blip.filter_quality(counts)
  assert q["precision"] == pytest.approx(8 / 10)  # kept 6 + 1 + 3, of which 6 + 2 hold
  assert q["recall"] == pytest.approx(8 / 12)  # 10 + 2 hold
  assert q["corrupted_kept_share"] == pytest.approx(0.25)
  assert q["synthetic_true_kept_share"] == pytest.approx(1.0)
  assert q["synthetic_false_kept_share"] == pytest.approx(0.5)
