"""The segmentation task: per-pixel cross-entropy with an ignore index and mIoU against numpy references on
hand-built cases, the generated shape scenes (fixed, masks that match the drawn pixels), the training
augmentation, and the task's evaluation sums against numpy on a real model. The end-to-end run (loop,
sharding, checkpoints) is configs/danet/shapes.py's smoke run in tests/test_configs.py."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import load_config
from papers_jax import models, tasks
from papers_jax.data import segmentation as data
from papers_jax.objectives import segmentation as objective

IGNORE = data.IGNORE_INDEX


def test_miou_on_hand_built_cases():
  # 3 classes; labels / predictions over 8 pixels, one ignored (255) and never counted.
  labels = np.array([0, 0, 0, 1, 1, 2, 2, IGNORE])
  preds = np.array([0, 0, 1, 1, 2, 2, 2, 0])
  cm = np.asarray(objective.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 3))
  np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 2]])
  out = objective.iou_from_confusion(cm)
  # class 0: TP 2, FN 1, FP 0 → 2/3; class 1: TP 1, FN 1, FP 1 → 1/3; class 2: TP 2, FP 1 → 2/3.
  np.testing.assert_allclose(out["iou"], [2 / 3, 1 / 3, 2 / 3])
  assert out["miou"] == pytest.approx(5 / 9) and out["pixel_accuracy"] == pytest.approx(5 / 7)
  # A class in neither labels nor predictions has no IoU and does not lower the mean.
  cm4 = objective.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 4)
  out4 = objective.iou_from_confusion(np.asarray(cm4))
  assert np.isnan(out4["iou"][3]) and out4["miou"] == pytest.approx(5 / 9)
  # A class only predicted counts with IoU 0; all-perfect predictions give 1.
  out_fp = objective.iou_from_confusion([[3, 1], [0, 0]])
  np.testing.assert_allclose(out_fp["iou"], [0.75, 0.0])
  assert objective.iou_from_confusion(np.diag([4.0, 2.0]))["miou"] == 1.0
  # Weights: a padded example (weight 0) counts nowhere.
  w = np.array([1, 1, 1, 1, 1, 1, 0, 1], np.float32)
  cm_w = np.asarray(objective.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 3, jnp.asarray(w)))
  assert cm_w[2, 2] == 1 and cm_w.sum() == 6


def test_pixel_cross_entropy_ignores_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  labels = rng.integers(0, 5, (2, 3, 4))
  labels[0, 0, :2] = IGNORE
  losses, valid = objective.pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), IGNORE)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  keep = labels != IGNORE
  want = -np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0] * keep
  np.testing.assert_allclose(np.asarray(losses), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(valid), keep)
  mean = objective.mean_pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), IGNORE)
  assert float(mean) == pytest.approx(want.sum() / keep.sum(), rel=1e-5)


def test_shape_scenes_are_fixed_and_masks_match_the_drawing():
  train, again, test = (data.ShapesSegmentationSource(s, image_size=32) for s in ("train", "train", "test"))
  assert (len(train), len(test), train.num_classes) == (2048, 512, 5)
  a, b = train[7], again[7]
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(train[0]["label"], test[0]["label"])
  seen = set()
  for i in range(40):
    ex = train[i]
    image, label = ex["image"], ex["label"]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and label.shape == (32, 32)
    seen |= set(np.unique(label).tolist())
    # Each shape is filled with one colour: a scene's shape pixels have at most max_shapes (4) colours,
    # where the noisy background has many.
    shape_colours = np.unique(image[label > 0].reshape(-1, 3), axis=0)
    assert 1 <= len(shape_colours) <= 4
    if (label == 0).sum() > 100:
      assert len(np.unique(image[label == 0].reshape(-1, 3), axis=0)) > 20
  assert seen == set(range(5))


def test_scale_crop_flip_keeps_image_and_labels_aligned():
  rng = np.random.default_rng(0)
  label = np.arange(6 * 8, dtype=np.int32).reshape(6, 8) % 200
  image = np.repeat(label[..., None].astype(np.uint8), 3, -1)
  for _ in range(5):
    im, lb = data.scale_crop_flip(image, label, rng, crop_size=10, scale_range=(1.0, 1.0))
    assert im.shape == (10, 10, 3) and lb.shape == (10, 10)
    inside = lb != IGNORE
    np.testing.assert_array_equal(im[..., 0][inside], lb[inside])  # padding: image 0, labels ignored
    assert (im[~inside] == 0).all() and inside.sum() == 48
  im, lb = data.scale_crop_flip(image, label, rng, crop_size=6, scale_range=(2.0, 2.0))
  assert im.shape == (6, 6, 3) and set(np.unique(lb)) <= set(np.unique(label))


def test_evaluation_sums_match_numpy():
  config = load_config("danet/shapes.py", "smoke")
  task = tasks.get_task(config)
  model = models.create("danet_resnet50", num_classes=5, layers=(1, 1, 1, 1), width=4, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  source = data.ShapesSegmentationSource("test", image_size=32)
  examples = [task.preprocess(train=False)(dict(source[i]), None) for i in range(3)]
  batch = {"image": np.stack([e["image"] for e in examples]), "label": np.stack([e["label"] for e in examples]),
           "mask": np.array([1, 1, 0], bool)}  # the last row is padding
  batch["label"][0, :4] = IGNORE
  sums = task.make_eval_fn(graphdef)(nnx.to_pure_dict(params), nnx.to_pure_dict(rest), batch)
  logits = np.asarray(model(jnp.asarray((batch["image"] / 255.0 - 0.5) / 0.25, jnp.float32)))
  labels, preds = batch["label"][:2], logits[:2].argmax(-1)
  keep = labels != IGNORE
  cm = np.zeros((5, 5))
  np.add.at(cm, (labels[keep], preds[keep]), 1)
  ref = objective.iou_from_confusion(cm)
  assert float(sums["count"]) == 2 and float(sums["counts"]["loss"]) == keep.sum()
  assert float(sums["pixel_accuracy"]) / keep.sum() == pytest.approx(ref["pixel_accuracy"])
  metrics = {k: float(v) / 2 for k, v in sums.items() if k.startswith(("intersection/", "union/"))}
  derived = task.after_eval(None, 0, None, None, metrics)
  assert derived["miou"] == pytest.approx(ref["miou"], rel=1e-6)
  for k, name in enumerate(data.SHAPE_CLASSES):
    if not np.isnan(ref["iou"][k]):
      assert derived[f"iou/{name}"] == pytest.approx(ref["iou"][k], rel=1e-6)


def test_poly_schedule():
  import ml_collections
  from papers_jax.core import optim
  cfg = ml_collections.ConfigDict(dict(name="poly", power=0.9, warmup_steps=0, end_lr_ratio=0.0))
  schedule = optim.make_schedule(cfg, 0.01, 100)
  for step in (0, 1, 50, 99, 100):
    assert float(schedule(step)) == pytest.approx(0.01 * (1 - step / 100) ** 0.9, abs=1e-9)


def test_cityscapes_reads_the_official_layout_and_names_missing_files(tmp_path):
  from PIL import Image
  from papers_jax.errors import DataError
  with pytest.raises(DataError, match="data_dir"):
    data.CityscapesSource(None, "train")
  with pytest.raises(DataError, match="leftImg8bit"):
    data.CityscapesSource(str(tmp_path), "train")
  (tmp_path / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
  (tmp_path / "gtFine" / "val" / "aachen").mkdir(parents=True)
  Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "leftImg8bit/val/aachen/a_000000_leftImg8bit.png")
  with pytest.raises(DataError, match="no fine annotation"):
    data.CityscapesSource(str(tmp_path), "val")
  ids = np.array([[7, 8, 0, 33], [26, 1, 24, 255]], np.uint8)  # road, sidewalk, unlabeled, bicycle; car, ego, person
  Image.fromarray(ids).save(tmp_path / "gtFine/val/aachen/a_000000_gtFine_labelIds.png")
  source = data.CityscapesSource(str(tmp_path), "val")
  example = source[0]
  assert len(source) == 1 and example["image"].shape == (2, 4, 3) and source.num_classes == 19
  np.testing.assert_array_equal(example["label"], [[0, 1, IGNORE, 18], [13, IGNORE, 11, IGNORE]])
