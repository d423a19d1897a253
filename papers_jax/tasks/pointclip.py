"""PointCLIP (`config.task = "pointclip"`): zero-shot and few-shot 3-D classification with a frozen CLIP.

Data: data/point_clouds.py (six parametric shapes; `pointclip.shots` clouds per class for training, the
test split for evaluation). The model (models/pointclip.py) projects each cloud to six depth maps and
runs the image tower of a finished CLIP run (`pointclip.clip_run`: its config.json, tokenizer.json and last
checkpoint, e.g. the run of configs/clip/scenes.py), frozen; `config.model` must be that CLIP's
architecture (the checkpoint is read strictly). Class prompts: every template of `pointclip.templates`
with the class's text (`pointclip.class_texts`: "view_words", the outlines the CLIP has read, or "names",
the shapes' own names), through the frozen text tower, averaged per class.
With `clip_run=""` the CLIP is random (smoke runs only) and the tokenizer is made from the prompts.

Training (the few-shot head only: the adapter, or the linear baseline): DGCNN-smoothed cross-entropy
(objectives/pointclip.py, eps `pointclip.label_smoothing`). Evaluation on the test split:
  eval/accuracy (the head), eval/zero_shot_accuracy (no training: equal view weights), and after each
  evaluation: eval/zero_shot_searched_accuracy (view weights chosen from {0, 0.25, ..., 1}^6 on the
  training shots, the paper's search done on training data), eval/zero_shot_view/<view> (each view alone),
  eval/zero_shot_scenes_templates (the CLIP's own caption templates instead of `templates`),
  eval/zero_shot_names (the classes' own names), eval/prototype_accuracy (nearest class mean of the
  shots' concatenated normalised view features, a training-free few-shot baseline) and eval/chance.
"""

import functools
import itertools
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
from papers_jax.data import point_clouds
from papers_jax.data.captions import CaptionTokenizer
from papers_jax.errors import ConfigError
from papers_jax.evaluators import zero_shot as zs
from papers_jax.models import pointclip as model_lib
from papers_jax.nn.frozen import freeze
from papers_jax.objectives import pointclip as objective
from papers_jax.tasks.clip import check_clip_run, finished_clip_run

RANGES = (("shots", "[0, inf)"), ("label_smoothing", "[0, 1)"), ("residual_ratio", "[0, 1]"),
          ("num_points", "[1, inf)"), ("splat", "[1, inf)"))
PAPER_TEMPLATE = "point cloud depth map of a {}."
SCENES_TEMPLATES = ("a {}.", "from left to right: a {}.", "from top to bottom: a {}.")  # configs/clip/scenes.py
SEARCH_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.pointclip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      clip_run="", head="adapter", shots=16, num_points=1024, train_per_class=0, test_per_class=0,
      templates=(PAPER_TEMPLATE,), class_texts="view_words", label_smoothing=0.2, residual_ratio=0.6,
      fusion_init=0.5, dropout=0.075, camera_distance=2.0, focal=1.5, splat=2) | overrides)


