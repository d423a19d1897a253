"""Promptable segmentation (`config.task = "promptable_segmentation"`): SAM trained on instance masks with the
paper's simulated interactive prompting (Kirillov et al., 2023, §3 and appendix A "Training algorithm").

Data (data/scenes.py): the generated "shapes_scenes" / "digits_scenes" or a "coco" folder read with its
instance masks (polygons). Per example: an optional left-right flip (`flip_prob`, training), a resize to
data.image_size square, and the first `max_prompts` instances padded with a `box_valid` mask. Every
instance of an image is one prompt (the model's "point batch"), so the image encoder runs once per image.

Training step, per instance (all on device, inside the jitted step):
  round 1   with probability `box_prob` the instance's box with noise (each coordinate moved by N(0, σ²),
            σ = `box_noise` × the box side, at most `box_noise_max` pixels) and the single-mask output (a box
            is not ambiguous: the reference answers a box with `multimask_output=False`), else a foreground
            point drawn uniformly from its mask and the 3-mask (multimask) output, the minimum loss of the 3;
            no mask prompt.
  rounds 2..`rounds`: a point drawn uniformly from the error region of the previous prediction, positive
            where it missed the object (false negative) and negative where it spilled over (false positive),
            added to the prompts so far; the previous unthresholded low-resolution mask logits (of the mask
            with the highest predicted IoU) as the mask prompt, without gradient; the single-mask output.
            Of these rounds `mask_only_rounds` add no point (the last one and, with 2, one at random before it),
            as the paper's 2 of 11.
Each round's loss is SAM's (objectives/promptable_segmentation.py: focal 20 : dice 1 on the mask logits
upsampled to the image, MSE of the predicted IoU); the step's loss is their mean. Box corners travel as
points labelled 2 (top-left) and 3 (bottom-right), which the prompt encoder embeds exactly as a box, so the
prompts of every round fit one static buffer of 2 + rounds − 1 points (unused slots: SAM's padding label −1).

Evaluation (deterministic, over every real instance): mask mIoU at the input resolution for
  point1    one click at the point farthest from the object's boundary (chessboard distance, first in
            raster order on ties), the 3-mask output, the mask of highest predicted IoU (`miou_point1`)
            and the best of the 3 (`miou_point1_oracle`, the paper's "oracle");
  box       the exact tight box and the single-mask output (`miou_box`), and the best of all 4 outputs
            (`miou_box_oracle`);
  clicks k  from the 1-click prediction, `eval_rounds` − 1 further clicks each at the point farthest from the
            boundary of the larger error region (false negatives → positive, false positives → negative), with
            the previous mask logits as the mask prompt and the single-mask output (`miou_clicks_<k>`).
After each evaluation (`after_eval`): the trivial baselines on the same instances, computed once per split:
the tight box filled as the mask (`baseline_box_filled`), and a disc around the 1-click point with the best
radius for this split (`baseline_disc`, `baseline_disc_radius`); and a PNG of the first `vis_examples`
images with their 1-click and box predictions at <workdir>/sam/step_<step>.png (and in TensorBoard).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.data import scenes
from papers_jax.errors import ConfigError, DataError
from papers_jax.evaluators.coco import mask_iou as np_mask_iou
from papers_jax.objectives import promptable_segmentation as objective
from papers_jax.tasks.classification import normalize_images

RANGES = (
    ("max_prompts", "[1, 1000]"),
    ("rounds", "[1, 100]"),
    ("eval_rounds", "[1, 100]"),
    ("mask_only_rounds", "[0, 2]"),
    ("box_prob", "[0, 1]"),
    ("box_noise", "[0, 1]"),
    ("box_noise_max", "[0, inf)"),
    ("*_weight", "[0, 1000]"),
    ("flip_prob", "[0, 1]"),
    ("vis_examples", "[0, 64]"),
)
DISC_RADII = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.promptable_segmentation`: the paper's values (11 rounds, 2 without a new point, box or point
  with equal probability, box noise 10% of the side up to 20 px, focal 20 : dice 1 : IoU 1)."""
  return ml_collections.ConfigDict(dict(
      max_prompts=8, rounds=11, eval_rounds=11, mask_only_rounds=2, box_prob=0.5, box_noise=0.1, box_noise_max=20.0,
      focal_weight=objective.FOCAL_WEIGHT, dice_weight=objective.DICE_WEIGHT, iou_weight=objective.IOU_WEIGHT,
      flip_prob=0.5, vis_examples=6) | overrides)


