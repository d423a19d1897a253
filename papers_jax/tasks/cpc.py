"""Contrastive Predictive Coding on audio (`config.task = "cpc"`; van den Oord et al., 2018, §3.1).

Examples are waveforms padded to `cpc.max_samples` with a sample mask, normalised per utterance on device.
The loss is InfoNCE over the offsets k = 1…`model.num_offsets` (objectives/speech.cpc_infonce): the
candidates for z_{t+k} are the frames at t + k of every sequence of the batch and `cpc.num_negatives`
frames drawn from the same sequence. Evaluation reports the same loss with negatives from a fixed key.

`after_eval` fits linear probes (evaluators/linear_probe.py) on the context averaged over each utterance:
  probe/digit     the utterance's label, trained on the train split and tested on the evaluated split (new
                  speakers);
  probe/speaker   the speaker, trained on the even and tested on the odd utterances of the train split;
both for the trained encoder and, as the baseline, for a randomly initialised one (`probe_random/...`).

Config (`config.cpc`): max_samples, num_negatives, normalize, probe, probe_max_train.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import audio as audio_lib
from papers_jax.evaluators import linear_probe
from papers_jax.objectives import speech as objective
from papers_jax.tasks.wav2vec2 import normalized_audio

EVAL_SEED = 0
RANDOM_ENCODER_SEED = 12345

RANGES = (
    ("max_samples", "[400, 10000000]"),
    ("num_negatives", "[0, 10000]"),
    ("probe_max_train", "[0, 10000000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(max_samples=20480, num_negatives=8, normalize=True, probe=True,
                                        probe_max_train=0, probe_batch=64) | overrides)


class CPCTask:
  def __init__(self, config):
    self.config = config
    self.cfg = config.cpc
    self._features_jit = None
    self._random_probe = None

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def forward_flops(self, model) -> float:
    """FLOPs per example: encoder, GRU and predictions on max_samples samples (models/cpc.py)."""
    return models.forward_flops(model, num_samples=int(self.cfg.max_samples))

  def preprocess(self, train: bool):
    length = int(self.cfg.max_samples)
    return lambda example, rng: audio_lib.padded_example(example, length)

  def _loss(self, model, batch, key):
    audio = normalized_audio(batch, bool(self.cfg.normalize))
    predictions, z, _ = model(audio)
    frames = model.frame_mask(batch["audio_mask"], z.shape[1])
    if "mask" in batch:
      frames = frames & batch["mask"][:, None]
    same = None
    if self.cfg.num_negatives:
      same = objective.cpc_negative_indices(key, frames, predictions.shape[0], int(self.cfg.num_negatives))
    return objective.cpc_infonce(predictions, z, frames, same)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      loss = self._loss(model, batch, rng)
      return loss, ({}, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      valid = batch["mask"].astype(jnp.float32)
      loss = self._loss(model, batch, jax.random.key(EVAL_SEED))
      return {"loss": loss * valid.sum(), "count": valid.sum()}  # the batch's mean, weighted by its rows
    return eval_fn

  # ------------------------------------------------------------------ linear probes
  def _features(self, trainer, params, model_state, source, indices) -> np.ndarray:
    if self._features_jit is None:
      graphdef, normalize = trainer.graphdef, bool(self.cfg.normalize)

      def apply(params, model_state, batch):
        model = merge_model(graphdef, params, model_state)
        return model.features(normalized_audio(batch, normalize), batch["audio_mask"])
      self._features_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
    size, preprocess, out = int(self.cfg.probe_batch), self.preprocess(train=False), []
    for start in range(0, len(indices), size):
      rows = [preprocess(source[int(i)], None) for i in indices[start:start + size]]
      n = len(rows)
      rows += [rows[0]] * (size - n)
      batch = {k: np.stack([r[k] for r in rows]) for k in ("audio", "audio_mask")}
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        out.append(np.asarray(self._features_jit(params, model_state, batch))[:n])
    return np.concatenate(out)

  def probes(self, trainer, params, model_state, source) -> dict:
    """{"digit": top-1, "speaker": top-1} of linear probes on the features of (params, model_state)."""
    train = trainer.train_source
    n = len(train) if not self.cfg.probe_max_train else min(len(train), int(self.cfg.probe_max_train))
    train_idx, test_idx = np.arange(n), np.arange(len(source))
    feats = lambda src, idx: self._features(trainer, params, model_state, src, idx)  # noqa: E731
    labels = lambda src, idx, key: np.asarray([src[int(i)][key] for i in idx])  # noqa: E731
    train_x = feats(train, train_idx)
    digit = linear_probe.fit_and_evaluate(train_x, labels(train, train_idx, "label"), feats(source, test_idx),
                                          labels(source, test_idx, "label"))["linear_probe_top1"]
    speakers = labels(train, train_idx, "speaker")
    _, speaker_ids = np.unique(speakers, return_inverse=True)
    even, odd = train_idx % 2 == 0, train_idx % 2 == 1
    speaker = linear_probe.fit_and_evaluate(train_x[even], speaker_ids[even], train_x[odd], speaker_ids[odd],
                                            num_classes=int(speaker_ids.max()) + 1)["linear_probe_top1"]
    return {"digit": digit, "speaker": speaker}

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if not self.cfg.probe:
      return {}
    out = {f"probe/{k}": v for k, v in self.probes(trainer, trainer.state.params, trainer.state.model_state,
                                                     source).items()}
    if self._random_probe is None:  # the same architecture with random weights: the probe's baseline
      with sharding.use_mesh(trainer.mesh, trainer.rules):
        model = self.build_model(nnx.Rngs(params=RANDOM_ENCODER_SEED))
      params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
      model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      self._random_probe = {f"probe_random/{k}": v for k, v in self.probes(trainer, params, model_state,
                                                                            source).items()}
    return out | self._random_probe
