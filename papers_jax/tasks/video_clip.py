"""CLIP on video (`config.task = "video_clip"`): CLIP4Clip text-video retrieval and ActionCLIP action recognition.

Model: models/video_clip.py's `VideoCLIP` (CLIP's towers; frames through the image tower, a temporal
summary chosen by `model.temporal`). Data: data/clips.py's moving-shape clips (`data.name =
"moving_shapes"`), T frames of C×H×W; the tokenizer is a word-level vocabulary trained here on the
training captions (data/captions.py's `CaptionTokenizer`, saved as <workdir>/tokenizer.json), or
`video_clip.tokenizer` (a tokenizers JSON file, e.g. the one a CLIP run saved, whose params
`init_from` then loads: the model's params are CLIP's under the same names).

`video_clip.method`:
  "clip4clip"   each clip is paired with its caption ("a red triangle moving left.", a random one of
                data/clips.py's CAPTION_TEMPLATES in training, the first in evaluation); the loss is the
                symmetric InfoNCE over the batch's N×N logits (objectives/video_text.py), whose logits are
                exp(t)·cos(video, text), or the tight calculator's pair scores. Evaluation: text→video and
                video→text recall@K over the eval clips and their distinct captions (evaluators/retrieval.py;
                a caption matches every clip with its colour, shape and motion), beside the chance
                recall of the same ids: eval/t2v_rK, eval/v2t_rK, eval/chance_t2v_rK, eval/chance_v2t_rK.
  "actionclip"  each clip is paired with its class name in a random prompt template
                (`video_clip.train_templates`); several clips of one class in a batch are all positives:
                the loss is the KL divergence to the soft multi-positive targets (objectives/video_text.py).
                Modes (`video_clip.mode`, ActionCLIP §4.4): "supervised" (every training clip), "few_shot"
                (`video_clip.shots` clips per class), "zero_shot" (no clip of `video_clip.held_out_classes`
                in training). Evaluation: zero-shot-style classification of the eval clips against every
                class's prompts through `video_clip.eval_templates` (never used in training; prompt
                features averaged, evaluators/zero_shot.py): eval/top1 over all classes, and in
                "zero_shot" mode eval/unseen_top1 (held-out clips among the held-out classes only) and
                eval/seen_top1 (the seen clips among the seen classes), beside chance (eval/chance_*).
                `video_clip.classes`: "motion" (12 classes) or "shape_motion" (48, "triangle moving left":
                held-out pairs are compositions of trained words; also eval/unseen_shape_top1,
                eval/unseen_motion_top1 and eval/shape_only_unseen_top1, what reading the shape alone scores).
`eval/loss` is the method's loss within each eval batch (padding left out).
"""

import functools
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
from papers_jax.data import clips
from papers_jax.errors import ConfigError
from papers_jax.evaluators import retrieval, zero_shot
from papers_jax.models import video_clip
from papers_jax.objectives import video_text
from papers_jax.tasks.classification import normalize_images

METHODS = ("clip4clip", "actionclip")
MODES = ("supervised", "few_shot", "zero_shot")
RANGES = (
    ("num_frames", "[2, 128]"),
    ("frame_size", "[16, 1024]"),
    ("shots", "[0, 100000]"),
    ("target_scale", "(0, inf)"),
    ("feature_batch", "[1, 1048576]"),
    ("max_eval_videos", "[0, inf)"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.video_clip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      method="clip4clip", mode="supervised", num_frames=8, frame_size=32, tokenizer="",
      caption_templates=clips.CAPTION_TEMPLATES, train_templates=clips.ACTION_TEMPLATES,
      eval_templates=clips.ACTION_HELD_OUT_TEMPLATES, held_out_classes=(3, 4, 7), shots=8, target_scale=10.0,
      classes="motion",
      retrieval_ks=(1, 5, 10), feature_batch=64, max_eval_videos=0) | overrides)


