"""CLIP pre-training (`config.task = "clip"`): contrastive image-text learning, zero-shot and retrieval.

Train step: images (normalised with the data mean/std) go through the image tower and the
tokenised captions through the text tower (models/clip.py); the loss is the symmetric
cross-entropy over the global batch's N×N cosine-similarity matrix scaled by the learned
temperature (objectives/contrastive.py `clip_loss`: under jit with a batch-sharded input the matrix
spans every device's examples). Train metrics add the temperature scale exp(t) and the in-batch
image→text top-1 (`in_batch_top1`: own caption, or own class for class captions).

Data (`source(split)`, data/captions.py):
  - an image-text source ("tfds:<name>" with `clip.text_key`, "captions_folder" or the generated
    "vqa_scenes", whose tokenizer is trained on its captions and questions when clip.tokenizer is empty): training
    takes a random one of each image's captions, evaluation its first;
  - a labelled image source ("digits", "folder", "tfds:<classification set>"): captions are made
    from the class names (`clip.class_names`, default: the digits' words and numerals, or the
    folder's class directories) with `clip.train_templates` for training and
    `clip.eval_templates` — never used in training — for evaluation.
Captions are tokenised to the model's context_length (config.model, default 77) by `clip.tokenizer`
(a tokenizers JSON file, e.g. OpenAI's BPE), or, when empty and the captions come from templates, by
a word-level tokenizer trained here on the training captions (saved as <workdir>/tokenizer.json).
The model's vocab_size is the tokenizer's unless config.model sets it.

Evaluation: `eval/loss` is the contrastive loss within each eval batch (padding rows left out).
After each evaluation (`after_eval`), on the eval split:
  - retrieval recall@K both ways (evaluators/retrieval.py): image→text and text→image over the
    eval images and their captions (all of them for image-text data; for class captions one per
    image from the held-out templates, matched by class): eval/i2t_rK, eval/t2i_rK (recall@K);
  - zero-shot classification (evaluators/zero_shot.py) for labelled eval data: class prompts
    through the held-out templates, ensembled: eval/zero_shot_top1 (/top5); and through the
    training templates for comparison: eval/zero_shot_top1_train_templates;
  - for `data.name = "vqa_scenes"`, zero-shot on single objects: each eval scene's objects drawn
    alone, classified among the 52 prompts "colour kind" through the eval templates:
    eval/object_top1, eval/object_colour_top1, eval/object_kind_top1 (and with `clip.grey_prob`, the objects
    in grey among the 13 "kind" prompts: eval/object_kind_top1_grey);
  - with `clip.zero_shot_data` (e.g. "tfds:imagenet2012" and `clip.zero_shot_class_names`, a file
    with one class name per line) zero-shot on that labelled set: eval/zero_shot_<name>_top1.
The class rows are computed once per evaluation and cached by step.
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
from papers_jax.data import captions as captions_lib
from papers_jax.data import pipeline, preprocess, vqa_scenes
from papers_jax.data.sources import ImageFolderSource, get_source
from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.evaluators import retrieval, zero_shot
from papers_jax.objectives import contrastive
from papers_jax.tasks.classification import normalize_images

# OpenAI's image normalisation (the released models' preprocessing, registered with the clip_* names).
OPENAI_MEAN, OPENAI_STD = models.registry.OPENAI_CLIP_MEAN, models.registry.OPENAI_CLIP_STD


# Allowed values of config.clip's numbers (core/config.py check_ranges).
RANGES = (
    ("retrieval_ks", "[1, 100000]"),
    ("feature_batch", "[1, 1048576]"),
    ("max_eval_images", "[0, inf)"),             # 0: all
    ("grey_prob", "[0, 1]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.clip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      tokenizer="", text_key="", class_names=(),
      train_templates=captions_lib.PAPER_TEMPLATES, eval_templates=captions_lib.PAPER_TEMPLATES,
      zero_shot_data="", zero_shot_split="validation", zero_shot_class_names="",
      retrieval_ks=(1, 5, 10), feature_batch=256, max_eval_images=0, grey_prob=0.0, grey_drop_words=()) | overrides)


def grey_pair(image: np.ndarray, caption: str, drop_words) -> tuple[np.ndarray, str]:
  """The greyscale augmentation: the image's luminance (ITU-R 601) in every channel, and the caption without
  the words a grey image cannot show (`drop_words`, e.g. the colours), so that shapes are learned apart from colour."""
  grey = np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  image = np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
  return image, " ".join(w for w in caption.split(" ") if w not in set(drop_words))


def masked_clip_losses(image_embeddings, text_embeddings, logit_scale, valid):
  """Per-pair CLIP losses (N,) over the valid pairs only (`valid` (N,) bool; invalid rows get 0):
  each valid pair's mean of its image→text and text→image cross-entropies, with invalid pairs
  removed from both softmaxes. With every pair valid, the mean is `contrastive.clip_loss`."""
  i, t = contrastive.l2_normalize(image_embeddings), contrastive.l2_normalize(text_embeddings)
  logits = logit_scale * (i @ t.T)
  keep = (valid[None, :] & valid[:, None]) | jnp.eye(len(valid), dtype=bool)  # an invalid row keeps only itself
  logits = jnp.where(keep, logits, -jnp.inf)
  diag = jnp.diagonal(logits)
  losses = 0.5 * (jax.nn.logsumexp(logits, axis=1) + jax.nn.logsumexp(logits, axis=0)) - diag
  return jnp.where(valid, losses, 0.0)


def random_square_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """Shorter side resized to `size` (bicubic), then a uniformly placed size × size crop."""
  from PIL import Image
  h, w = image.shape[:2]
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  pil = Image.fromarray(image[:, :, 0] if image.shape[-1] == 1 else image).resize((nw, nh), Image.BICUBIC)
  resized = np.asarray(pil)
  resized = resized[:, :, None] if resized.ndim == 2 else resized
  top, left = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
  return resized[top:top + size, left:left + size]


def in_batch_top1(image_embeddings, text_embeddings, ids):
  """Fraction of images whose most similar caption in the batch has their id: the example index for
  image-text data (the own caption), the class for captions made from class names (any caption of
  the class: the template is not in the image)."""
  sims = contrastive.l2_normalize(image_embeddings) @ contrastive.l2_normalize(text_embeddings).T
  return jnp.mean(ids[jnp.argmax(sims, axis=1)] == ids)


@functools.cache
def finished_clip_run(run_dir: str, field: str, kind: str = "CLIP",
                      hint: str = "train one with configs/clip/scenes.py first") -> str:
  """The state of the last checkpoint of a finished run with a caption tokenizer: the frozen CLIP of ViLD,
  PointCLIP, AudioCLIP and unCLIP, or unCLIP's own stages. `field` names what gave `run_dir`, for the error."""
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not (all(os.path.isfile(os.path.join(run_dir, f)) for f in ("tokenizer.json", "config.json")) and steps):
    raise CheckpointError(f"{field}={run_dir!r} is not a finished {kind} run (config.json, tokenizer.json and "
                          f"checkpoints/<step>/ expected); {hint}")
  return os.path.join(ckpt_dir, str(steps[-1]), "state")


