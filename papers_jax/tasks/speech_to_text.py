"""Sequence-to-sequence speech recognition (`config.task = "speech_to_text"`): Whisper trained on transcripts.

Each example's waveform is cut or zero-padded to `speech.max_seconds` on the host; the log-Mel features
(data/audio.py, Whisper's front end) are computed on the device inside the step. The decoder reads
Whisper's multitask prompt [<|startoftranscript|>, <|en|>, <|transcribe|>, <|notimestamps|>], then the
transcript's tokens and <|endoftext|>; the loss is the cross-entropy of every token after the prompt up to
and with <|endoftext|> (the prompt itself is given, not predicted).

Text tokens are characters (`speech.alphabet`, lower-case letters, space and apostrophe by default), with
Whisper's special tokens laid out after them (models/whisper.py WhisperTokens), so the model's vocabulary is
len(alphabet) + 1,510. A user with a real Whisper checkpoint and its tokenizer transcribes through
`Whisper.transcribe` directly.

Evaluation: the teacher-forced loss and token accuracy, then (after_eval) greedy or beam-search
transcripts of the eval split under one jit, scored by WER and CER (evaluators/speech.py); the first
transcripts go to <workdir>/transcripts.txt.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import sharding
from papers_jax.core.state import merge_model
from papers_jax.data import audio
from papers_jax.errors import ConfigError, DataError
from papers_jax.evaluators import speech as speech_eval
from papers_jax.models.whisper import Whisper, WhisperTokens

RANGES = (("max_seconds", "(0, 30]"), ("max_tokens", "[1, 448]"), ("beam_size", "[1, 16]"),
          ("decode_examples", "[0, 100000]"))


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.speech`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      max_seconds=2.0, max_tokens=32, alphabet=" 'abcdefghijklmnopqrstuvwxyz", language="en", beam_size=1,
      decode_examples=0, decode_batch=64) | overrides)


class SpeechToTextTask:
  """Model + objective + evaluation for `config.task = "speech_to_text"`."""

  def __init__(self, config):
    self.config = config
    self.c = config.speech
    if len(set(self.c.alphabet)) != len(self.c.alphabet):
      raise ConfigError(f"speech.alphabet {self.c.alphabet!r} repeats a character")
    self.tokens = WhisperTokens.layout(len(self.c.alphabet), (self.c.language,))
    self.prompt = self.tokens.prompt(self.c.language)
    self.num_samples = int(round(self.c.max_seconds * audio.SAMPLE_RATE))
    if self.num_samples % (2 * audio.HOP_LENGTH):
      raise ConfigError(f"speech.max_seconds={self.c.max_seconds}: make it a multiple of 0.02 s (an even number "
                        "of 10-ms frames, which Whisper's stride-2 convolution halves)")
    self._index = {ch: i for i, ch in enumerate(self.c.alphabet)}

  # ------------------------------------------------------------------ text
  def encode_text(self, text: str) -> list[int]:
    unknown = sorted(set(text) - set(self._index))
    if unknown:
      raise DataError(f"transcript {text!r} has characters outside speech.alphabet: {unknown}")
    return [self._index[ch] for ch in text]

  def decode_text(self, ids) -> str:
    out = []
    for i in ids:
      if i == self.tokens.eot:
        break
      if i < len(self.c.alphabet):
        out.append(self.c.alphabet[i])
    return "".join(out)

  # ------------------------------------------------------------------ data
  def preprocess(self, train: bool):
    del train
    length = len(self.prompt) + int(self.c.max_tokens) + 1

    def fn(example, rng):
      del rng
      samples, mask = audio.pad_or_trim(example["audio"], self.num_samples)
      ids = self.prompt + self.encode_text(example["text"]) + [self.tokens.eot]
      if len(ids) > length:
        raise DataError(f"transcript {example['text']!r} has more than speech.max_tokens={self.c.max_tokens} "
                        "tokens; raise it")
      tokens = np.full(length, self.tokens.eot, np.int32)
      tokens[:len(ids)] = ids
      target_mask = np.zeros(length - 1, bool)  # positions predicting the text and the first <|endoftext|>
      target_mask[len(self.prompt) - 1:len(ids) - 1] = True
      return {"audio": samples, "audio_mask": mask, "tokens": tokens, "target_mask": target_mask,
              "label": np.asarray(example.get("label", 0), np.int32)}
    return fn

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Noise audio and random transcripts of this config's shapes (tools/benchmark.py)."""
    length = len(self.prompt) + int(self.c.max_tokens) + 1
    tokens = rng.integers(0, len(self.c.alphabet), (batch, length), dtype=np.int32)
    tokens[:, :len(self.prompt)] = self.prompt
    return {"audio": (0.1 * rng.standard_normal((batch, self.num_samples))).astype(np.float32),
            "audio_mask": np.ones((batch, self.num_samples), bool), "tokens": tokens,
            "target_mask": np.ones((batch, length - 1), bool), "label": np.zeros(batch, np.int32)}

  # ------------------------------------------------------------------ model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    if models.registry.model_class(name) is not Whisper:
      raise ConfigError(f"model.name {name!r}: speech_to_text trains the Whisper names (whisper_tiny, ...)")
    if kwargs.get("dtype"):
      kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    else:
      kwargs.pop("dtype", None)
    kwargs.update(num_text_tokens=len(self.c.alphabet), vocab_size=self.tokens.vocab_size)
    return Whisper(**(models.model_config(name) | kwargs), rngs=rngs)

  def tokens_per_example(self) -> int:
    return int(self.c.max_tokens)

  def forward_flops(self, model) -> float:
    return models.forward_flops(model, source_len=self.num_samples // audio.HOP_LENGTH,
                                target_len=len(self.prompt) + int(self.c.max_tokens))

  # ------------------------------------------------------------------ losses
  def _terms(self, model, batch, *, train: bool, rngs=None):
    features = audio.log_mel_spectrogram(batch["audio"], model.num_mels)
    tokens = batch["tokens"]
    logits = model(features, tokens[:, :-1], train=train, rngs=rngs)
    targets = tokens[:, 1:]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    mask = batch["target_mask"].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    count = jnp.maximum(mask.sum(-1), 1.0)
    return (nll * mask).sum(-1) / count, (correct * mask).sum(-1) / count

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      losses, accuracy = self._terms(model, batch, train=True, rngs=nnx.Rngs(dropout=rng))
      return losses.mean(), ({"token_accuracy": accuracy.mean()}, model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, accuracy = self._terms(model, batch, train=False)
      rows = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * rows).sum(), "token_accuracy": (accuracy * rows).sum(), "count": rows.sum()}
    return eval_fn

  # ------------------------------------------------------------------ transcription
  def make_decode_fn(self, graphdef):
    """(params, model_state, batch with "audio" (B, N)) → tokens (B, max_tokens + 1) after the prompt: the
    front end, the encoder and the whole greedy (or beam) loop with the KV cache, to be jitted as one program
    (transcribe_fn; tools/benchmark.py --mode decode)."""
    beam, prompt = int(self.c.beam_size), np.asarray(self.prompt, np.int32)

    def decode(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      samples = batch["audio"]
      features = audio.log_mel_spectrogram(samples, model.num_mels)
      rows = jnp.broadcast_to(prompt, (samples.shape[0], len(prompt)))
      return model.transcribe(features, rows, max_new_tokens=int(self.c.max_tokens) + 1, beam_size=beam)
    return decode

  def transcribe_fn(self, trainer):
    """(params, model_state, audio (B, N)) → tokens (B, max_tokens + 1), jitted once per trainer."""
    if getattr(self, "_transcribe_for", None) is not trainer:
      decode = self.make_decode_fn(trainer.graphdef)
      self._transcribe = jax.jit(lambda params, model_state, samples: decode(params, model_state, {"audio": samples}))
      self._transcribe_for = trainer
    return self._transcribe

  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    n = len(source) if not self.c.decode_examples else min(int(self.c.decode_examples), len(source))
    if not n:
      return {}
    transcribe, batch = self.transcribe_fn(trainer), int(self.c.decode_batch)
    hypotheses, references = [], []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, n, batch):
        rows = [source[i] for i in range(start, min(start + batch, n))]
        samples = np.stack([audio.pad_or_trim(r["audio"], self.num_samples)[0] for r in rows]
                           + [np.zeros(self.num_samples, np.float32)] * (batch - len(rows)))
        tokens = np.asarray(transcribe(trainer.state.params, trainer.state.model_state, samples))
        hypotheses += [self.decode_text(t.tolist()) for t in tokens[:len(rows)]]
        references += [r["text"] for r in rows]
    out = {"wer": speech_eval.wer(references, hypotheses), "cer": speech_eval.cer(references, hypotheses),
           "exact_match": float(np.mean([h == r for h, r in zip(hypotheses, references)])), "decoded": n}
    if trainer.is_main:
      with open(os.path.join(trainer.workdir, "transcripts.txt"), "w") as f:
        f.write(f"step {step}: WER {out['wer']:.4f}, CER {out['cer']:.4f} on {n} utterances\n\n")
        for h, r in list(zip(hypotheses, references))[:30]:
          f.write(f"ref: {r}\nhyp: {h}\n\n")
    return out