# ------------------------------------------------------------------------------------------ prompt sampling


def _erode(mask):
  """3×3 erosion of (..., H, W) bool with everything outside the image counted as background."""
  x = mask.astype(jnp.float32)
  pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
  x = jnp.pad(x, pad)
  window = (1,) * (x.ndim - 2) + (3, 3)
  return jax.lax.reduce_window(x, jnp.inf, jax.lax.min, window, (1,) * x.ndim, "VALID") > 0.5


def boundary_depth(mask):
  """Chessboard distance of each pixel of (..., H, W) bool to the nearest background pixel (0 outside)."""
  h, w = mask.shape[-2:]

  def body(_, carry):
    m, depth = carry
    return _erode(m), depth + m.astype(jnp.int32)
  _, depth = jax.lax.fori_loop(0, (min(h, w) + 1) // 2, body, (mask, jnp.zeros(mask.shape, jnp.int32)))
  return depth


def farthest_point(mask):
  """((..., 2) xy pixel of the greatest boundary depth, (...) that depth); first in raster order on ties."""
  depth = boundary_depth(mask)
  flat = depth.reshape(*depth.shape[:-2], -1)
  index = jnp.argmax(flat, axis=-1)
  w = mask.shape[-1]
  return jnp.stack([index % w, index // w], -1).astype(jnp.float32), flat.max(-1)


def random_point(key, region):
  """((..., 2) xy of a pixel drawn uniformly from (..., H, W) bool `region`, (...) whether it has any)."""
  u = jax.random.uniform(key, region.shape)
  flat = jnp.where(region, u, -1.0).reshape(*region.shape[:-2], -1)
  index = jnp.argmax(flat, axis=-1)
  w = region.shape[-1]
  return jnp.stack([index % w, index // w], -1).astype(jnp.float32), region.any((-2, -1))


def noisy_boxes(key, boxes, noise: float, noise_max: float, size: int):
  """xyxy boxes with each coordinate moved by N(0, (noise · side)²), clipped to ±noise_max and the image."""
  side = jnp.concatenate([boxes[..., 2:] - boxes[..., :2]] * 2, -1)
  delta = jnp.clip(jax.random.normal(key, boxes.shape) * noise * side, -noise_max, noise_max)
  return jnp.clip(boxes + delta, 0, size)


def _at(mask, xy):
  """mask (..., H, W) read at integer pixels xy (..., 2)."""
  x, y = xy[..., 0].astype(jnp.int32), xy[..., 1].astype(jnp.int32)
  w = mask.shape[-1]
  flat = mask.reshape(*mask.shape[:-2], -1)
  return jnp.take_along_axis(flat, (y * w + x)[..., None], -1)[..., 0]


def upsample(logits, size: int):
  """Mask logits (..., h, w) → (..., size, size), bilinear (SAM's postprocessing)."""
  return jax.image.resize(logits, logits.shape[:-2] + (size, size), "bilinear")


def _best(out):
  """The mask logits (B, P, h, w) and index of the highest predicted IoU of each prompt."""
  best = jnp.argmax(out["iou_scores"], -1)
  return jnp.take_along_axis(out["masks"], best[..., None, None, None], 2)[:, :, 0], best


def _set_slot(points, labels, slot, xy, label):
  one = jnp.arange(points.shape[2]) == slot
  return (jnp.where(one[:, None], xy[:, :, None], points), jnp.where(one, label[:, :, None], labels))


def _pred_errors(logits, target, size):
  """(false negatives, false positives) of the thresholded upsampled logits (B, P, H, W)."""
  pred = upsample(logits, size) > 0
  return target & ~pred, pred & ~target


class PromptableSegmentationTask:
  """SAM + interactive training + mIoU evaluation for `config.task = "promptable_segmentation"`."""

  def __init__(self, config):
    self.config = config
    self.ps = config.promptable_segmentation
    for key, off in (("augment", "none"), ("randaugment", ""), ("random_erasing", 0.0), ("pca_lighting", 0.0)):
      if config.data.get(key, off) != off:
        raise ConfigError(f"data.{key}={config.data[key]!r} would move pixels without their masks; leave it at "
                          f"{off!r} and use promptable_segmentation.flip_prob")
    if int(self.ps.mask_only_rounds) >= int(self.ps.rounds):
      raise ConfigError(f"promptable_segmentation.mask_only_rounds={self.ps.mask_only_rounds} must be below "
                        f"rounds={self.ps.rounds}: the first round always has a point or a box")
    self.size = int(config.data.image_size)
    self.mean, self.std, _ = image_preprocessing(config)
    self._jitted, self._baselines = {}, {}

  def source(self, split: str):
    d = self.config.data
    if d.name == "coco":
      if not d.get("data_dir"):
        raise DataError('data.name="coco" needs data.data_dir: the folder holding annotations/ and the split folders')
      return scenes.CocoSource(d.data_dir, split, with_masks=True)
    return scenes.get_detection_source(d, split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    model = models.create(name, rngs=rngs, **kwargs)
    if getattr(model, "img_size", self.size) != self.size:
      raise ConfigError(f"model.img_size={model.img_size} but data.image_size={self.size}; set them equal")
    return model

  def preprocess(self, train: bool):
    size, max_prompts, flip = self.size, int(self.ps.max_prompts), float(self.ps.flip_prob)

    def fn(example, rng):
      example = {k: example[k] for k in ("image", "boxes", "labels", "instance_masks")}
      if train and flip > 0 and rng.random() < flip:
        example = scenes.hflip(example)
      example = scenes.pad_targets(scenes.resize(example, size, size), max_prompts)
      image = example["image"]
      if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
      valid = example["box_valid"] & example["instance_masks"].any((-2, -1))
      return {"image": image, "instance_masks": example["instance_masks"], "boxes": example["boxes"],
              "box_valid": valid}

    return fn

  def _prompt_losses(self, masks, iou_scores, target):
    ps = self.ps
    return objective.prompt_losses(upsample(masks, self.size), iou_scores, target, focal_weight=ps.focal_weight,
                                   dice_weight=ps.dice_weight, iou_weight=ps.iou_weight)

  def _loss(self, out, target, valid):
    return objective.mean_over_prompts(self._prompt_losses(out["masks"], out["iou_scores"], target), valid)

  def make_loss_fn(self, graphdef):
    ps, size = self.ps, self.size
    rounds = int(ps.rounds)

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      target, valid = batch["instance_masks"], batch["box_valid"]
      b, p = valid.shape
      keys = jax.random.split(rng, 5)
      embeddings = model.encode_image(normalize_images(batch["image"], self.mean, self.std))

      # Round 1: a box (with noise) or a foreground point.
      use_box = jax.random.bernoulli(keys[0], ps.box_prob, (b, p))
      fg, _ = random_point(keys[1], target)
      box = noisy_boxes(keys[2], batch["boxes"], ps.box_noise, ps.box_noise_max, size)
      slots = 2 + rounds - 1
      points = jnp.zeros((b, p, slots, 2), jnp.float32)
      labels = -jnp.ones((b, p, slots), jnp.int32)
      points, labels = _set_slot(points, labels, 0, jnp.where(use_box[..., None], box[..., :2], fg),
                                 jnp.where(use_box, 2, 1))
      points, labels = _set_slot(points, labels, 1, box[..., 2:], jnp.where(use_box, 3, -1))
      # A point is ambiguous: the 3-mask output, the minimum loss of the 3. A box is not: the single mask,
      # as the reference predicts for a box (`multimask_output=False`) and for several prompts.
      out = model.decode(embeddings, points=points, point_labels=labels, multimask_output=None)
      masks, scores = out["masks"], out["iou_scores"]
      single = self._prompt_losses(masks[:, :, :1], scores[:, :, :1], target)
      multi = self._prompt_losses(masks[:, :, 1:], scores[:, :, 1:], target)
      loss, parts = objective.mean_over_prompts(jax.tree.map(lambda a, b: jnp.where(use_box, a, b), single, multi),
                                                valid)
      metrics = {"loss_round1": loss, "iou_round1": parts["best_iou"]}
      if rounds == 1:
        return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
      previous = jnp.where(use_box[..., None, None], masks[:, :, 0], _best({"masks": masks[:, :, 1:],
                                                                             "iou_scores": scores[:, :, 1:]})[0])

      # Rounds 2..rounds: a point from the error region (or none) and the previous logits as the mask prompt.
      add_point = jnp.ones((rounds - 1,), bool)
      if ps.mask_only_rounds >= 1:
        add_point = add_point.at[-1].set(False)
      if ps.mask_only_rounds >= 2 and rounds >= 3:
        add_point = add_point.at[jax.random.randint(keys[3], (), 0, rounds - 2)].set(False)
      round_keys = jax.random.split(keys[4], rounds - 1)

      def one_round(carry, xs):
        points, labels, previous = carry
        slot, add, key = xs
        previous = jax.lax.stop_gradient(previous)
        fn, fp = _pred_errors(previous, target, size)
        xy, found = random_point(key, fn | fp)
        label = jnp.where(found & add, _at(fn, xy).astype(jnp.int32), -1)
        points, labels = _set_slot(points, labels, slot, xy, label)
        out = model.decode(embeddings, points=points, point_labels=labels, mask_inputs=previous,
                           multimask_output=False)
        loss, parts = self._loss(out, target, valid)
        return (points, labels, out["masks"][:, :, 0]), (loss, parts["best_iou"])

      xs = (jnp.arange(2, slots), add_point, round_keys)
      _, (losses, ious) = jax.lax.scan(one_round, (points, labels, previous), xs)
      metrics |= {"loss_last_round": losses[-1], "iou_last_round": ious[-1]}
      loss = (loss + losses.sum()) / rounds
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def _evaluate(self, model, batch):
    """(per-instance IoUs (B, P) of the evaluation protocol (module docstring), the 1-click points and the
    1-click mask logits of highest predicted IoU and the box's single-mask logits)."""
    size, rounds = self.size, int(self.ps.eval_rounds)
    target = batch["instance_masks"]
    b, p = target.shape[:2]
    embeddings = model.encode_image(normalize_images(batch["image"], self.mean, self.std))

    def ious(logits):  # (B, P, [M,] h, w) → (B, P[, M])
      return objective.mask_iou(upsample(logits, size), target if logits.ndim == 4 else target[:, :, None])

    # The prompt buffer of training (2 + rounds - 1 slots, unused ones SAM's padding label -1).
    slots = 1 + rounds
    click, _ = farthest_point(target)
    empty = (jnp.zeros((b, p, slots, 2), jnp.float32), -jnp.ones((b, p, slots), jnp.int32))
    points, labels = _set_slot(*empty, 0, click, jnp.ones((b, p), jnp.int32))
    out = model.decode(embeddings, points=points, point_labels=labels, multimask_output=True)
    previous, _ = _best(out)
    box_points, box_labels = _set_slot(*empty, 0, batch["boxes"][..., :2], jnp.full((b, p), 2, jnp.int32))
    box_points, box_labels = _set_slot(box_points, box_labels, 1, batch["boxes"][..., 2:], jnp.full((b, p), 3, jnp.int32))
    box_masks = model.decode(embeddings, points=box_points, point_labels=box_labels, multimask_output=None)["masks"]
    shown = (click, previous, box_masks[:, :, 0])
    result = {"miou_point1": ious(previous), "miou_point1_oracle": ious(out["masks"]).max(-1),
              "miou_box": ious(box_masks[:, :, 0]), "miou_box_oracle": ious(box_masks).max(-1),
              "miou_clicks_1": ious(previous)}

    def one_round(carry, slot):
      points, labels, previous = carry
      fn, fp = _pred_errors(previous, target, size)
      xy_fn, depth_fn = farthest_point(fn)
      xy_fp, depth_fp = farthest_point(fp)
      positive = depth_fn >= depth_fp
      label = jnp.where(jnp.maximum(depth_fn, depth_fp) > 0, positive.astype(jnp.int32), -1)
      points, labels = _set_slot(points, labels, slot, jnp.where(positive[..., None], xy_fn, xy_fp), label)
      out = model.decode(embeddings, points=points, point_labels=labels, mask_inputs=previous, multimask_output=False)
      return (points, labels, out["masks"][:, :, 0]), ious(out["masks"][:, :, 0])

    if rounds > 1:  # slot 1 is the box's second corner in training: the clicks go to slots 2..
      _, later = jax.lax.scan(one_round, (points, labels, previous), jnp.arange(2, slots))
      result |= {f"miou_clicks_{r + 2}": later[r] for r in range(rounds - 1)}
    return result, shown

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      result, _ = self._evaluate(model, batch)
      w = batch["box_valid"].astype(jnp.float32) * batch["mask"].astype(jnp.float32)[:, None]
      n = w.sum()  # the metrics are means over the real instances
      sums = {k: (v * w).sum() for k, v in result.items()}
      return sums | {"count": batch["mask"].astype(jnp.float32).sum(), "counts": {k: n for k in result}}
    return eval_fn

  # ------------------------------------------------------------------ after each evaluation
  def _examples(self, source):
    fn = self.preprocess(train=False)
    return [fn(source[i], None) for i in range(len(source))]

  def baselines(self, source) -> dict:
    """The trivial baselines' mIoU on `source` (module docstring); numpy, once per split."""
    if id(source) not in self._baselines:
      examples = self._examples(source)
      masks = np.concatenate([e["instance_masks"][e["box_valid"]] for e in examples])
      boxes = np.concatenate([e["boxes"][e["box_valid"]] for e in examples])
      clicks = np.asarray(jax.jit(lambda m: farthest_point(m)[0])(masks)).astype(int)
      yy, xx = np.mgrid[:self.size, :self.size]
      filled = ((xx[None] >= boxes[:, :1, None]) & (xx[None] < boxes[:, 2:3, None])
                & (yy[None] >= boxes[:, 1:2, None]) & (yy[None] < boxes[:, 3:4, None]))
      dist2 = (xx[None] - clicks[:, 0, None, None]) ** 2 + (yy[None] - clicks[:, 1, None, None]) ** 2
      discs = {r: float(np_mask_iou(dist2 <= r * r, masks).mean()) for r in DISC_RADII}
      radius = max(discs, key=discs.get)
      self._baselines[id(source)] = {"baseline_box_filled": float(np_mask_iou(filled, masks).mean()),
                                     "baseline_disc": discs[radius], "baseline_disc_radius": float(radius)}
    return self._baselines[id(source)]

  def _predict_fn(self, trainer):
    if trainer not in self._jitted:
      graphdef = trainer.graphdef

      def predict(params, model_state, batch):
        model = merge_model(graphdef, params, model_state)
        _, (click, point_logits, box_logits) = self._evaluate(model, batch)
        return upsample(point_logits, self.size) > 0, upsample(box_logits, self.size) > 0, click
      self._jitted = {trainer: jax.jit(predict, out_shardings=sharding.replicated(trainer.mesh))}
    return self._jitted[trainer]

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del metrics
    result = dict(self.baselines(source))
    n = min(int(self.ps.vis_examples), len(source))
    if n and trainer.is_main:
      examples = self._examples(source) if n > len(source) else [self.preprocess(False)(source[i], None) for i in range(n)]
      batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        point_masks, box_masks, clicks = jax.device_get(
            self._predict_fn(trainer)(trainer.state.params, trainer.state.model_state, batch))
      picture = draw_predictions(batch, point_masks, box_masks, clicks)
      from papers_jax.evaluators.reconstruction import save_png
      save_png(picture, os.path.join(trainer.workdir, "sam", f"step_{step:06d}.png"))
      if writer is not None:
        writer.write_image(step, "sam/predictions", picture)
    return result


PALETTE = np.array([(255, 64, 64), (64, 200, 255), (255, 210, 0), (80, 255, 80), (255, 96, 255), (255, 150, 40),
                    (150, 120, 255), (0, 255, 200)], np.float32)


def draw_predictions(batch, point_masks, box_masks, clicks, scale: int = 4):
  """Two rows of the images (upscaled `scale`×): the 1-click masks with the clicks (white dots), and the box
  masks with the boxes (white outlines); each instance in its colour, ground-truth outlines in grey."""
  from PIL import Image, ImageDraw
  rows = []
  for kind, masks in (("point", point_masks), ("box", box_masks)):
    tiles = []
    for i, image in enumerate(batch["image"]):
      canvas = image.astype(np.float32)
      for j in np.flatnonzero(batch["box_valid"][i]):
        color = PALETTE[j % len(PALETTE)]
        canvas = np.where(masks[i, j][..., None], 0.45 * canvas + 0.55 * color, canvas)
      h, w = image.shape[:2]
      tile = Image.fromarray(canvas.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
      draw = ImageDraw.Draw(tile)
      for j in np.flatnonzero(batch["box_valid"][i]):
        if kind == "point":
          x, y = (clicks[i, j] + 0.5) * scale
          draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 255, 255), outline=(0, 0, 0))
        else:
          draw.rectangle([float(v) * scale for v in batch["boxes"][i, j]], outline=(255, 255, 255), width=1)
      tiles.append(np.asarray(tile.convert("RGB")))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    rows.append(np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1))
  return np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], axis=0)
