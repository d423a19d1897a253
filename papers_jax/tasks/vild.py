"""ViLD (`config.task = "vild"`): open-vocabulary detection by distilling a frozen CLIP into a two-stage
detector (Gu et al., ICLR 2022), on the generated scenes (data/vqa_scenes.py `DetectionScenesSource`: 13 kinds).

Classes: the kinds named in `vild.novel_classes` are never labelled in training: their boxes are dropped from
the training targets (their objects are background to the RPN and the RoI head, as unlabelled objects are in
the paper's LVIS-base training), and the other kinds are the base classes.

Text: each class's embedding is the frozen CLIP text tower's mean normalised embedding over the prompts
`vild.templates` × the scenes' four colours ("a red triangle.", ...; the scenes CLIP only saw captions that name
a colour with every object), normalised: the paper's prompt ensemble.

Distillation targets (ViLD-image), computed once before training (the paper caches them to disk): for every
training scene, up to `vild.num_distill` class-agnostic proposals: the connected bright regions of the image
(pixels brighter than `vild.proposal_threshold` in some channel, joined across one-pixel gaps), found without any
label, for novel objects as for base ones. Each proposal is cropped at the scales `vild.crop_scales` (1× and 1.5×
as the paper): `vild.crop_mode="in_place"` keeps the crop at its place and scale on the scenes' dark noise canvas
(the scale this CLIP was trained at), "resize" resizes it to the CLIP's input as the paper (bilinear: RoIAlign on
the image); the CLIP image embeddings of the crops are normalised, summed and normalised again (the paper's
ensemble of the two crops).

Training loss (objectives/vild.py): the RPN's objectness and box losses, the RoI head's class-agnostic box
regression, L_ViLD-text over the proposals plus the ground-truth boxes (the paper samples RoIs from them;
here all are used) with temperature `vild.temperature`, and `vild.image_weight` · L_ViLD-image over the
precomputed proposals (ViLD-ensemble: the text head and the image head are separate projections).

Evaluation: the eval step's RPN losses on every object of the eval split (novel ones included); after it, the
detections on the RPN's proposals refined by the box head, scored four ways over all 13 classes, each with
per-class NMS at `vild.nms_iou` and the `vild.max_detections` best kept, and COCO box mAP (evaluators/coco.py)
over all classes, the novel classes and the base classes (and each novel class alone, `<scoring>/AP_<class>`):
  ensemble/   ViLD-ensemble: p_text^λ p_image^(1−λ) for base classes, p_text^(1−λ) p_image^λ for novel, λ =
              `vild.ensemble_weight` (each head's probability: softmax over background + the 13 classes)
  text/       the text head alone (ViLD-text's scoring); image/ the image head alone
  closed/     the text head over background + the base classes only: a closed-vocabulary detector's
              classifier, which can never name a novel class (its novel AP is 0 by construction)
  clip_crops/ the paper's baseline "CLIP on cropped regions": each RPN proposal cropped as the distillation
              crops are and classified by the frozen CLIP (softmax of its own temperature × cosine over the 13
              classes); only with `vild.clip_baseline`.
"""

import functools
import json
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
from papers_jax.data import pipeline, scenes, vqa_scenes
from papers_jax.data.captions import CaptionTokenizer
from papers_jax.errors import ConfigError
from papers_jax.evaluators import coco
from papers_jax.models import vild as vild_model
from papers_jax.objectives import vild as objective
from papers_jax.ops.roi_align import roi_align
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import finished_clip_run