def check_clip_run(run_dir: str, field: str, model: dict, mean, std, inputs: str = "images") -> None:
  """Stops a run whose config.model or image normalisation differs from the frozen CLIP run's: its checkpoint is
  read strictly, and its towers only know inputs normalised as its own were."""
  finished_clip_run(run_dir, field)
  with open(os.path.join(run_dir, "config.json")) as f:
    run = json.load(f)["config"]
  theirs, ours = dict(run["model"]), dict(model)
  differ = sorted(k for k in set(ours) | set(theirs) if k != "vocab_size" and ours.get(k) != theirs.get(k))
  if differ:
    raise ConfigError(f"config.model differs from the CLIP run's model in {differ}: set config.model to the CLIP "
                      f"run's ({os.path.join(run_dir, 'config.json')})")
  if tuple(run["data"]["mean"]) != tuple(mean) or tuple(run["data"]["std"]) != tuple(std):
    raise ConfigError(f"data.mean / std {tuple(mean)} / {tuple(std)} differ from the CLIP run's {run['data']['mean']} "
                      f"/ {run['data']['std']}: normalise the {inputs} as that CLIP's images were")


def scenes_tokenizer(context_length: int) -> captions_lib.CaptionTokenizer:
  """The word-level tokenizer of the generated scenes' texts (trained once per process)."""
  return captions_lib.CaptionTokenizer.train(vqa_scenes.training_texts(), context_length)


