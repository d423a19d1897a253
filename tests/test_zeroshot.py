"""Issue 32's zero-shot fixes: the CLIP's average-pooled image feature (DepthCLIP's dense readout), the greyscale
augmentation (PointCLIP's CLIP) and PointCLIP's per-view class texts, against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.core.config import load
from papers_jax.data import point_clouds
from papers_jax.models import depthclip
from papers_jax.tasks import pointclip as pointclip_task
from papers_jax.tasks.clip import grey_pair

TINY = dict(embed_dim=8, img_size=16, patch_size=8, vision_width=16, vision_layers=1, vision_heads=2, text_width=16,
            text_layers=1, text_heads=2, context_length=8, vocab_size=16)


def test_avg_pooled_image_feature_is_the_mean_of_the_patch_features():
  """With vision_pool="avg" the image embedding the contrastive loss trains is the mean of the projected patch
  features DepthCLIP reads, so the patches live in the joint space; with the class token they need not."""
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  for pool, equal in (("avg", True), ("token", False)):
    clip = models.create("clip_vit_base_patch32", vision_pool=pool, rngs=nnx.Rngs(0), **TINY)
    image = np.asarray(clip.encode_image(images, train=False))
    patches = np.asarray(depthclip.patch_features(clip, images)).reshape(2, -1, 8)
    assert np.allclose(image, patches.mean(1), atol=1e-5) == equal
  with pytest.raises(Exception, match="vision_pool"):
    models.create("clip_vit_base_patch32", vision_pool="max", rngs=nnx.Rngs(0), **TINY)
  assert load("configs/depthclip/scenes.py").model.vision_pool == "avg"


def test_grey_pair_keeps_luminance_and_drops_the_colour_words():
  image = np.zeros((2, 2, 3), np.uint8)
  image[0, 0] = (225, 45, 45)
  image[1, 1] = (255, 255, 255)
  grey, caption = grey_pair(image, "from left to right: a red circle and a blue 7.", ("red", "blue", "green"))
  assert grey.dtype == np.uint8 and (grey == grey[..., :1]).all()
  assert grey[0, 0, 0] == round(0.299 * 225 + 0.587 * 45 + 0.114 * 45) and grey[1, 1, 0] == 255
  assert caption == "from left to right: a circle and a 7."
  c = load("configs/clip/scenes.py:grey=0.5")
  assert c.clip.grey_prob == 0.5 and set(c.clip.grey_drop_words) == {"red", "green", "blue", "yellow"}
  assert load("configs/clip/scenes.py").clip.grey_prob == 0.0


def test_per_view_zero_shot_against_a_loop():
  rng = np.random.default_rng(1)
  n, k, d = 5, len(point_clouds.CLASSES), 4
  feats = rng.normal(size=(n, 6, d)).astype(np.float32)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  side, top = unit(rng.normal(size=(k, d))), unit(rng.normal(size=(k, d)))
  text = pointclip_task.per_view_texts(side, top)
  weights = rng.uniform(size=6)
  want = np.zeros((n, k))
  for b in range(n):
    for i, view in enumerate(("front", "right", "back", "left", "top", "bottom")):
      t = top if view in ("top", "bottom") else side
      want[b] += 100 * weights[i] * unit(feats[b, i]) @ t.T
  np.testing.assert_allclose(pointclip_task.zero_shot_logits_np(feats, text, weights), want, rtol=1e-4, atol=1e-3)
  # Each class is its own (side, top) pair of outlines, so the views together can tell all six apart.
  pairs = {(point_clouds.SIDE_WORDS[c], point_clouds.TOP_WORDS[c]) for c in point_clouds.CLASSES}
  assert len(pairs) == len(point_clouds.CLASSES)


def test_shape_motion_classes_and_the_held_out_pairs():
  from papers_jax.data import clips
  from papers_jax.tasks.video_clip import VideoCLIPTask
  c = load("configs/video_clip/actionclip.py:mode=zero_shot,classes=shape_motion,smoke=True")
  task = VideoCLIPTask(c)
  held = np.asarray(c.video_clip.held_out_classes)
  # Each held-out pair's shape and motion are both seen in training, each with other partners.
  shapes, motions = held // 12, held % 12
  assert sorted(np.bincount(shapes)) == [2, 2, 2, 2] and all((motions == m).sum() == 2 for m in set(motions))
  train = task.source("train")
  seen = set(train.labels.tolist())
  assert not seen & set(held.tolist())
  for s, m in zip(shapes, motions, strict=True):
    assert any(x // 12 == s for x in seen) and any(x % 12 == m for x in seen)
  example = train[0]
  assert example["label"] == example["shape"] * 12 + example["motion"]
  assert clips.LABELS["shape_motion"][int(example["label"])] == f"{clips.SHAPES[example['shape']]} " \
                                                                 f"{clips.MOTIONS[example['motion']]}"
  assert task.caption(example, None) == c.video_clip.eval_templates[0].format(task.class_names[int(example["label"])])