RANGES = (
    ("temperature", "(0, 10]"),
    ("image_weight", "[0, 1000]"),
    ("ensemble_weight", "[0, 1]"),
    ("num_distill", "[1, 1000]"),
    ("distill_scenes", "[0, 1000000]"),
    ("proposal_threshold", "[0, 255]"),
    ("max_boxes", "[1, 1000]"),
    ("fg_iou", "(0, 1]"),
    ("rpn_fg_iou", "(0, 1]"),
    ("rpn_bg_iou", "[0, 1]"),
    ("nms_iou", "[0, 1]"),
    ("max_detections", "[1, 100000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.vild`, the fields this task reads. Temperature 0.01, image weight 0.5 (ResNet-50's) and ensemble
  weight 2/3 as the authors' released code (docs/clip_family.md, ViLD: the paper's text was not at hand)."""
  return ml_collections.ConfigDict(dict(
      clip_run="", clip_model=dict(name="clip_vit_base_patch32", embed_dim=64, img_size=64, patch_size=8,
                                   vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                                   text_layers=1, text_heads=2, context_length=24),
      novel_classes=("triangle", "4", "8"), templates=("a {}.",), temperature=0.01, image_weight=0.5,
      ensemble_weight=2.0 / 3.0, num_distill=8, distill_scenes=0, crop_scales=(1.0, 1.5), crop_mode="in_place",
      proposal_threshold=100,
      max_boxes=6, fg_iou=0.5, rpn_fg_iou=0.7, rpn_bg_iou=0.3, nms_iou=0.5, max_detections=100,
      clip_baseline=True) | overrides)


def bright_regions(image: np.ndarray, threshold: float, max_regions: int) -> np.ndarray:
  """Class-agnostic proposals of one uint8 image: the xyxy boxes of its connected bright regions (any channel
  above `threshold`; regions one dark pixel apart are joined), largest first, at most `max_regions`."""
  bright = image.max(-1) > threshold
  joined = bright.copy()  # a 3×3 dilation, so that a digit's strokes form one region
  joined[1:] |= bright[:-1]
  joined[:-1] |= bright[1:]
  joined2 = joined.copy()
  joined2[:, 1:] |= joined[:, :-1]
  joined2[:, :-1] |= joined[:, 1:]
  seen = np.zeros_like(joined2)
  boxes = []
  height, width = bright.shape
  for y0, x0 in zip(*np.nonzero(joined2)):
    if seen[y0, x0]:
      continue
    stack, pixels = [(y0, x0)], []
    seen[y0, x0] = True
    while stack:
      y, x = stack.pop()
      pixels.append((y, x))
      for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        v, u = y + dy, x + dx
        if 0 <= v < height and 0 <= u < width and joined2[v, u] and not seen[v, u]:
          seen[v, u] = True
          stack.append((v, u))
    ys, xs = np.array(pixels).T
    own = bright[ys, xs]  # the region's box is that of its bright pixels, not of the dilation
    if own.sum() >= 4:
      ys, xs = ys[own], xs[own]
      boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
  boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
  return np.asarray(boxes[:max_regions], np.float32).reshape(-1, 4)


def scaled_boxes(boxes, scale: float):
  """xyxy boxes grown (or shrunk) by `scale` about their centres."""
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  half = (boxes[..., 2:] - boxes[..., :2]) * scale / 2
  return jnp.concatenate([centre - half, centre + half], -1)


def in_place_crops(images, boxes, background):
  """Images (B, H, W, C), boxes (B, N, 4) → (B, N, H, W, C): each box's pixels (those whose centre lies inside
  it) kept where they are, everything else replaced by `background` (H, W, C)."""
  height, width = images.shape[1:3]
  ys, xs = jnp.arange(height) + 0.5, jnp.arange(width) + 0.5
  inside_y = (ys >= boxes[..., 1:2]) & (ys <= boxes[..., 3:4])  # (B, N, H)
  inside_x = (xs >= boxes[..., 0:1]) & (xs <= boxes[..., 2:3])
  inside = inside_y[..., :, None, None] & inside_x[..., None, :, None]
  return jnp.where(inside, images[:, None], background)


def crop_embeddings(clip, images, boxes, scales, *, mode: str, background, out_size: int):
  """Normalised images (B, H, W, C), boxes (B, N, 4) → (B, N, D): the sum of the CLIP's normalised image
  embeddings of each box's crops at `scales`, normalised. mode "resize": the crop resized to `out_size`²
  (bilinear; the paper's); "in_place": the crop kept at its place and scale on the `background` canvas."""
  total = 0.0
  b, n = boxes.shape[:2]
  for scale in scales:
    grown = scaled_boxes(boxes, scale)
    if mode == "resize":
      crops = jax.vmap(lambda im, bx: roi_align(im, bx, output_size=out_size, spatial_scale=1.0,
                                                sampling_ratio=1))(images, grown)
    else:
      crops = in_place_crops(images, grown, background)
    e = clip.encode_image(crops.reshape(b * n, *crops.shape[2:]), train=False)
    total = total + e / jnp.linalg.norm(e, axis=-1, keepdims=True)
  total = total.reshape(b, n, -1)
  return total / jnp.maximum(jnp.linalg.norm(total, axis=-1, keepdims=True), 1e-6)


def nms_numpy(boxes, scores, iou_threshold: float) -> np.ndarray:
  """Greedy NMS of one class: indices kept, best first."""
  order = np.argsort(-scores, kind="stable")
  keep = []
  while len(order):
    i = order[0]
    keep.append(i)
    if len(order) == 1:
      break
    iou = coco.box_iou_matrix(boxes[i:i + 1], boxes[order[1:]])[0]
    order = order[1:][iou <= iou_threshold]
  return np.asarray(keep, np.int64)


def detections(boxes, scores, valid, *, nms_iou: float, max_detections: int):
  """One image: boxes (P, 4), class scores (P, K), valid (P,) → (boxes, scores, labels) after per-class NMS,
  the `max_detections` best."""
  out_b, out_s, out_l = [], [], []
  boxes, scores = np.asarray(boxes, np.float64)[valid], np.asarray(scores, np.float64)[valid]
  for k in range(scores.shape[1]):
    scored = np.nonzero(scores[:, k] > 0)[0]  # a class the scoring cannot name gets no detections
    keep = scored[nms_numpy(boxes[scored], scores[scored, k], nms_iou)]
    out_b.append(boxes[keep])
    out_s.append(scores[keep, k])
    out_l.append(np.full(len(keep), k))
  b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
  top = np.argsort(-s, kind="stable")[:max_detections]
  return b[top], s[top], lab[top]


def split_map(truth, predictions, classes, num_classes: int) -> dict:
  """COCO mAP restricted to `classes` (ground truth and detections of the others left out)."""
  remap = np.full(num_classes, -1)
  remap[list(classes)] = np.arange(len(classes))
  gt_b, gt_l, p_b, p_s, p_l = [], [], [], [], []
  for (tb, tl), (pb, ps, pl) in zip(truth, predictions):
    t, p = remap[tl] >= 0, remap[pl] >= 0
    gt_b.append(tb[t])
    gt_l.append(remap[tl][t])
    p_b.append(pb[p])
    p_s.append(ps[p])
    p_l.append(remap[pl][p])
  return coco.coco_map(gt_b, gt_l, p_b, p_s, p_l, num_classes=len(classes))


class _IndexedSource:
  """The scenes' detection source with each example's index (the key of its precomputed distillation targets)."""

  def __init__(self, split: str):
    self.base = vqa_scenes.DetectionScenesSource(split)
    self.name, self.class_names, self.num_classes = "vqa_scenes", self.base.class_names, self.base.num_classes

  def __len__(self):
    return len(self.base)

  def __getitem__(self, i):
    return self.base[int(i)] | {"index": np.int32(i)}


class ViLDTask:
  """ViLD's training and open-vocabulary evaluation (module docstring)."""

  def __init__(self, config):
    self.config, self.cfg = config, config.vild
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task vild reads data.name='vqa_scenes' (the scenes' boxes and kinds), got "
                        f"{config.data.name!r}")
    unknown = [c for c in self.cfg.novel_classes if c not in vqa_scenes.KINDS]
    if unknown or not self.cfg.novel_classes or len(self.cfg.novel_classes) >= len(vqa_scenes.KINDS):
      raise ConfigError(f"vild.novel_classes={tuple(self.cfg.novel_classes)}: name one or more (not all) of the "
                        f"scenes' kinds {vqa_scenes.KINDS}")
    if self.cfg.crop_mode not in ("in_place", "resize"):
      raise ConfigError(f"vild.crop_mode={self.cfg.crop_mode!r}: choose 'in_place' or 'resize'")
    if not self.cfg.templates or any("{}" not in t for t in self.cfg.templates):
      raise ConfigError("vild.templates: one or more prompts, each with one '{}' for the class phrase")
    self.mean, self.std, _ = image_preprocessing(config)
    if self.cfg.clip_run:
      finished_clip_run(self.cfg.clip_run, "vild.clip_run")
      with open(os.path.join(self.cfg.clip_run, "config.json")) as f:
        data = json.load(f)["config"]["data"]
      if tuple(data["mean"]) != tuple(self.mean) or tuple(data["std"]) != tuple(self.std):
        raise ConfigError(f"data.mean / std {self.mean} / {self.std} differ from the CLIP run's {data['mean']} / "
                          f"{data['std']}: normalise the scenes as that CLIP's images were")
    self.class_names = vqa_scenes.KINDS
    self.num_classes = len(self.class_names)
    self.novel = np.array([n in self.cfg.novel_classes for n in self.class_names])
    self.base_ids = np.nonzero(~self.novel)[0]
    self.novel_ids = np.nonzero(self.novel)[0]
    self.to_base = np.full(self.num_classes, -1, np.int32)
    self.to_base[self.base_ids] = np.arange(len(self.base_ids))
    self._jitted = {}

  # ------------------------------------------------------------------ the frozen CLIP
  def clip_config(self) -> dict:
    """The frozen CLIP's model config (the CLIP run's, else `vild.clip_model`)."""
    if self.cfg.clip_run:
      with open(os.path.join(self.cfg.clip_run, "config.json")) as f:
        return dict(json.load(f)["config"]["model"])
    return dict(self.cfg.clip_model)

  @functools.cached_property
  def clip(self):
    """(tokenizer, CLIP module, its image size) of `vild.clip_run`, or a random small CLIP for smoke runs."""
    from papers_jax.convert import init_params_from_checkpoint
    model_config = self.clip_config()
    if self.cfg.clip_run:
      tokenizer = CaptionTokenizer.from_file(os.path.join(self.cfg.clip_run, "tokenizer.json"),
                                             int(model_config.get("context_length", 77)))
    else:
      tokenizer = CaptionTokenizer.train(self.prompts(), int(model_config.get("context_length", 77)))
    name = model_config.pop("name")
    model_config.setdefault("vocab_size", tokenizer.vocab_size)
    clip = models.create(name, rngs=nnx.Rngs(0), **model_config)
    if self.cfg.clip_run:
      state = nnx.state(clip, nnx.Param)
      checkpoint = finished_clip_run(self.cfg.clip_run, "vild.clip_run")
      params, _ = init_params_from_checkpoint(checkpoint, nnx.to_pure_dict(state), skip=())
      nnx.replace_by_pure_dict(state, params)
      nnx.update(clip, state)
    return tokenizer, clip, int(model_config.get("img_size", 224))

  def prompts(self) -> list[str]:
    """Class-major: for each class, every template × colour."""
    return [t.format(f"{colour} {name}") for name in self.class_names for t in self.cfg.templates
            for colour in vqa_scenes.COLOURS]

  @functools.cached_property
  def class_embeddings(self) -> np.ndarray:
    """(13, D) normalised text embeddings, the prompt ensemble of each class."""
    tokenizer, clip, _ = self.clip
    e = np.asarray(jax.jit(lambda t: clip.encode_text(t, train=False))(tokenizer(self.prompts())), np.float32)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    e = e.reshape(self.num_classes, -1, e.shape[-1]).mean(1)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)

  @functools.cached_property
  def _crop_fn(self):
    _, clip, size = self.clip
    mean, std, scales, mode = self.mean, self.std, tuple(self.cfg.crop_scales), self.cfg.crop_mode
    # The scenes' background: dark noise (data/vqa_scenes.py `render`), one fixed draw.
    canvas = np.random.default_rng(0).integers(0, 40, (size, size, 3)).astype(np.uint8)
    background = normalize_images(jnp.asarray(canvas), mean, std)
    return jax.jit(lambda images, boxes: crop_embeddings(clip, normalize_images(images, mean, std), boxes, scales,
                                                         mode=mode, background=background, out_size=size))

  @functools.cached_property
  def distill_targets(self) -> dict:
    """Per training scene: the precomputed proposals (N, M, 4), their validity (N, M) and the CLIP embeddings
    of their crops (N, M, D); scenes past `vild.distill_scenes` (when > 0) have none."""
    source = vqa_scenes.DetectionScenesSource(self.config.data.train_split)
    n = len(source) if not self.cfg.distill_scenes else min(len(source), int(self.cfg.distill_scenes))
    m = int(self.cfg.num_distill)
    boxes = np.zeros((len(source), m, 4), np.float32)
    valid = np.zeros((len(source), m), bool)
    embed = np.zeros((len(source), m, self.class_embeddings.shape[1]), np.float32)
    vq = vqa_scenes.VQAScenesSource(self.config.data.train_split)
    for i in range(n):
      found = bright_regions(vq.image(i), self.cfg.proposal_threshold, m)
      boxes[i, :len(found)], valid[i, :len(found)] = found, True
    # Only the real proposals go through the CLIP, in fixed-size chunks (one compiled shape).
    pairs, chunk = np.argwhere(valid), 256
    for start in range(0, len(pairs), chunk):
      part = pairs[start:start + chunk]
      rows = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
      images = np.stack([vq.image(int(i)) for i in rows[:, 0]])
      got = np.asarray(self._crop_fn(images, boxes[rows[:, 0], rows[:, 1]][:, None]))[:, 0]
      embed[part[:, 0], part[:, 1]] = got[:len(part)]
    embed[~valid] = 0.0
    return {"boxes": boxes, "valid": valid, "embed": embed}

  # ------------------------------------------------------------------ data and model
  def source(self, split: str):
    return _IndexedSource(split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | {"embed_dim": self.clip_config()["embed_dim"]})

  def forward_flops(self, model) -> float:
    return models.forward_flops(model, img_size=int(self.config.data.image_size))

  def preprocess(self, train: bool):
    max_boxes, image_size = int(self.cfg.max_boxes), int(self.config.data.image_size)
    targets = self.distill_targets if train else None
    to_base = self.to_base

    def fn(example, rng):
      del rng
      if example["image"].shape[0] != image_size:
        raise ConfigError(f"data.image_size={image_size} but the scenes are {example['image'].shape[0]} pixels")
      labels = np.asarray(example["labels"], np.int32)
      keep = to_base[labels] >= 0 if train else np.ones(len(labels), bool)  # novel boxes never reach training
      ex = scenes.pad_targets({"boxes": example["boxes"][keep],
                               "labels": (to_base[labels] if train else labels)[keep]}, max_boxes)
      out = {"image": np.asarray(example["image"]), "boxes": ex["boxes"].astype(np.float32),
             "labels": ex["labels"].astype(np.int32), "box_valid": ex["box_valid"]}
      if train:
        i = int(example["index"])
        out |= {"distill_boxes": targets["boxes"][i], "distill_valid": targets["valid"][i],
                "distill_embed": targets["embed"][i]}
      return out

    return fn

  # ------------------------------------------------------------------ losses
  def _rpn_losses(self, model_anchors, out, batch, valid):
    return objective.rpn_loss(out["rpn_logits"], out["rpn_deltas"], jnp.asarray(model_anchors), batch["boxes"], valid,
                              fg_iou=self.cfg.rpn_fg_iou, bg_iou=self.cfg.rpn_bg_iou)

  def make_loss_fn(self, graphdef):
    base_embed = jnp.asarray(self.class_embeddings[self.base_ids])
    self.distill_targets  # noqa: B018  (the CLIP runs now, not inside the traced step)
    cfg = self.cfg

    def loss_fn(params, model_state, batch, rng):
      del rng
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      gt_boxes, gt_valid = batch["boxes"], batch["box_valid"]
      out = model(images, jnp.concatenate([gt_boxes, batch["distill_boxes"]], axis=1), train=True)
      p, g = out["proposals"].shape[1], gt_boxes.shape[1]
      rois = out["rois"][:, :p + g]
      roi_valid = jnp.concatenate([out["proposal_valid"], gt_valid], axis=1)
      labels, target_boxes = jax.vmap(lambda r, v, b, lab, gv: objective.assign_rois(r, v, b, lab, gv,
                                                                                      fg_iou=cfg.fg_iou))(
          rois, roi_valid, gt_boxes, batch["labels"], gt_valid)
      logits = objective.region_logits(out["text_embed"][:, :p + g], base_embed, out["background"], cfg.temperature)
      loss_text = objective.vild_text_loss(logits, labels, roi_valid)
      loss_box = objective.box_loss(out["box_deltas"][:, :p + g], rois, target_boxes, labels > 0,
                                    vild_model.ROI_BOX_WEIGHTS)
      loss_image = objective.vild_image_loss(out["image_embed"][:, p + g:], batch["distill_embed"],
                                             batch["distill_valid"])
      rpn_obj, rpn_box = self._rpn_losses(model.anchors, out, batch, gt_valid)
      loss = loss_text + cfg.image_weight * loss_image + loss_box + rpn_obj + rpn_box
      metrics = {"loss_text": loss_text, "loss_image": loss_image, "loss_box": loss_box, "loss_rpn_obj": rpn_obj,
                 "loss_rpn_box": rpn_box, "fg_rois": jnp.mean(jnp.sum(labels > 0, axis=1).astype(jnp.float32))}
      return loss, (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      out = model(normalize_images(batch["image"], self.mean, self.std))
      real = batch["mask"].astype(bool)
      rpn_obj, rpn_box = self._rpn_losses(model.anchors, out, batch, batch["box_valid"] & real[:, None])
      count = real.sum().astype(jnp.float32)
      return {"loss": (rpn_obj + rpn_box) * count, "rpn_obj": rpn_obj * count, "rpn_box": rpn_box * count,
              "count": count}
    return eval_fn

  # ------------------------------------------------------------------ detection and mAP
  def _predict_fn(self, trainer):
    if trainer not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std
      classes = jnp.asarray(self.class_embeddings)
      base = jnp.asarray(self.base_ids)
      cfg, novel = self.cfg, jnp.asarray(self.novel)

      def predict(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        out = model(normalize_images(images, mean, std))
        p_text = jax.nn.softmax(objective.region_logits(out["text_embed"], classes, out["background"],
                                                        cfg.temperature))[..., 1:]
        p_image = jax.nn.softmax(objective.region_logits(out["image_embed"], classes, out["background"],
                                                         cfg.temperature))[..., 1:]
        p_closed = jax.nn.softmax(objective.region_logits(out["text_embed"], classes[base], out["background"],
                                                          cfg.temperature))[..., 1:]
        closed = jnp.zeros_like(p_text).at[..., base].set(p_closed)
        return {"boxes": vild_model.refined_boxes(out, images.shape[1]), "proposals": out["proposals"],
                "valid": out["proposal_valid"], "text": p_text, "image": p_image, "closed": closed,
                "ensemble": objective.ensemble_scores(p_text, p_image, novel, cfg.ensemble_weight)}
      self._jitted = {trainer: jax.jit(predict, out_shardings=sharding.replicated(trainer.mesh))}
    return self._jitted[trainer]

  def predict(self, trainer, source) -> dict:
    """Per scoring (module docstring): per image (xyxy boxes, scores, labels)."""
    predict = self._predict_fn(trainer)
    batch_size = self.config.batch_size // self.config.grad_accum_steps
    scorings = ("ensemble", "text", "image", "closed") + (("clip_crops",) if self.cfg.clip_baseline else ())
    out = {k: [] for k in scorings}
    clip = self.clip[1]
    if self.cfg.clip_baseline:
      scale = float(clip.temperature_scale())
      classes = self.class_embeddings
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for local in pipeline.eval_batches(source, self.preprocess(train=False), global_batch=batch_size,
                                         process_index=jax.process_index(), process_count=jax.process_count()):
        images = sharding.global_batch({"image": local["image"]}, trainer.mesh, trainer.rules)["image"]
        got = jax.device_get(predict(trainer.state.params, trainer.state.model_state, images))
        if self.cfg.clip_baseline:
          crops = np.asarray(self._crop_fn(np.asarray(local["image"]), got["proposals"]))
          z = scale * crops @ classes.T
          z = np.exp(z - z.max(-1, keepdims=True))
          got["clip_crops"] = z / z.sum(-1, keepdims=True)
        for i in range(len(got["valid"])):
          for k in scorings:
            boxes = got["proposals" if k == "clip_crops" else "boxes"][i]
            out[k].append(detections(boxes, got[k][i], got["valid"][i], nms_iou=self.cfg.nms_iou,
                                     max_detections=self.cfg.max_detections))
    return {k: v[:len(source)] for k, v in out.items()}

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del step, writer, metrics
    predictions = self.predict(trainer, source)
    truth = [(np.asarray(e["boxes"], np.float64), np.asarray(e["labels"])) for e in
             (source.base[i] for i in range(len(source)))]
    result = {}
    for k, preds in predictions.items():
      for part, classes in (("all", np.arange(self.num_classes)), ("novel", self.novel_ids), ("base", self.base_ids)):
        got = split_map(truth, preds, classes, self.num_classes)
        result |= {f"{k}/{part}_AP": got["AP"], f"{k}/{part}_AP50": got["AP50"], f"{k}/{part}_AR100": got["AR100"]}
      for c in self.novel_ids:  # each novel class alone
        result[f"{k}/AP_{self.class_names[c]}"] = split_map(truth, preds, [c], self.num_classes)["AP"]
    return result
