"""LSeg (`config.task = "lseg"`): supervised per-pixel training against frozen CLIP text embeddings of
the label names; zero-shot segmentation with labels never seen in training.

Data: the generated scenes (data/vqa_scenes.py `SegmentationScenesSource`), each pixel labelled with its
object's (colour, kind) pair (52 pairs) or background. A quarter of the pairs (`held_out_pair`: red
circle, green 2, yellow square, ...) are never labelled in training: their pixels are ignored by
the loss, so the model never learns their names; every colour and kind still occurs in other pairs.

Text: the label names through `lseg.label_template` ("a {}.", e.g. "a red circle."), background
through `lseg.background_prompt`, embedded once by the text tower of a CLIP run (`lseg.clip_run`,
e.g. the run of configs/clip/scenes.py: its config.json, tokenizer.json and last checkpoint), which is
never trained here (LSeg's frozen text encoder).

Training loss: the per-pixel cross-entropy (objectives/segmentation.py) over background + the seen
pairs. Evaluation (tasks/segmentation.py's sums, over every class): eval/miou, eval/iou/<class>, and
after each evaluation eval/miou_seen and eval/miou_unseen (the mean IoU of the seen / held-out pairs
present), plus a second, coarser label set never trained on: background + the 4 colours (a colour's text
feature is the mean of "a {colour} {kind}." over the kinds), scored on the first
`lseg.colour_eval_scenes` eval scenes: eval/colour_miou, beside eval/colour_miou_all_background.
A closed-set segmenter trained on the seen pairs scores 0 on every held-out pair by construction.
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
from papers_jax.data import vqa_scenes
from papers_jax.data.captions import CaptionTokenizer
from papers_jax.data.segmentation import IGNORE_INDEX
from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.evaluators import zero_shot
from papers_jax.objectives import segmentation as objective
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.segmentation import SegmentationTask

RANGES = (("colour_eval_scenes", "[1, inf)"),)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.lseg`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(clip_run="", label_template="a {}.", background_prompt="no objects.",
                                        colour_eval_scenes=200) | overrides)


def clip_text_encoder(run_dir: str):
  """(tokenizer, jitted token ids → text features) of a finished CLIP run's last checkpoint."""
  from papers_jax.convert import init_params_from_checkpoint
  config_path, tok_path = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "tokenizer.json")
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not (os.path.isfile(config_path) and os.path.isfile(tok_path) and steps):
    raise CheckpointError(f"lseg.clip_run={run_dir!r} is not a finished CLIP run (config.json, tokenizer.json and "
                          "checkpoints/<step>/ expected); train one with configs/clip/scenes.py first")
  with open(config_path) as f:
    model_config = dict(json.load(f)["config"]["model"])
  name = model_config.pop("name")
  tokenizer = CaptionTokenizer.from_file(tok_path, int(model_config.get("context_length", 77)))
  model_config.setdefault("vocab_size", tokenizer.vocab_size)
  clip = models.create(name, rngs=nnx.Rngs(0), **model_config)
  state = nnx.state(clip, nnx.Param)
  params, _ = init_params_from_checkpoint(os.path.join(ckpt_dir, str(steps[-1]), "state"), nnx.to_pure_dict(state),
                                          skip=())
  nnx.replace_by_pure_dict(state, params)
  nnx.update(clip, state)
  return tokenizer, jax.jit(lambda tokens: clip.encode_text(tokens, train=False))


