"""wav2vec 2.0 pre-training (`config.task = "wav2vec2"`): masked contrastive learning over quantised speech
features (Baevski et al., 2020, §3.3).

Each example is a waveform padded (or cut) to `wav2vec2.max_samples` with a sample mask
(data/audio.padded_example), normalised to zero mean and unit variance over its valid samples on device.
In the step, the span mask (p = `mask_prob`, M = `mask_length`) and the K = `num_negatives` distractors
per masked frame are drawn from the step's key (models/wav2vec2.compute_mask / sample_negatives); the
model samples its codewords with a straight-through Gumbel-softmax. The loss per masked frame is

  L = L_contrastive (mean over masked frames) + α · L_diversity + λ · feature penalty

with α = `diversity_weight` (0.1) and λ = `feature_penalty_weight` (10, fairseq's BASE). After each update
the Gumbel temperature becomes max(2 · 0.999995^step, 0.5) (`post_update`; `gumbel` = (start, end, decay)).
Evaluation reports the contrastive loss and accuracy (the positive scored above its distractors) per
masked frame, with masks and distractors from a fixed key and the quantiser's argmax codewords.

Config (`config.wav2vec2`): max_samples, normalize, mask_prob, mask_length, min_masks, num_negatives,
logit_temperature (κ = 0.1), diversity_weight, feature_penalty_weight, gumbel.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision
from papers_jax.core.state import merge_model
from papers_jax.data import audio as audio_lib
from papers_jax.models import wav2vec2 as w2v
from papers_jax.objectives import speech as objective

EVAL_SEED = 0

RANGES = (
    ("max_samples", "[400, 10000000]"),
    ("mask_prob", "[0, 1]"),
    ("mask_length", "[1, 1000]"),
    ("num_negatives", "[1, 10000]"),
    ("logit_temperature", "(0, 100]"),
    ("diversity_weight", "[0, 100]"),
    ("feature_penalty_weight", "[0, 1000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.wav2vec2`, the paper's BASE settings (§4.2, fairseq's wav2vec2_base_librispeech)."""
  return ml_collections.ConfigDict(dict(
      max_samples=250_000, normalize=True, mask_prob=0.65, mask_length=10, min_masks=2, num_negatives=100,
      logit_temperature=0.1, diversity_weight=0.1, feature_penalty_weight=10.0, gumbel=(2.0, 0.5, 0.999995))
      | overrides)


def normalized_audio(batch, normalize: bool):
  audio, mask = batch["audio"], batch["audio_mask"]
  return audio_lib.normalize_waveform(audio, mask) if normalize else audio * mask


class Wav2Vec2Task:
  """Model + loss + evaluation for `config.task = "wav2vec2"`."""

  def __init__(self, config):
    self.config = config
    self.cfg = config.wav2vec2

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def forward_flops(self, model) -> float:
    """FLOPs per example: the pre-training forward (encoder, quantiser, projections) on max_samples samples
    (models/wav2vec2.py)."""
    return models.forward_flops(model, num_samples=int(self.cfg.max_samples))

  def preprocess(self, train: bool):
    length = int(self.cfg.max_samples)
    return lambda example, rng: audio_lib.padded_example(example, length)

  def synthetic_batch(self, batch: int, rng: np.random.Generator) -> dict:
    """Noise audio of `max_samples` (tools/benchmark.py)."""
    n = int(self.cfg.max_samples)
    return {"audio": rng.standard_normal((batch, n)).astype(np.float32), "audio_mask": np.ones((batch, n), bool)}

  def _outputs(self, model, batch, key, *, train: bool, rngs=None):
    """(model outputs, time mask, negatives) with masks and distractors drawn from `key`."""
    cfg = self.cfg
    audio = normalized_audio(batch, bool(cfg.normalize))
    frames = model.frame_mask(batch["audio_mask"], model.num_frames(audio.shape[1]))
    if "mask" in batch:  # evaluation: padding rows of the last batch mask nothing
      frames = frames & batch["mask"][:, None]
    mask_key, negative_key, gumbel_key = jax.random.split(key, 3)
    mask = w2v.compute_mask(mask_key, frames, mask_prob=cfg.mask_prob, mask_length=cfg.mask_length,
                            min_masks=cfg.min_masks)
    negatives = w2v.sample_negatives(negative_key, mask, cfg.num_negatives)
    out = model.pretrain(audio, batch["audio_mask"], mask_time_indices=mask, train=train, rngs=rngs,
                         gumbel_rng=gumbel_key if train else None)
    return out, mask, negatives

  def make_loss_fn(self, graphdef):
    cfg = self.cfg

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      key, dropout_key = jax.random.split(rng)
      out, mask, negatives = self._outputs(model, batch, key, train=True, rngs=nnx.Rngs(dropout=dropout_key))
      num_masked = jnp.maximum(mask.sum(), 1)
      contrastive = objective.wav2vec2_contrastive_loss(out["projected_states"], out["projected_quantized_states"],
                                                        negatives, mask, cfg.logit_temperature) / num_masked
      diversity = objective.wav2vec2_diversity_loss(out["perplexity"], model.num_codevectors)
      penalty = objective.feature_penalty(out["conv_features"], out["frame_mask"])
      loss = contrastive + cfg.diversity_weight * diversity + cfg.feature_penalty_weight * penalty
      metrics = {"contrastive": contrastive, "diversity": diversity, "feature_penalty": penalty,
                 "perplexity": out["perplexity"], "masked_fraction": mask.sum() / jnp.maximum(out["frame_mask"].sum(), 1),
                 "gumbel_temperature": model.quantizer.temperature[...]}
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)
    return loss_fn

  def post_update(self, params, model_state, step):
    """Anneals the Gumbel temperature to its value after `step + 1` updates."""
    start, end, decay = self.cfg.gumbel
    quantizer = dict(model_state["quantizer"], temperature=w2v.gumbel_temperature(step + 1, start, end, decay))
    return dict(model_state, quantizer=quantizer)

  def make_eval_fn(self, graphdef):
    cfg = self.cfg

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      out, mask, negatives = self._outputs(model, batch, jax.random.key(EVAL_SEED), train=False)
      logits = objective.wav2vec2_contrastive_logits(out["projected_states"], out["projected_quantized_states"],
                                                     negatives, cfg.logit_temperature)
      losses = -jax.nn.log_softmax(logits, axis=-1)[..., 0]
      correct = (jnp.argmax(logits, axis=-1) == 0).astype(jnp.float32)
      m = mask.astype(jnp.float32)
      num_masked = m.sum()
      return {"contrastive": (losses * m).sum(), "accuracy": (correct * m).sum(),
              "counts": {"contrastive": num_masked, "accuracy": num_masked},
              "count": batch["mask"].astype(jnp.float32).sum()}
    return eval_fn

