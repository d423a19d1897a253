"""AudioCLIP (`config.task = "audioclip"`): an audio tower trained into a frozen CLIP's joint space.

Data: data/sounds.py (spoken digits and synthetic tones, each with an image of its object kind and a caption,
labelled with the 13 kinds of the generated scenes). The model (models/audioclip.py): the CLIP of a finished
run (`audioclip.clip_run`: its config.json, tokenizer.json and last checkpoint, e.g. configs/clip/scenes.py's),
`Frozen` (the paper's "partial training": only the audio head and the two audio temperatures train), and
ESResNeXt-fbsp of the sizes in `audioclip.audio`. `config.model` must be the CLIP run's architecture.
With `clip_run=""` the CLIP is random (smoke runs only) and the tokenizer is made from the prompts.

Training: objectives/audioclip.py, the three pairwise contrastive losses over the batch's (audio, image, text)
triplets (`audioclip.pairs` picks them; with the CLIP frozen the image-text term is a constant, reported),
plus `audioclip.fbsp_weight` × the FBSP weight-norm regulariser. The caption of a training clip is a random
template of `audioclip.templates` with its image's colour and kind ("a red 7.").

Evaluation on the test split (new speakers, new tones, the test digits' images):
  eval/zero_shot_accuracy: each clip's audio embedding against the 13 class prompts (every template with every
    colour, "a {colour} {kind}.", averaged per class: no colour is heard), no classifier trained on the labels;
    eval/zero_shot_digits / _tones: on the spoken digits / tones alone (still among all 13 classes);
  eval/image_zero_shot_accuracy: the CLIP's own reading of the paired images against the same prompts;
and after each evaluation (numpy, on embeddings of the whole train and test splits):
  audio_to_image_r1 / _r5: each test clip's own image among the test images (chance 1/N, 5/N);
  audio_to_image_kind_top1: the most similar test image shows the clip's kind;
  linear_probe_top1: a softmax regression on the training clips' audio embeddings (the supervised baseline on
    the same features), logmel_probe_top1: one on the clips' log-Mel statistics (mean and std of 80 bins over
    time: a supervised baseline without any learned encoder); chance and majority.
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
from papers_jax.data import audio as audio_lib
from papers_jax.data import sounds
from papers_jax.data.captions import CaptionTokenizer
from papers_jax.errors import ConfigError
from papers_jax.evaluators import linear_probe
from papers_jax.evaluators import zero_shot as zs
from papers_jax.models import audioclip as model_lib
from papers_jax.nn.frozen import freeze
from papers_jax.objectives import audioclip as objective
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.clip import check_clip_run, finished_clip_run

RANGES = (("fbsp_weight", "[0, inf)"), ("max_shift", "[0, 1)"), ("feature_batch", "[1, inf)"),
          ("num_speakers", "[5, 256]"), ("repeats", "[1, inf)"), ("limit", "[0, inf)"))
SCENES_TEMPLATES = ("a {}.", "from left to right: a {}.", "from top to bottom: a {}.")  # configs/clip/scenes.py
# The paper's audio tower (model/audioclip.py defaults) at 16 kHz: the window, hop and FFT sizes scaled from
# 44.1 kHz (1654 / 561 / 2048 samples: 37.5 / 12.7 / 46.4 ms) to 600 / 204 / 743 → 600, 200, 1024 here.
PAPER_AUDIO = dict(layers=(3, 4, 6, 3), width=64, groups=32, width_per_group=4, n_fft=1024, hop_length=200,
                   win_length=600, window="blackmanharris", normalized=True, apply_attention=True)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.audioclip`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      clip_run="", pairs=objective.PAIRS, templates=SCENES_TEMPLATES, fbsp_weight=1.0, max_shift=0.1,
      feature_batch=128, num_speakers=64, repeats=2, limit=0, audio=dict(PAPER_AUDIO)) | overrides)


class AudioCLIPTask:
  """AudioCLIP's audio-head training with a frozen CLIP, and zero-shot audio classification (module docstring)."""

  def __init__(self, config):
    self.config, self.ac = config, config.audioclip
    if config.data.name != "sounds":
      raise ConfigError(f"task audioclip reads data.name='sounds', got {config.data.name!r}")
    bad = [p for p in self.ac.pairs if p not in objective.PAIRS]
    if bad or not self.ac.pairs:
      raise ConfigError(f"audioclip.pairs: one or more of {objective.PAIRS}, got {tuple(self.ac.pairs)}")
    if not any(p.startswith("audio") for p in self.ac.pairs):
      raise ConfigError("audioclip.pairs needs audio_image or audio_text: the audio tower trains on nothing else")
    if not self.ac.templates or any("{}" not in t for t in self.ac.templates):
      raise ConfigError("audioclip.templates: one or more prompts, each with one '{}' for 'colour kind'")
    self.mean, self.std, _ = image_preprocessing(config)
    if self.ac.clip_run:
      check_clip_run(self.ac.clip_run, "audioclip.clip_run", config.model, self.mean, self.std)

  # ------------------------------------------------------------------ text
  def class_prompts(self) -> list[str]:
    """Every template with every colour for every class, class-major: (K · colours · templates,)."""
    return [t.format(f"{c} {k}") for k in sounds.KINDS for c in sounds.COLOURS for t in self.ac.templates]

  @functools.cached_property
  def tokenizer(self) -> CaptionTokenizer:
    context = int(self.config.model.get("context_length", 77))
    if self.ac.clip_run:
      return CaptionTokenizer.from_file(os.path.join(self.ac.clip_run, "tokenizer.json"), context)
    return CaptionTokenizer.train(self.class_prompts(), context)

  @functools.cached_property
  def prompt_tokens(self) -> np.ndarray:
    return np.asarray(self.tokenizer(self.class_prompts()), np.int32)

  def class_text(self, model):
    """(K, D) normalised class embeddings: the mean of each class's normalised prompt embeddings, renormalised."""
    feats = model.encode_text(jnp.asarray(self.prompt_tokens))
    feats = feats / jnp.linalg.norm(feats, axis=-1, keepdims=True)
    feats = feats.reshape(len(sounds.KINDS), -1, feats.shape[-1]).mean(1)
    return feats / jnp.linalg.norm(feats, axis=-1, keepdims=True)

  def frozen_checkpoints(self) -> dict:
    return {"clip/": finished_clip_run(self.ac.clip_run, "audioclip.clip_run")} if self.ac.clip_run else {}

  def save_assets(self, workdir: str):
    if not self.ac.clip_run:  # a tokenizer made here: keep it with the run
      self.tokenizer.save(os.path.join(workdir, "tokenizer.json"))

  # ------------------------------------------------------------------ data
  def source(self, split: str):
    return sounds.SoundSource(split, num_speakers=int(self.ac.num_speakers), repeats=int(self.ac.repeats),
                              limit=int(self.ac.limit))

  def preprocess(self, train: bool):
    """example → {"audio": float32 (N,), "image": uint8, "tokens": int32 (L,), "label": int32}. Training shifts
    the clip by up to ±max_shift of its length (zero-filled) and draws the caption's template."""
    max_shift, templates = float(self.ac.max_shift), tuple(self.ac.templates)

    def fn(example, rng):
      audio = np.asarray(example["audio"], np.float32)
      template = templates[0]
      if train and rng is not None:
        shift = int(rng.integers(-int(max_shift * len(audio)), int(max_shift * len(audio)) + 1))
        audio = np.roll(audio, shift)
        if shift > 0:
          audio[:shift] = 0.0
        elif shift < 0:
          audio[shift:] = 0.0
        template = templates[int(rng.integers(len(templates)))]
      kind, colour = sounds.KINDS[int(example["label"])], sounds.COLOURS[int(example["colour"])]
      return {"audio": audio, "image": np.asarray(example["image"], np.uint8),
              "tokens": np.asarray(self.tokenizer([template.format(f"{colour} {kind}")])[0], np.int32),
              "label": np.int32(example["label"])}

    return fn

  # ------------------------------------------------------------------ model and losses
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs.setdefault("vocab_size", self.tokenizer.vocab_size)
    clip = freeze(models.create(name, rngs=rngs, **kwargs))  # random here; the trainer reads the CLIP run
    audio_kw = dict(self.ac.audio)
    audio_kw["layers"] = tuple(audio_kw["layers"])
    audio = model_lib.ESResNeXt(out_dim=clip.embed_dim, sample_rate=audio_lib.SAMPLE_RATE,
                                clip_seconds=sounds.CLIP_SECONDS, dtype=kwargs.get("dtype"), rngs=rngs, **audio_kw)
    return model_lib.AudioCLIP(clip, audio, rngs=rngs)

  def _embeddings(self, model, batch, *, train: bool):
    audio = model.encode_audio(batch["audio"], train=train)
    image = model.encode_image(normalize_images(batch["image"], self.mean, self.std))
    text = model.encode_text(batch["tokens"])
    return audio, image, text

  def make_loss_fn(self, graphdef):
    pairs, fbsp_weight = tuple(self.ac.pairs), float(self.ac.fbsp_weight)

    def loss_fn(params, model_state, batch, rng):
      del rng
      model = merge_model(graphdef, params, model_state)
      audio, image, text = self._embeddings(model, batch, train=True)
      scales = model.scales()
      contrastive, terms = objective.audioclip_loss(audio, image, text, scales, pairs)
      fbsp = model.audio.fbsp_norm_loss()
      zero_shot = objective.zero_shot_logits(audio, jax.lax.stop_gradient(self.class_text(model)))
      metrics = {f"loss_{k}": v for k, v in terms.items()} | {
          "fbsp_norm_loss": fbsp, "scale_audio_image": scales[0], "scale_audio_text": scales[1],
          "zero_shot_accuracy": (zero_shot.argmax(-1) == batch["label"]).mean()}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return contrastive + fbsp_weight * fbsp, (metrics, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    pairs = tuple(self.ac.pairs)
    first_tone = len(sounds.vqa_scenes.SHAPES)  # labels below: tones ("circle", "square", "triangle")

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      audio, image, text = self._embeddings(model, batch, train=False)
      mask = batch["mask"].astype(jnp.float32)
      labels = batch["label"]
      class_text = self.class_text(model)
      audio_hit = (objective.zero_shot_logits(audio, class_text).argmax(-1) == labels) * mask
      image_hit = (objective.zero_shot_logits(image, class_text).argmax(-1) == labels) * mask
      tone = (labels < first_tone).astype(jnp.float32) * mask
      # The contrastive loss of this (padded) batch: padding rows are copies of real examples, so it is a close
      # reading, not exact.
      loss, _ = objective.audioclip_loss(audio, image, text, model.scales(), pairs)
      return {"loss": loss * mask.sum(), "zero_shot_accuracy": audio_hit.sum(),
              "zero_shot_tones": (audio_hit * tone).sum(), "zero_shot_digits": (audio_hit * (1 - tone)).sum(),
              "image_zero_shot_accuracy": image_hit.sum(), "count": mask.sum(),
              "counts": {"zero_shot_tones": tone.sum(), "zero_shot_digits": (mask - tone).sum()}}
    return eval_fn

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Random clips, images and prompts of the model's sizes (tools/benchmark.py)."""
    size = int(self.config.data.image_size)
    tokens = self.prompt_tokens[rng.integers(0, len(self.prompt_tokens), batch)]
    return {"audio": rng.uniform(-0.5, 0.5, (batch, sounds.NUM_SAMPLES)).astype(np.float32),
            "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), "tokens": tokens,
            "label": rng.integers(0, len(sounds.KINDS), batch).astype(np.int32)}

  # ------------------------------------------------------------------ after each evaluation (numpy)
  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    graphdef, state = trainer.graphdef, trainer.state
    batch = int(self.ac.feature_batch)

    @jax.jit
    def embed(params, model_state, audio, images):
      model = merge_model(graphdef, params, model_state)
      return (model.encode_audio(audio, train=False),
              model.encode_image(normalize_images(images, self.mean, self.std)))

    with sharding.use_mesh(trainer.mesh, trainer.rules):
      test = self._features(embed, state, batch, source)
      train = self._features(embed, state, batch, self.source(self.config.data.train_split))
    return evaluation_report(train, test)

  def _features(self, embed, state, batch: int, source) -> dict:
    audio_out, image_out, logmel = [], [], []
    fn = self.preprocess(train=False)
    for start in range(0, len(source), batch):
      examples = [fn(source[i], None) for i in range(start, min(start + batch, len(source)))]
      audio = np.stack([e["audio"] for e in examples])
      images = np.stack([e["image"] for e in examples])
      n = len(examples)
      if n < batch:
        audio = np.concatenate([audio, np.repeat(audio[:1], batch - n, 0)])
        images = np.concatenate([images, np.repeat(images[:1], batch - n, 0)])
      a, i = embed(state.params, state.model_state, audio, images)
      audio_out.append(np.asarray(a, np.float32)[:n])
      image_out.append(np.asarray(i, np.float32)[:n])
      mel = np.asarray(audio_lib.log_mel_spectrogram(audio[:n]))          # (n, frames, 80)
      logmel.append(np.concatenate([mel.mean(1), mel.std(1)], axis=-1))
    return {"audio": np.concatenate(audio_out), "image": np.concatenate(image_out),
            "logmel": np.concatenate(logmel), "label": np.asarray(source.labels, np.int32)}


def evaluation_report(train: dict, test: dict) -> dict:
  """Audio→image retrieval on the test split and the supervised baselines (module docstring)."""
  k = len(sounds.KINDS)
  a, i = zs.l2_normalize(test["audio"]), zs.l2_normalize(test["image"])
  sims = a @ i.T
  order = np.argsort(-sims, axis=1)
  own = np.arange(len(a))[:, None]
  out = {"audio_to_image_r1": float(np.mean(order[:, :1] == own) * 1.0),
         "audio_to_image_r5": float(np.mean(np.any(order[:, :5] == own, axis=1))),
         "audio_to_image_kind_top1": float(np.mean(test["label"][order[:, 0]] == test["label"])),
         "audio_to_image_chance_r1": 1.0 / len(a),
         "chance": 1.0 / k,
         "majority": float(np.bincount(test["label"], minlength=k).max() / len(test["label"]))}
  probe = linear_probe.fit_and_evaluate(train["audio"], train["label"], test["audio"], test["label"], num_classes=k)
  out |= probe
  mel = linear_probe.fit_and_evaluate(train["logmel"], train["label"], test["logmel"], test["label"], num_classes=k)
  out |= {"logmel_probe_top1": mel["linear_probe_top1"], "logmel_probe_train_top1": mel["linear_probe_train_top1"]}
  return out