class LSegTask(SegmentationTask):
  """LSeg's training and zero-shot evaluation on the generated scenes (module docstring)."""

  def __init__(self, config):
    if config.data.name != "vqa_scenes":
      raise ConfigError(f"task lseg reads data.name='vqa_scenes' (per-pixel pair labels), got {config.data.name!r}")
    if not config.lseg.clip_run:
      raise ConfigError("lseg.clip_run must name a finished CLIP run (its text tower embeds the labels), e.g. "
                        "the workdir of configs/clip/scenes.py")
    self.config, self.seg = config, config.segmentation
    self.mean, self.std, _ = image_preprocessing(config)
    self.ignore_index, self.aux_loss_weight = IGNORE_INDEX, 0.0
    self.num_classes = len(vqa_scenes.PAIR_CLASSES)
    self.class_names = [n.replace(" ", "_") for n in vqa_scenes.PAIR_CLASSES]
    seen = [0] + [k for k, n in enumerate(vqa_scenes.PAIR_CLASSES[1:], 1) if not vqa_scenes.held_out_pair(*n.split())]
    self.seen = np.asarray(seen)
    # Training labels: index into the seen classes; held-out pairs are ignored.
    self.train_label_map = np.full(self.num_classes, IGNORE_INDEX, np.int32)
    self.train_label_map[self.seen] = np.arange(len(self.seen))

  @functools.cached_property
  def text(self):
    """(tokenizer, encode_text) of the frozen CLIP."""
    return clip_text_encoder(self.config.lseg.clip_run)

  @functools.cached_property
  def label_features(self) -> np.ndarray:
    """(53, D): the background prompt, then every pair's label prompt, through the frozen text tower."""
    tokenizer, encode = self.text
    prompts = [self.config.lseg.background_prompt] + [self.config.lseg.label_template.format(n)
                                                       for n in vqa_scenes.PAIR_CLASSES[1:]]
    features = np.asarray(encode(tokenizer(prompts)), np.float32)
    want = (models.model_config(self.config.model.name) | dict(self.config.model)).get("embed_dim")
    if features.shape[1] != want:
      raise ConfigError(f"the CLIP run's text features are {features.shape[1]}-d but model.embed_dim is {want}; "
                        "set model.embed_dim to the CLIP run's embed_dim")
    return features

  def source(self, split: str):
    return vqa_scenes.SegmentationScenesSource(split)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def preprocess(self, train: bool):
    label_map = self.train_label_map

    def fn(example, rng):
      del rng
      label = np.asarray(example["label"], np.int32)
      return {"image": np.asarray(example["image"]), "label": label_map[label] if train else label}

    return fn

  def make_loss_fn(self, graphdef):
    self.label_features  # noqa: B018  (the frozen text tower runs now, not inside the traced step)
    return super().make_loss_fn(graphdef)

  def make_eval_fn(self, graphdef):
    self.label_features  # noqa: B018
    return super().make_eval_fn(graphdef)

  def _outputs(self, model, batch, *, train: bool, rng=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    rows = self.label_features[self.seen] if train else self.label_features
    rngs = nnx.Rngs(dropout=rng) if train else None
    return model(images, jnp.asarray(rows), train=train, rngs=rngs), []

  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    out = super().after_eval(trainer, step, writer, source, metrics)
    held = {n.replace(" ", "_") for n in vqa_scenes.PAIR_CLASSES[1:] if vqa_scenes.held_out_pair(*n.split())}
    for tag, keep in (("seen", lambda n: n not in held), ("unseen", lambda n: n in held)):
      ious = [v for k, v in out.items() if k.startswith("iou/") and k[4:] != "background" and keep(k[4:])]
      out[f"miou_{tag}"] = float(np.mean(ious)) if ious else 0.0
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      out |= self.colour_scores(trainer)
    return out

  def colour_scores(self, trainer) -> dict:
    """Zero-shot colour segmentation (background + 4 colours) of the first eval scenes."""
    tokenizer, encode = self.text
    colour_rows = zero_shot.classifier_weights(encode, tokenizer, tuple(vqa_scenes.COLOURS),
                                               [f"a {{}} {k}." for k in vqa_scenes.KINDS])
    rows = jnp.asarray(np.concatenate([self.label_features[:1], colour_rows]))
    graphdef, state, mean, std = trainer.graphdef, trainer.state, self.mean, self.std

    @jax.jit
    def predict(params, model_state, images):
      model = merge_model(graphdef, params, model_state)
      return model(normalize_images(images, mean, std), rows, train=False).argmax(-1)

    images, colour_maps, _ = vqa_scenes.semantic_labels(self.config.data.eval_split,
                                                         int(self.config.lseg.colour_eval_scenes))
    batch = int(self.config.batch_size)
    preds = []
    for start in range(0, len(images), batch):
      chunk = images[start:start + batch]
      pad = batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      preds.append(np.asarray(predict(state.params, state.model_state, chunk))[:batch - pad])
    preds = np.concatenate(preds)
    score = lambda p: objective.iou_from_confusion(objective.confusion_matrix(p, colour_maps, 5))["miou"]  # noqa: E731
    return {"colour_miou": score(preds), "colour_miou_all_background": score(np.zeros_like(colour_maps))}
