"""The CAM paper's weakly supervised localisation (Zhou et al., 2016, Sec. 3), measured on a checkpoint.

  python -m papers_jax.main --config configs/resnet/digits_cam.py --workdir runs/digits_cam
  PYTHONPATH=. python tools/cam_localization.py --config configs/resnet/digits_cam.py \
      --checkpoint runs/digits_cam/checkpoints/240/state --out docs/cam_localization.png

For every image of the config's eval split (a `digits_canvas` source, whose ground-truth boxes are
known): the class activation map of the predicted class (evaluators/interpret.py), upsampled
bilinearly to the image, thresholded at 20% of its maximum; the box around the largest connected
region is the prediction. Reported, as in the paper's Table 2 (top-1 only):
  - top-1 localisation accuracy: the class is right AND the box has IoU ≥ 0.5 with the true box;
  - box accuracy ("GT-known"): the CAM of the true class gives a box with IoU ≥ 0.5;
against the centre-box baseline: a fixed box of the training set's mean object size at the canvas
centre (its top-1 accuracy uses the same classifier). `--map rollout` scores a ViT's attention
rollout of the [CLS] token the same way (configs/vit/digits_canvas.py). `--out` draws the first `--examples` images
with their CAM, the true box (green) and the CAM box (red).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.core import config as config_lib  # noqa: E402
from papers_jax.errors import UserError  # noqa: E402


def centre_box(mean_height: float, mean_width: float, canvas: int):
  top, left = round((canvas - mean_height) / 2), round((canvas - mean_width) / 2)
  return top, left, top + round(mean_height), left + round(mean_width)


def localize(config_path: str, checkpoint: str, *, kind: str = "cam", threshold: float = 0.2, batch: int = 120):
  """Per-image results and the summary numbers; `kind` "cam" or "rollout" (a ViT's [CLS] attention
  rollout, which has no class: its box serves both the predicted and the true class)."""
  import jax
  import numpy as np

  import visualize
  from papers_jax.core import loop
  from papers_jax.data.sources import DigitsCanvasSource, get_source
  from papers_jax.evaluators import interpret
  from papers_jax.tasks.classification import ClassificationTask, normalize_images

  config = config_lib.load(config_path)
  if config.task != "classification" or config.data.name != "digits_canvas":
    raise UserError(f"{config_path} is not a classification config on data.name='digits_canvas'; the "
                    "localisation needs the ground-truth boxes that source knows (configs/resnet/digits_cam.py)")
  task = ClassificationTask(config)
  model = visualize.load_model(config, checkpoint, task.build_model)
  source = get_source(config.data, config.data.eval_split)
  train_source = get_source(config.data, config.data.train_split)
  assert isinstance(source, DigitsCanvasSource)
  fn = loop.preprocess_fn(config, task, train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(len(source))])
  labels = np.array([source[i]["label"] for i in range(len(source))])
  truth = [source.box(i) for i in range(len(source))]
  train_boxes = np.array([train_source.box(i) for i in range(len(train_source))], np.float64)
  baseline = centre_box((train_boxes[:, 2] - train_boxes[:, 0]).mean(), (train_boxes[:, 3] - train_boxes[:, 1]).mean(),
                        source.canvas)

  size = images.shape[1:3]
  predicted_maps, true_maps, predictions = [], [], []
  rollout = jax.jit(lambda m, x: (interpret.cls_maps(m, interpret.attention_rollout(interpret.attention_maps(m, x))),
                                  m(x, train=False)))
  for start in range(0, len(images), batch):
    x = normalize_images(images[start:start + batch], task.mean, task.std)
    if kind == "rollout":
      maps, logits = rollout(model, x)
      predicted_maps.append(np.asarray(interpret.upsample(maps, size)))
      true_maps.append(predicted_maps[-1])
      predictions.append(np.asarray(logits).argmax(-1))
      continue
    maps, predicted, _ = interpret.class_activation_map(model, x)  # the predicted class's CAM
    predicted_maps.append(np.asarray(interpret.upsample(maps, size)))
    predictions.append(np.asarray(predicted))
    maps, _, _ = interpret.class_activation_map(model, x, labels[start:start + batch])  # the true class's
    true_maps.append(np.asarray(interpret.upsample(maps, size)))
  predicted_maps, true_maps = np.concatenate(predicted_maps), np.concatenate(true_maps)
  predictions = np.concatenate(predictions)

  rows = []
  for i in range(len(images)):
    box = interpret.box_from_map(predicted_maps[i], threshold)
    box_true_class = interpret.box_from_map(true_maps[i], threshold)
    rows.append(dict(label=int(labels[i]), predicted=int(predictions[i]), truth=truth[i], box=box,
                     iou=interpret.box_iou(box, truth[i]), iou_true_class=interpret.box_iou(box_true_class, truth[i]),
                     iou_centre=interpret.box_iou(baseline, truth[i])))
  correct = np.array([r["predicted"] == r["label"] for r in rows])
  hit = lambda key: np.array([r[key] >= 0.5 for r in rows])  # noqa: E731
  summary = {
      "images": len(rows),
      "classification_accuracy": float(correct.mean()),
      f"{kind}_top1_localization": float((correct & hit("iou")).mean()),
      f"{kind}_box_accuracy": float(hit("iou_true_class").mean()),
      f"{kind}_mean_iou": float(np.mean([r["iou_true_class"] for r in rows])),
      "centre_top1_localization": float((correct & hit("iou_centre")).mean()),
      "centre_box_accuracy": float(hit("iou_centre").mean()),
      "centre_mean_iou": float(np.mean([r["iou_centre"] for r in rows])),
      "centre_box": list(baseline),
      "threshold": threshold,
  }
  return rows, summary, images, predicted_maps


def draw(path: str, images, maps, rows, examples: int, title: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  cols = min(examples, 8)
  n_rows = -(-examples // cols)
  fig, axes = plt.subplots(n_rows, cols, figsize=(1.5 * cols, 1.65 * n_rows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for i in range(examples):
    ax = axes.ravel()[i]
    ax.imshow(images[i, ..., 0], cmap="gray")
    ax.imshow(maps[i], cmap="jet", alpha=0.45)
    for (top, left, bottom, right), colour in ((rows[i]["truth"], "lime"), (rows[i]["box"], "red")):
      ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, color=colour, lw=1.2))
    ax.set_title(f"{rows[i]['label']}→{rows[i]['predicted']} IoU {rows[i]['iou']:.2f}", fontsize=6)
  fig.suptitle(title, fontsize=7)
  fig.savefig(path, dpi=130, bbox_inches="tight")
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="a classification config on data.name='digits_canvas'")
  parser.add_argument("--checkpoint", required=True, help="a run's checkpoints/<step>/state")
  parser.add_argument("--out", default=None, help="a PNG of the first --examples test images")
  parser.add_argument("--examples", type=int, default=16)
  parser.add_argument("--map", default="cam", choices=("cam", "rollout"),
                      help="cam (GAP + linear classifiers) or rollout (a ViT's [CLS] attention rollout)")
  parser.add_argument("--threshold", type=float, default=0.2, help="fraction of the CAM's maximum (the paper: 0.2)")
  parser.add_argument("--json", default=None, help="write the summary numbers here")
  args = parser.parse_args(argv)
  try:
    rows, summary, images, maps = localize(args.config, args.checkpoint, kind=args.map, threshold=args.threshold)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=1)
  if args.out:
    title = (f"{args.map} boxes (red) vs truth (green), {os.path.basename(args.config)}; top-1 loc "
             f"{summary[args.map + '_top1_localization']:.1%}, centre box {summary['centre_top1_localization']:.1%}")
    draw(args.out, images / 255.0 if images.dtype.kind == "u" else images, maps, rows, args.examples, title)
    print(f"wrote {os.path.abspath(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