class CLIPTask:
  """Model + loss + evaluation for `config.task = "clip"`."""

  def __init__(self, config):
    self.config = config
    self.clip = config.clip
    self.mean, self.std, _ = image_preprocessing(config)
    self._sources, self._jitted, self._classifiers = {}, {}, {}
    if not self.clip.eval_templates or not self.clip.train_templates:
      raise ConfigError("clip.train_templates and clip.eval_templates must each hold at least one template")

  # ------------------------------------------------------------------ data
  def source(self, split: str):
    """The image-text source of `split`, or the labelled image source whose captions come from templates."""
    if split not in self._sources:
      d = self.config.data
      src = captions_lib.image_text_source(d, split, self.clip.text_key)
      self._sources[split] = src if src is not None else get_source(d, split)
      self.tokenizer  # noqa: B018  (built now: a missing tokenizer is an error before training starts)
    return self._sources[split]

  @property
  def image_text(self) -> bool:
    name = self.config.data.name
    return name in ("captions_folder", "vqa_scenes") or (name.startswith("tfds:") and bool(self.clip.text_key))

  @functools.cached_property
  def class_names(self) -> tuple[tuple[str, ...], ...] | None:
    """Names per class (first: the zero-shot name) for templated captions; None for image-text data."""
    if self.image_text:
      return None
    if self.clip.class_names:
      return captions_lib.parse_class_names(self.clip.class_names)
    if self.config.data.name == "digits":
      return captions_lib.DIGIT_NAMES
    src = self.source(self.config.data.train_split)
    if isinstance(src, ImageFolderSource):
      return captions_lib.parse_class_names(src.classes)
    raise ConfigError(f"captions for {self.config.data.name!r} need class names: set clip.class_names to one "
                      "name per class in label order (synonyms separated by '|'), or use an image-text dataset "
                      "with clip.text_key")

  @property
  def context_length(self) -> int:
    return int((models.model_config(self.config.model.name) | dict(self.config.model)).get("context_length", 77))

  @functools.cached_property
  def tokenizer(self) -> captions_lib.CaptionTokenizer:
    if self.clip.tokenizer:
      tok = captions_lib.CaptionTokenizer.from_file(self.clip.tokenizer, self.context_length)
    elif self.class_names is not None:
      names = [n for names in self.class_names for n in names]
      tok = captions_lib.CaptionTokenizer.train(captions_lib.captions(self.clip.train_templates, names),
                                                self.context_length)
    elif self.config.data.name == "vqa_scenes":  # every word of the scenes' captions and questions
      tok = scenes_tokenizer(self.context_length)
    else:
      raise ConfigError("image-text data needs a tokenizer: set clip.tokenizer to a tokenizers JSON file, e.g. the "
                        "tokenizer.json of HF's openai/clip-vit-base-patch32 (OpenAI's 49,408-token BPE)")
    vocab = self.config.model.get("vocab_size")
    if vocab is not None and tok.vocab_size > vocab:
      raise ConfigError(f"the tokenizer has {tok.vocab_size} tokens but model.vocab_size is {vocab}")
    return tok

  def save_assets(self, workdir: str):
    if not self.clip.tokenizer:  # a tokenizer trained here: keep it with the run's checkpoints
      self.tokenizer.save(os.path.join(workdir, "tokenizer.json"))

  def caption(self, example: dict, rng, *, train: bool, index: int = 0) -> str:
    if "texts" in example:
      texts = example["texts"]
      return texts[int(rng.integers(len(texts)))] if rng is not None else texts[0]
    templates = self.clip.train_templates if train else self.clip.eval_templates
    return captions_lib.caption_for(example["label"], self.class_names, templates, rng if train else None, index)

  def image_preprocess(self, train: bool):
    """The image transform: `data.augment = "clip"` is the paper's (resize the shorter side, then a
    random square crop for training, the central one for evaluation); else the standard pipeline's."""
    d, crop_pct = self.config.data, image_preprocessing(self.config)[2]
    if d.augment == "clip":
      def fn(example, rng):
        image = preprocess.resize_shorter_then_center_crop(example["image"], d.image_size, crop_pct) \
            if not train else random_square_crop(example["image"], d.image_size, rng)
        return {"image": image, "label": np.asarray(example["label"], np.int32)}
      return fn
    return pipeline.config_image_preprocess(self.config, train)

  def preprocess(self, train: bool):
    """example → {"image": uint8 (H, W, C), "tokens": int32 (context_length,), "label": int32}."""
    image_fn = self.image_preprocess(train)
    grey_prob = float(self.clip.grey_prob) if train else 0.0

    def fn(example, rng):
      out = image_fn(example, rng)
      caption = self.caption(example, rng, train=train)
      if grey_prob and rng.random() < grey_prob:
        out["image"], caption = grey_pair(out["image"], caption, self.clip.grey_drop_words)
      out["tokens"] = self.tokenizer([caption])[0]
      return out

    return fn

  # ------------------------------------------------------------------ model and losses
  def model_kwargs(self) -> dict:
    _, kwargs = precision.model_kwargs(self.config)
    if "vocab_size" not in kwargs:
      kwargs["vocab_size"] = self.tokenizer.vocab_size
    return kwargs

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return models.create(self.config.model.name, rngs=rngs, **self.model_kwargs())

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      rngs = nnx.Rngs(dropout=rng)
      image = model.encode_image(images, train=True, rngs=rngs)
      text = model.encode_text(batch["tokens"], train=True, rngs=rngs)
      scale = model.temperature_scale()
      loss = contrastive.clip_loss(image, text, scale)
      metrics = {"temperature": scale, "i2t_top1": in_batch_top1(image, text, batch["label"])}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      images = normalize_images(batch["image"], self.mean, self.std)
      image = model.encode_image(images, train=False)
      text = model.encode_text(batch["tokens"], train=False)
      valid = batch["mask"].astype(bool)
      losses = masked_clip_losses(image, text, model.temperature_scale(), valid)
      return {"loss": losses.sum(), "count": valid.astype(jnp.float32).sum()}
    return eval_fn

  # ------------------------------------------------------------------ benchmark hooks
  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Random images and captions of the model's sizes (tools/benchmark.py)."""
    cfg = models.model_config(self.config.model.name) | self.model_kwargs()
    size, chans, length = cfg.get("img_size", 224), cfg.get("in_chans", 3), self.context_length
    tokens = rng.integers(1, cfg["vocab_size"] - 2, (batch, length), dtype=np.int32)
    ends = rng.integers(length // 4, length, batch)
    for row, end in zip(tokens, ends):
      row[0], row[end], row[end + 1:] = cfg["vocab_size"] - 2, cfg["vocab_size"] - 1, 0
    return {"image": rng.integers(0, 256, (batch, size, size, chans), dtype=np.uint8), "tokens": tokens,
            "label": np.zeros((batch,), np.int32)}

  # ------------------------------------------------------------------ after each evaluation
  def _encoders(self, trainer):
    """Jitted (params, model_state, x) → features for images (uint8) and token ids; replicated outputs."""
    if "encoders" not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def image_fn(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return model.encode_image(normalize_images(images, mean, std), train=False)

      def text_fn(params, model_state, tokens):
        return merge_model(graphdef, params, model_state).encode_text(tokens, train=False)

      rep = sharding.replicated(trainer.mesh)
      self._jitted["encoders"] = (jax.jit(image_fn, out_shardings=rep), jax.jit(text_fn, out_shardings=rep))
    image_fn, text_fn = self._jitted["encoders"]
    state = trainer.state
    return (lambda x: image_fn(state.params, state.model_state, x),
            lambda t: text_fn(state.params, state.model_state, t))

  def _image_features(self, encode_image, source, limit: int | None):
    """(features, labels, examples' caption lists or None) of the first `limit` examples of `source`."""
    fn, batch = self.image_preprocess(train=False), int(self.clip.feature_batch)
    n = len(source) if not limit else min(limit, len(source))
    feats, labels, texts = [], [], []
    for start in range(0, n, batch):
      examples = [dict(source[i]) for i in range(start, min(start + batch, n))]
      images = np.stack([fn(e, None)["image"] for e in examples])
      pad = batch - len(examples)
      if pad:
        images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
      feats.append(np.asarray(encode_image(images), np.float32)[:len(examples)])
      labels += [int(e["label"]) for e in examples]
      texts += [e.get("texts") for e in examples]
    return np.concatenate(feats), np.asarray(labels, np.int32), texts

  def _classifier(self, tag, class_names, templates):
    key = (tag, tuple(templates))
    if key not in self._classifiers:
      self._classifiers[key] = zero_shot.ZeroShotClassifier(class_names, templates, self.tokenizer,
                                                            batch_size=int(self.clip.feature_batch))
    return self._classifiers[key]

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    out = {}
    encode_image, encode_text = self._encoders(trainer)
    batch, ks = int(self.clip.feature_batch), tuple(self.clip.retrieval_ks)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      feats, labels, example_texts = self._image_features(encode_image, source,
                                                          self.clip.max_eval_images or None)
      # Retrieval: every caption of every eval image (image-text data), or one held-out-template
      # caption per image, matching every image of its class (class captions).
      if self.class_names is None:
        texts = [t for ts in example_texts for t in ts]
        text_ids = np.repeat(np.arange(len(feats)), [len(ts) for ts in example_texts])
        image_ids = np.arange(len(feats))
      else:
        texts = [captions_lib.caption_for(y, self.class_names, self.clip.eval_templates, None, i)
                 for i, y in enumerate(labels)]
        text_ids = image_ids = labels
      text_feats = zero_shot.encode_in_batches(encode_text, self.tokenizer(texts), batch)
      out |= retrieval.recall_at_k(feats, text_feats, image_ids, text_ids, ks)
      if self.class_names is not None:
        for suffix, templates in (("", self.clip.eval_templates), ("_train_templates", self.clip.train_templates)):
          scores = self._classifier("eval", self.class_names, templates).evaluate(feats, labels, encode_text, step)
          out |= {f"zero_shot_{k}{suffix}": v for k, v in scores.items()}
      if self.clip.zero_shot_data:
        out |= self._external_zero_shot(encode_image, encode_text, step)
      if self.config.data.name == "vqa_scenes":
        out |= self._scene_objects_zero_shot(encode_image, encode_text, step)
    return out

  def _scene_objects_zero_shot(self, encode_image, encode_text, step) -> dict:
    """Zero-shot on the eval scenes' objects drawn one per image: the prompts name a colour and a kind
    ("a red circle."; 4 × 13 classes), the prediction is the most similar one; its colour and its kind
    are scored apart too (object_colour_top1, object_kind_top1)."""
    split, limit = self.config.data.eval_split, self.clip.max_eval_images or None
    images, colours, kinds = vqa_scenes.single_objects(split, limit)
    n_kinds = len(vqa_scenes.KINDS)
    examples = [{"image": im, "label": c * n_kinds + k} for im, c, k in zip(images, colours, kinds)]
    feats, labels, _ = self._image_features(encode_image, examples, None)
    names = [f"{c} {k}" for c in vqa_scenes.COLOURS for k in vqa_scenes.KINDS]
    weights = self._classifier("objects", names, self.clip.eval_templates).weights(encode_text, step)
    pred = np.argmax(zero_shot.l2_normalize(feats) @ weights.T, axis=1)
    out = {"object_top1": float(np.mean(pred == labels)),
           "object_colour_top1": float(np.mean(pred // n_kinds == colours)),
           "object_kind_top1": float(np.mean(pred % n_kinds == kinds))}
    if self.clip.grey_prob:  # the same objects in grey among the 13 kinds ("a circle."): shape without colour
      grey = [{"image": grey_pair(im, "", ())[0], "label": k} for im, k in zip(images, kinds)]
      feats, labels, _ = self._image_features(encode_image, grey, None)
      weights = self._classifier("kinds", list(vqa_scenes.KINDS), self.clip.eval_templates).weights(encode_text, step)
      out["object_kind_top1_grey"] = float(np.mean(np.argmax(zero_shot.l2_normalize(feats) @ weights.T, axis=1)
                                                   == labels))
    return out

  def _external_zero_shot(self, encode_image, encode_text, step) -> dict:
    c = self.clip
    data = ml_collections.ConfigDict(self.config.data.to_dict())
    data.name = c.zero_shot_data
    source = self._sources.get(("zero_shot",)) or get_source(data, c.zero_shot_split)
    self._sources[("zero_shot",)] = source
    if c.zero_shot_class_names:
      names = captions_lib.read_class_names(c.zero_shot_class_names)
    elif isinstance(source, ImageFolderSource):
      names = captions_lib.parse_class_names(source.classes)
    else:
      raise ConfigError(f"zero-shot on {c.zero_shot_data} needs clip.zero_shot_class_names, a file with one class "
                        "name per line in label order")
    if len(names) != source.num_classes:
      raise ConfigError(f"{c.zero_shot_class_names or 'the class folders'} give {len(names)} class names but "
                        f"{c.zero_shot_data} has {source.num_classes} classes")
    feats, labels, _ = self._image_features(encode_image, source, c.max_eval_images or None)
    scores = self._classifier("external", names, c.eval_templates).evaluate(feats, labels, encode_text, step)
    tag = c.zero_shot_data.split(":")[-1].replace("/", "_")
    return {f"zero_shot_{tag}_{k}": v for k, v in scores.items()}
