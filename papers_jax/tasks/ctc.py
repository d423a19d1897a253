"""CTC fine-tuning of a speech encoder (`config.task = "ctc"`): wav2vec 2.0 with a character head
(Baevski et al., 2020, §3.4 / §4.3).

Examples are waveforms padded to `ctc.max_samples` with a sample mask, normalised on device as in
pre-training, and transcripts encoded as characters (evaluators/speech.CHARACTERS: blank, space,
apostrophe, a–z) padded to `ctc.max_label_len`. The loss is `optax.ctc_loss` summed over the batch and
divided by the number of target characters (fairseq's CTC criterion without `sentence_avg`). In training,
time steps are masked as in pre-training with `mask_prob` / `mask_length` (the paper's modified
SpecAugment; no channel masking here). Freezing the feature encoder (fairseq's `feature_grad_mult` 0) is
`optimizer.freeze = ("^feature_extractor/",)`.

Evaluation: the CTC loss per character, then (`after_eval`) best-path greedy decoding of the whole
evaluated split with character and word error rates against its transcripts (evaluators/speech.py).
Pre-trained weights come through `init_from` with `init_skip = ENCODER_INIT_SKIP` (the quantiser and
projections are not in the CTC model; its head is new).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import audio as audio_lib
from papers_jax.evaluators import speech as speech_eval
from papers_jax.models import wav2vec2 as w2v
from papers_jax.tasks.wav2vec2 import normalized_audio

# Params of a CTC model that a pre-trained wav2vec 2.0 checkpoint does not give (`config.init_skip`).
ENCODER_INIT_SKIP = (r"^lm_head/", r"^quantizer/", r"^project_hid/", r"^project_q/")

RANGES = (
    ("max_samples", "[400, 10000000]"),
    ("max_label_len", "[1, 100000]"),
    ("mask_prob", "[0, 1]"),
    ("mask_length", "[1, 1000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ctc`; mask_prob / mask_length as fairseq's base_100h fine-tuning."""
  return ml_collections.ConfigDict(dict(
      max_samples=250_000, max_label_len=256, normalize=True, mask_prob=0.65, mask_length=10, min_masks=2,
      decode_batch=32) | overrides)


class CTCTask:
  """Model + loss + evaluation for `config.task = "ctc"`."""

  def __init__(self, config):
    self.config = config
    self.cfg = config.ctc
    self._logits_jit = None

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs | {"vocab_size": len(speech_eval.CHARACTERS)})

  def forward_flops(self, model) -> float:
    """FLOPs per example: the encoder and CTC head on max_samples samples (models/wav2vec2.py)."""
    return models.forward_flops(model, num_samples=int(self.cfg.max_samples))

  def preprocess(self, train: bool):
    length, max_label = int(self.cfg.max_samples), int(self.cfg.max_label_len)

    def fn(example, rng):
      out = audio_lib.padded_example(example, length)
      out["labels"], out["label_mask"] = speech_eval.encode_text(example["text"], max_label)
      return out
    return fn

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Noise audio of `max_samples` and random transcripts of `max_label_len` letters (tools/benchmark.py)."""
    n, length = int(self.cfg.max_samples), int(self.cfg.max_label_len)
    return {"audio": rng.standard_normal((batch, n)).astype(np.float32), "audio_mask": np.ones((batch, n), bool),
            "labels": rng.integers(1, len(speech_eval.CHARACTERS), (batch, length), dtype=np.int32),
            "label_mask": np.ones((batch, length), bool)}

  def _losses(self, model, batch, *, train: bool, key=None, rngs=None):
    """(per-utterance CTC losses, frame mask)."""
    audio = normalized_audio(batch, bool(self.cfg.normalize))
    frames = model.frame_mask(batch["audio_mask"], model.num_frames(audio.shape[1]))
    mask_time = None
    if train and self.cfg.mask_prob > 0:
      mask_time = w2v.compute_mask(key, frames, mask_prob=self.cfg.mask_prob, mask_length=self.cfg.mask_length,
                                   min_masks=self.cfg.min_masks)
    logits = model(audio, batch["audio_mask"], mask_time_indices=mask_time, train=train, rngs=rngs)
    labels, label_mask = batch["labels"], batch["label_mask"]
    losses = optax.ctc_loss(logits.astype(jnp.float32), 1.0 - frames.astype(jnp.float32), labels,
                            1.0 - label_mask.astype(jnp.float32), blank_id=0)
    # A transcript longer than its frames allow (each repeated letter needs a blank between) has no
    # alignment: its loss is zeroed (fairseq's zero_infinity) rather than optax's huge finite stand-in.
    repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) & label_mask[:, 1:], axis=-1)
    feasible = frames.sum(-1) >= label_mask.sum(-1) + repeats
    return jnp.where(feasible, losses, 0.0), frames

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      mask_key, dropout_key = jax.random.split(rng)
      losses, _ = self._losses(model, batch, train=True, key=mask_key, rngs=nnx.Rngs(dropout=dropout_key))
      loss = losses.sum() / jnp.maximum(batch["label_mask"].sum(), 1)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, ({}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, _ = self._losses(model, batch, train=False)
      valid = batch["mask"].astype(jnp.float32)
      chars = (batch["label_mask"].sum(-1) * valid).sum()
      return {"loss": (losses * valid).sum(), "counts": {"loss": chars}, "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ greedy decoding, CER / WER
  def transcribe(self, trainer, examples: list[dict]) -> list[str]:
    """Greedy transcripts of raw source examples with the trainer's current weights."""
    if self._logits_jit is None or self._logits_for is not trainer:
      graphdef, normalize = trainer.graphdef, bool(self.cfg.normalize)

      def logits_fn(params, model_state, batch):
        model = merge_model(graphdef, params, model_state)
        audio = normalized_audio(batch, normalize)
        frames = model.frame_mask(batch["audio_mask"], model.num_frames(audio.shape[1]))
        return jnp.argmax(model(audio, batch["audio_mask"]), axis=-1), frames
      self._logits_jit = jax.jit(logits_fn, out_shardings=sharding.replicated(trainer.mesh))
      self._logits_for = trainer
    size = int(self.cfg.decode_batch)
    preprocess = self.preprocess(train=False)
    out = []
    for start in range(0, len(examples), size):
      rows = [preprocess(e, None) for e in examples[start:start + size]]
      rows += [rows[0]] * (size - len(rows))
      batch = {k: np.stack([r[k] for r in rows]) for k in ("audio", "audio_mask")}
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        ids, frames = self._logits_jit(trainer.state.params, trainer.state.model_state, batch)
      ids, frames = np.asarray(ids), np.asarray(frames)
      for i in range(min(size, len(examples) - start)):
        out.append(" ".join(speech_eval.decode_ids(speech_eval.ctc_greedy(ids[i], frames[i])).split()))
    return out

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    examples = [source[i] for i in range(len(source))]
    hypotheses = self.transcribe(trainer, examples)
    references = [" ".join(e["text"].lower().split()) for e in examples]
    return {"cer": speech_eval.cer(references, hypotheses), "wer": speech_eval.wer(references, hypotheses)}