class VideoCLIPTask:
  """Model + loss + evaluation for `config.task = "video_clip"`."""

  def __init__(self, config):
    self.config = config
    self.vc = vc = config.video_clip
    if vc.method not in METHODS:
      raise ConfigError(f"video_clip.method must be one of {METHODS}, got {vc.method!r}")
    if vc.mode not in MODES:
      raise ConfigError(f"video_clip.mode must be one of {MODES}, got {vc.mode!r}")
    if vc.method == "clip4clip" and vc.mode != "supervised":
      raise ConfigError("video_clip.mode applies to method='actionclip' only; CLIP4Clip trains on every clip")
    if config.data.name != "moving_shapes":
      raise ConfigError(f"task video_clip reads data.name='moving_shapes' (data/clips.py), got {config.data.name!r}")
    if vc.classes not in clips.LABELS:
      raise ConfigError(f"video_clip.classes must be one of {tuple(clips.LABELS)}, got {vc.classes!r}")
    self.class_names = clips.LABELS[vc.classes]
    bad = [c for c in vc.held_out_classes if not 0 <= int(c) < len(self.class_names)]
    if bad or (vc.mode == "zero_shot" and not vc.held_out_classes):
      raise ConfigError(f"video_clip.held_out_classes must be a non-empty subset of 0..{len(self.class_names) - 1} "
                        f"(data/clips.py LABELS[{vc.classes!r}]), got {tuple(vc.held_out_classes)}")
    if vc.mode == "few_shot" and vc.shots < 1:
      raise ConfigError("video_clip.mode='few_shot' needs video_clip.shots >= 1")
    self.mean, self.std, _ = image_preprocessing(config)
    self._sources, self._jitted = {}, {}
    self.temporal = (models.model_config(config.model.name) | dict(config.model)).get("temporal", "mean")

  # ------------------------------------------------------------------ data
  @property
  def seen_classes(self) -> tuple[int, ...]:
    held = {int(c) for c in self.vc.held_out_classes} if self.vc.mode == "zero_shot" else set()
    return tuple(c for c in range(len(self.class_names)) if c not in held)

  def source(self, split: str):
    if split not in self._sources:
      train = split == self.config.data.train_split
      kw = dict(num_frames=self.vc.num_frames, size=self.vc.frame_size,
                labels=self.vc.classes if self.vc.method == "actionclip" else "motion")
      if train and self.vc.method == "actionclip":
        kw |= dict(classes=self.seen_classes, shots=self.vc.shots if self.vc.mode == "few_shot" else 0)
      self._sources[split] = clips.MovingShapesSource(split, **kw)
      self.tokenizer  # noqa: B018  (built now: a bad tokenizer is an error before training starts)
    return self._sources[split]

  def training_texts(self) -> list[str]:
    """Every caption training can draw (the tokenizer's vocabulary comes from these)."""
    if self.vc.method == "clip4clip":
      return [t.format(colour=c, shape=s, motion=m) for t in self.vc.caption_templates for c in clips.COLOURS
              for s in clips.SHAPES for m in clips.MOTIONS]
    return captions_lib.captions(self.vc.train_templates, [self.class_names[c] for c in self.seen_classes])

  @property
  def context_length(self) -> int:
    return int((models.model_config(self.config.model.name) | dict(self.config.model)).get("context_length", 77))

  @functools.cached_property
  def tokenizer(self) -> captions_lib.CaptionTokenizer:
    if self.vc.tokenizer:
      tok = captions_lib.CaptionTokenizer.from_file(self.vc.tokenizer, self.context_length)
    else:
      tok = captions_lib.CaptionTokenizer.train(self.training_texts(), self.context_length)
    if self.vc.method == "actionclip":  # held-out prompts and class names: only words training has seen
      unknown = tok.unknown_words(captions_lib.captions(self.vc.eval_templates, self.class_names))
      if unknown:
        raise ConfigError(f"evaluation prompts use words the training captions never contain: {sorted(unknown)}; "
                          "change video_clip.eval_templates or video_clip.held_out_classes")
    vocab = self.config.model.get("vocab_size")
    if vocab is not None and tok.vocab_size > vocab:
      raise ConfigError(f"the tokenizer has {tok.vocab_size} tokens but model.vocab_size is {vocab}")
    return tok

  def save_assets(self, workdir: str):
    if not self.vc.tokenizer:
      self.tokenizer.save(os.path.join(workdir, "tokenizer.json"))

  def caption(self, example, rng) -> str:
    colour, shape = tuple(clips.COLOURS)[int(example["colour"])], clips.SHAPES[int(example["shape"])]
    motion = clips.MOTIONS[int(example["motion"])]
    if self.vc.method == "clip4clip":
      templates = self.vc.caption_templates
      template = templates[int(rng.integers(len(templates)))] if rng is not None else templates[0]
      return template.format(colour=colour, shape=shape, motion=motion)
    templates = self.vc.train_templates if rng is not None else self.vc.eval_templates
    name = self.class_names[int(example["label"])]
    return templates[int(rng.integers(len(templates))) if rng is not None else 0].format(name)

  def preprocess(self, train: bool):
    """example → {"frames": uint8 (T, H, W, C), "tokens": int32 (context_length,), "label": motion,
    "caption_id": one id per (colour, shape, motion)}."""
    def fn(example, rng):
      return {"frames": example["frames"], "tokens": self.tokenizer([self.caption(example, rng if train else None)])[0],
              "label": np.int32(example["label"]),
              "caption_id": np.int32(clips.caption_id(example["colour"], example["shape"], example["motion"]))}
    return fn

  # ------------------------------------------------------------------ model and losses
  def model_kwargs(self) -> dict:
    _, kwargs = precision.model_kwargs(self.config)
    if "vocab_size" not in kwargs:
      kwargs["vocab_size"] = self.tokenizer.vocab_size
    return kwargs

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    model = models.create(self.config.model.name, rngs=rngs, **self.model_kwargs())
    if not isinstance(model, video_clip.VideoCLIP):
      raise ConfigError(f"task video_clip needs a VideoCLIP model (clip4clip_* / actionclip_*), got "
                        f"{self.config.model.name!r}")
    return model

  def forward_flops(self, model):
    return video_clip.forward_flops(model, num_frames=int(self.vc.num_frames))

  def _logits(self, model, batch, train: bool, rngs=None):
    videos = normalize_images(batch["frames"], self.mean, self.std)
    return model.video_text_logits(videos, batch["tokens"], train=train, rngs=rngs)

  def _loss(self, logits, batch, valid=None):
    if self.vc.method == "clip4clip":
      return video_text.symmetric_info_nce(logits, valid)
    return video_text.multi_positive_kl(logits, batch["label"], scale=float(self.vc.target_scale), valid=valid)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      logits = self._logits(model, batch, True, nnx.Rngs(dropout=rng))
      loss = self._loss(logits, batch)
      ids = batch["caption_id"] if self.vc.method == "clip4clip" else batch["label"]
      metrics = {"temperature": model.temperature_scale(),
                 "in_batch_top1": jnp.mean(ids[jnp.argmax(logits, axis=1)] == ids)}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      valid = batch["mask"].astype(bool)
      count = valid.astype(jnp.float32).sum()
      return {"loss": self._loss(self._logits(model, batch, False), batch, valid) * count, "count": count}
    return eval_fn

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Random clips and captions of the config's sizes (tools/benchmark.py)."""
    t, s, length = int(self.vc.num_frames), int(self.vc.frame_size), self.context_length
    vocab = self.tokenizer.vocab_size
    tokens = rng.integers(1, vocab - 2, (batch, length), dtype=np.int32)
    tokens[:, 0], tokens[:, length // 2], tokens[:, length // 2 + 1:] = vocab - 2, vocab - 1, 0
    return {"frames": rng.integers(0, 256, (batch, t, s, s, 3), dtype=np.uint8), "tokens": tokens,
            "label": rng.integers(0, len(self.class_names), batch).astype(np.int32),
            "caption_id": np.arange(batch, dtype=np.int32)}

  # ------------------------------------------------------------------ after each evaluation
  def _encoders(self, trainer):
    """Jitted feature functions on the current state: frames (B, T, H, W, C) uint8 → (B, T, E) frame features,
    frame features → video features, tokens → text features, (text, frames) → tight scores."""
    if "encoders" not in self._jitted:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std
      model_of = lambda p, s: merge_model(graphdef, p, s)  # noqa: E731
      fns = dict(
          frames=lambda p, s, x: model_of(p, s).encode_frames(normalize_images(x, mean, std), train=False),
          video=lambda p, s, f: model_of(p, s).pool_frames(f, train=False),
          text=lambda p, s, t: model_of(p, s).encode_text(t, train=False),
          tight=lambda p, s, t, f: model_of(p, s).tight_scores(t, f, train=False))
      rep = sharding.replicated(trainer.mesh)
      self._jitted["encoders"] = {k: jax.jit(f, out_shardings=rep) for k, f in fns.items()}
    state = trainer.state
    return {k: functools.partial(f, state.params, state.model_state) for k, f in self._jitted["encoders"].items()}

  def _features(self, enc, source):
    """(frame features (N, T, E), labels, caption ids) of the first max_eval_videos clips."""
    n = len(source) if not self.vc.max_eval_videos else min(int(self.vc.max_eval_videos), len(source))
    fn, batch = self.preprocess(train=False), int(self.vc.feature_batch)
    frames, labels, ids = [], [], []
    for start in range(0, n, batch):
      examples = [fn(dict(source[i]), None) for i in range(start, min(start + batch, n))]
      x = np.stack([e["frames"] for e in examples])
      pad = batch - len(x)
      if pad:
        x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
      frames.append(np.asarray(enc["frames"](x), np.float32)[:len(examples)])
      labels += [int(e["label"]) for e in examples]
      ids += [int(e["caption_id"]) for e in examples]
    return np.concatenate(frames), np.asarray(labels), np.asarray(ids)

  def _pooled(self, enc, frames):
    batch = int(self.vc.feature_batch)
    return zero_shot.encode_in_batches(lambda f: enc["video"](f), frames, batch)

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    enc = self._encoders(trainer)
    batch = int(self.vc.feature_batch)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      frames, labels, ids = self._features(enc, source)
      if self.vc.method == "clip4clip":
        return self._retrieval(enc, frames, ids, batch)
      return self._action_recognition(enc, frames, labels, batch)

  def _retrieval(self, enc, frames, ids, batch) -> dict:
    """Recall@K over the clips and their distinct captions (clips with the same caption under the first
    template, e.g. the same colour, shape and motion, share it; it matches all of them); and motion
    recognition by caption: each clip against the 12
    captions of its own colour and shape (motion_top1, chance 1/12), and against its motion's and the reversed
    motion's (motion_reversal_top1, chance 1/2: an order-blind summary of the frames scores 1/2)."""
    ks = tuple(self.vc.retrieval_ks)
    combos = [(c, s, m) for m in range(len(clips.MOTIONS)) for s in range(len(clips.SHAPES))
              for c in range(len(clips.COLOURS))]  # in caption_id order
    assert [clips.caption_id(*x) for x in combos] == list(range(len(combos)))
    texts = [clips.caption(tuple(clips.COLOURS)[c], clips.SHAPES[s], clips.MOTIONS[m], self.vc.caption_templates[0])
             for c, s, m in combos]
    texts, text_of = np.unique(texts, return_inverse=True)  # templates may leave colour or shape out
    text = zero_shot.encode_in_batches(enc["text"], self.tokenizer(list(texts)), batch)
    if self.temporal == "tight":
      scores = np.concatenate([np.concatenate([np.asarray(enc["tight"](text[i:i + batch], frames[j:j + batch]))
                                               for j in range(0, len(frames), batch)], axis=1)
                               for i in range(0, len(text), batch)]).T  # (videos, captions)
    else:
      scores = zero_shot.l2_normalize(self._pooled(enc, frames)) @ zero_shot.l2_normalize(text).T
    video_ids = text_of[ids]
    text_ids = np.unique(video_ids)
    out = retrieval.recall_from_scores(scores[:, text_ids], video_ids, text_ids, ks)
    out |= {f"chance_{k}": v for k, v in retrieval.chance_recall(video_ids, text_ids, ks).items()}
    out = {k.replace("i2t", "v2t").replace("t2i", "t2v"): v for k, v in out.items()}
    motion, rest = ids // (len(clips.SHAPES) * len(clips.COLOURS)), ids % (len(clips.SHAPES) * len(clips.COLOURS))
    per_motion = rest[:, None] + np.arange(len(clips.MOTIONS))[None, :] * len(clips.SHAPES) * len(clips.COLOURS)
    own = np.take_along_axis(scores, text_of[per_motion], axis=1)           # (videos, motions)
    reverse = np.asarray([dict(clips.REVERSED_PAIRS + tuple((b, a) for a, b in clips.REVERSED_PAIRS))[m]
                          for m in motion])
    rows = np.arange(len(ids))
    return out | {"captions": float(len(text_ids)), "motion_top1": float(np.mean(own.argmax(axis=1) == motion)),
                  "chance_motion_top1": 1 / len(clips.MOTIONS),
                  "motion_reversal_top1": float(np.mean(own[rows, motion] > own[rows, reverse])),
                  "chance_motion_reversal_top1": 0.5}

  def _action_recognition(self, enc, frames, labels, batch) -> dict:
    if self.temporal == "tight":
      raise ConfigError("ActionCLIP's evaluation needs video vectors; temporal='tight' has none")
    video = self._pooled(enc, frames)
    names = list(self.class_names)

    def top1(classes, mask):
      clf = zero_shot.ZeroShotClassifier([names[c] for c in classes], self.vc.eval_templates, self.tokenizer,
                                         batch_size=batch)
      remap = {c: i for i, c in enumerate(classes)}
      y = np.asarray([remap[int(v)] for v in labels[mask]])
      return clf.evaluate(video[mask], y, enc["text"], key=None, ks=(1,))["top1"]

    every = list(range(len(names)))
    out = {"top1": top1(every, np.ones(len(labels), bool)), "chance_top1": 1 / len(names)}
    if self.vc.mode == "zero_shot":
      unseen = sorted(int(c) for c in self.vc.held_out_classes)
      held = np.isin(labels, unseen)
      out |= {"unseen_top1": top1(unseen, held), "chance_unseen_top1": 1 / len(unseen),
              "seen_top1": top1(list(self.seen_classes), ~held), "chance_seen_top1": 1 / len(self.seen_classes),
              "unseen_top1_among_all": float(np.mean(np.asarray(self._predict_all(enc, video[held], batch))
                                                     == labels[held]))}
      if self.vc.classes == "shape_motion":  # which half of a held-out pair the prediction gets right
        out |= self._unseen_parts(enc, video[held], labels[held], unseen, batch)
    return out

  def _unseen_parts(self, enc, video, labels, unseen, batch) -> dict:
    """Held-out clips among the held-out pairs: how often the predicted pair has the clip's shape, its motion;
    and the top-1 a shape-only reader would get (the right shape, then a uniform pick among that shape's pairs)."""
    clf = zero_shot.ZeroShotClassifier([self.class_names[c] for c in unseen], self.vc.eval_templates, self.tokenizer,
                                       batch_size=batch)
    pred = np.asarray(unseen)[np.argmax(zero_shot.l2_normalize(video) @ clf.weights(enc["text"], key=None).T, axis=1)]
    m = len(clips.MOTIONS)
    per_shape = np.bincount(np.asarray(unseen) // m, minlength=len(clips.SHAPES))
    return {"unseen_shape_top1": float(np.mean(pred // m == labels // m)),
            "unseen_motion_top1": float(np.mean(pred % m == labels % m)),
            "shape_only_unseen_top1": float(np.mean(1 / per_shape[labels // m]))}

  def _predict_all(self, enc, video, batch):
    clf = zero_shot.ZeroShotClassifier(list(self.class_names), self.vc.eval_templates, self.tokenizer,
                                       batch_size=batch)
    scores = zero_shot.l2_normalize(video) @ clf.weights(enc["text"], key=None).T
    return np.argmax(scores, axis=1)