class PointCLIPTask:
  """PointCLIP's few-shot training and zero-shot evaluation (module docstring)."""

  def __init__(self, config):
    self.config, self.pc = config, config.pointclip
    if config.data.name != "point_clouds":
      raise ConfigError(f"task pointclip reads data.name='point_clouds', got {config.data.name!r}")
    if self.pc.class_texts not in ("view_words", "names"):
      raise ConfigError(f"pointclip.class_texts must be 'view_words' or 'names', got {self.pc.class_texts!r}")
    if self.pc.head not in model_lib.HEADS:
      raise ConfigError(f"pointclip.head must be one of {model_lib.HEADS}, got {self.pc.head!r}")
    if not self.pc.templates or any("{}" not in t for t in self.pc.templates):
      raise ConfigError("pointclip.templates: one or more prompts, each with one '{}' for the class text")
    self.mean, self.std, _ = image_preprocessing(config)
    self.num_classes = len(point_clouds.CLASSES)
    if self.pc.clip_run:
      check_clip_run(self.pc.clip_run, "pointclip.clip_run", config.model, self.mean, self.std, "depth maps")

  def class_texts(self, kind: str) -> list[str]:
    words = {"view_words": point_clouds.VIEW_WORDS, "side_words": point_clouds.SIDE_WORDS,
             "top_words": point_clouds.TOP_WORDS}.get(kind)
    return [words[c] if words else c for c in point_clouds.CLASSES]

  @functools.cached_property
  def tokenizer(self) -> CaptionTokenizer:
    context = int(self.config.model.get("context_length", 77))
    if self.pc.clip_run:
      finished_clip_run(self.pc.clip_run, "pointclip.clip_run")
      return CaptionTokenizer.from_file(os.path.join(self.pc.clip_run, "tokenizer.json"), context)
    texts = zs_texts(self.class_texts("view_words") + self.class_texts("names"),
                     tuple(self.pc.templates) + SCENES_TEMPLATES)
    return CaptionTokenizer.train(texts, context)

  def prompt_tokens(self, templates, kind: str) -> np.ndarray:
    """(K·T, L) token ids, class-major."""
    return np.asarray(self.tokenizer(zs_texts(self.class_texts(kind), tuple(templates))), np.int32)

  def frozen_checkpoints(self) -> dict:
    return {"clip/": finished_clip_run(self.pc.clip_run, "pointclip.clip_run")} if self.pc.clip_run else {}

  def source(self, split: str):
    shots = int(self.pc.shots) if split == self.config.data.train_split else 0
    per_class = int(self.pc.train_per_class if split == "train" else self.pc.test_per_class)
    return point_clouds.PointCloudSource(split, num_points=int(self.pc.num_points), shots=shots,
                                         per_class=per_class)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    clip = freeze(models.create(name, rngs=rngs, **kwargs))  # random here; the trainer reads the CLIP run
    pc = self.pc
    return model_lib.PointCLIP(clip, num_classes=self.num_classes, head=pc.head, img_size=kwargs["img_size"],
                               camera_distance=pc.camera_distance, focal=pc.focal, splat=int(pc.splat),
                               mean=self.mean, std=self.std, residual_ratio=pc.residual_ratio,
                               fusion_init=pc.fusion_init, dropout=pc.dropout, rngs=rngs)

  def preprocess(self, train: bool):
    del train

    def fn(example, rng):
      del rng
      return {"points": np.asarray(example["points"], np.float32), "label": np.int32(example["label"])}

    return fn

  def _outputs(self, model, batch, *, train: bool, rng=None):
    tokens = jnp.asarray(self.prompt_tokens(self.pc.templates, self.pc.class_texts))
    rngs = nnx.Rngs(dropout=rng) if train else None
    return model(batch["points"], tokens, len(self.pc.templates), train=train, rngs=rngs)

  def make_loss_fn(self, graphdef):
    eps = float(self.pc.label_smoothing)

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      logits, _, _ = self._outputs(model, batch, train=True, rng=rng)
      loss = objective.smooth_cross_entropy(logits, batch["label"], eps).mean()
      accuracy = (logits.argmax(-1) == batch["label"]).mean()
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, ({"accuracy": accuracy}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      logits, zero_shot, _ = self._outputs(model, batch, train=False)
      mask = batch["mask"].astype(jnp.float32)
      labels = batch["label"]
      loss = objective.smooth_cross_entropy(logits, labels, 0.0)
      return {"loss": (loss * mask).sum(), "accuracy": ((logits.argmax(-1) == labels) * mask).sum(),
              "zero_shot_accuracy": ((zero_shot.argmax(-1) == labels) * mask).sum(), "count": mask.sum()}
    return eval_fn

  def save_assets(self, workdir: str):
    if not self.pc.clip_run:  # a tokenizer made here: keep it with the run
      self.tokenizer.save(os.path.join(workdir, "tokenizer.json"))

  # ------------------------------------------------------------------ zero-shot variants (numpy)
  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    graphdef, state = trainer.graphdef, trainer.state

    @jax.jit
    def view_features(params, model_state, points):
      return merge_model(graphdef, params, model_state).view_features(points)

    @functools.partial(jax.jit, static_argnums=3)
    def texts(params, model_state, tokens, num_templates):
      return model_lib.class_text_features(merge_model(graphdef, params, model_state).clip, tokens, num_templates)

    with sharding.use_mesh(trainer.mesh, trainer.rules):
      features = functools.partial(self._features, view_features, state, int(self.config.batch_size))
      test_feats, test_labels = features(source)
      shots = self.source(self.config.data.train_split)
      shot_feats, shot_labels = features(shots)
      text = lambda templates, kind: np.asarray(texts(state.params, state.model_state,  # noqa: E731
                                                      jnp.asarray(self.prompt_tokens(templates, kind)),
                                                      len(templates)))
      paper_text = text(tuple(self.pc.templates), self.pc.class_texts)
      scenes_text = text(SCENES_TEMPLATES, self.pc.class_texts)
      names_text = text(tuple(self.pc.templates), "names")
      per_view = {t: per_view_texts(text(t, "side_words"), text(t, "top_words"))
                  for t in (tuple(self.pc.templates), SCENES_TEMPLATES)}
    out = zero_shot_report(test_feats, test_labels, shot_feats, shot_labels, paper_text, scenes_text, names_text)
    return out | per_view_report(test_feats, test_labels, shot_feats, shot_labels, *per_view.values())

  @staticmethod
  def _features(view_features, state, batch: int, source):
    points, labels = source.points, source.labels
    out = []
    for start in range(0, len(points), batch):
      chunk = points[start:start + batch]
      pad = batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      out.append(np.asarray(view_features(state.params, state.model_state, chunk), np.float32)[:batch - pad])
    return np.concatenate(out), np.asarray(labels)


def zs_texts(class_texts, templates) -> list[str]:
  """Every template with every class text, class-major."""
  return [t.format(c) for c in class_texts for t in templates]


def per_view_texts(side, top) -> np.ndarray:
  """(K, D) side-view and top-view class texts → (M, K, D), one row per view of models/pointclip.py's VIEWS."""
  return np.stack([side if name in ("front", "right", "back", "left") else top for name in model_lib.VIEW_NAMES])


def _view_logits(features, text) -> np.ndarray:
  """(N, M, D), (K, D) or per view (M, K, D) normalised texts → (N, M, K) = 100 cos(f_i, t_k) (of view i's t_k)."""
  spec = "nmd,mkd->nmk" if text.ndim == 3 else "nmd,kd->nmk"
  return 100.0 * np.einsum(spec, zs.l2_normalize(features), text)


def zero_shot_logits_np(features, text, weights) -> np.ndarray:
  """Numpy: (N, M, D), (K, D) or (M, K, D) normalised, (M,) → (N, K) = 100 Σ_i w_i cos(f_i, t_k)."""
  return np.einsum("nmk,m->nk", _view_logits(features, text), np.asarray(weights, np.float32))


def search_view_weights(features, labels, text, grid=SEARCH_GRID) -> np.ndarray:
  """The view weights of `grid`^M with the best accuracy on (features, labels); ties: the first found."""
  per_view = _view_logits(features, text)
  best, best_acc = None, -1.0
  for weights in itertools.product(grid, repeat=features.shape[1]):
    if not any(weights):
      continue
    acc = float(np.mean(np.einsum("nmk,m->nk", per_view, np.asarray(weights)).argmax(-1) == labels))
    if acc > best_acc:
      best, best_acc = np.asarray(weights, np.float32), acc
  return best


def zero_shot_report(test_feats, test_labels, shot_feats, shot_labels, text, scenes_text, names_text) -> dict:
  m = test_feats.shape[1]
  acc = lambda logits: float(np.mean(logits.argmax(-1) == test_labels))  # noqa: E731
  ones = np.ones(m, np.float32)
  weights = search_view_weights(shot_feats, shot_labels, text)
  out = {"zero_shot_searched_accuracy": acc(zero_shot_logits_np(test_feats, text, weights)),
         "zero_shot_scenes_templates": acc(zero_shot_logits_np(test_feats, scenes_text, ones)),
         "zero_shot_names": acc(zero_shot_logits_np(test_feats, names_text, ones)),
         "chance": 1.0 / text.shape[0]}
  for i, name in enumerate(model_lib.VIEW_NAMES):
    out[f"zero_shot_view/{name}"] = acc(zero_shot_logits_np(test_feats, text, np.eye(m, dtype=np.float32)[i]))
  out |= {f"searched_view_weight/{n}": float(w) for n, w in zip(model_lib.VIEW_NAMES, weights, strict=True)}
  flat = lambda f: zs.l2_normalize(zs.l2_normalize(f).reshape(len(f), -1))  # noqa: E731
  prototypes = zs.l2_normalize(np.stack([flat(shot_feats)[shot_labels == k].mean(0) for k in range(text.shape[0])]))
  out["prototype_accuracy"] = acc(flat(test_feats) @ prototypes.T)
  return out


def per_view_report(test_feats, test_labels, shot_feats, shot_labels, text, scenes_text) -> dict:
  """Zero-shot with per-view class texts ((M, K, D): what each view shows, `per_view_texts`), through the
  configured templates and through the CLIP's own caption templates; equal and searched view weights."""
  acc = lambda logits: float(np.mean(logits.argmax(-1) == test_labels))  # noqa: E731
  ones = np.ones(test_feats.shape[1], np.float32)
  out = {}
  for tag, t in (("", text), ("_scenes_templates", scenes_text)):
    out[f"zero_shot_per_view{tag}"] = acc(zero_shot_logits_np(test_feats, t, ones))
    weights = search_view_weights(shot_feats, shot_labels, t)
    out[f"zero_shot_per_view_searched{tag}"] = acc(zero_shot_logits_np(test_feats, t, weights))
  return out
