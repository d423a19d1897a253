"""DDPM training (`config.task = "diffusion"`): the ε-prediction loss L_simple, evaluation, sample grids, FID.

Train step (Algorithm 1 of Ho et al. 2020): images scaled to [−1, 1] by `data.mean` / `data.std` (0.5),
one t ~ U{0, …, T−1} and one ε ~ N(0, I) per example from the step's key, x_t = q_sample(x_0, t, ε),
loss = the mean over the batch of ‖ε − ε_θ(x_t, t)‖² / pixels (objectives/diffusion.py), dropout on.
Evaluation: the same loss on the eval split, with t and ε drawn per example from a fixed key and a hash
of the example's pixels, so every evaluation sees the same noise (eval/loss; eval_ema/loss on the weight EMA).

After each evaluation (`after_eval`), samples from the weight EMA (`config.ema_decay`, core/step.py;
the raw weights when it is off), drawn with `diffusion.sampler` ("ancestral": all T steps, σ²_t from
`diffusion.variance`; "ddim": `diffusion.ddim_steps` deterministic steps) in one jitted `lax.scan`, go to
<workdir>/samples/step_<step>.png and to TensorBoard (`diffusion/samples`). With `diffusion.fid_samples`
> 0 (digits only), that many samples are drawn and scored with evaluators/fid.py against the
`diffusion.fid_split` split, next to two references computed once per run: Gaussian noise with the
data's pixel mean and covariance (eval/fid_gaussian, the floor to beat) and the digits test split
(eval/fid_test_split, real data held out). The accuracy of the sampled digits is not defined (the model
is unconditional); eval/sample_class_entropy reports how evenly the classifier spreads them over the
ten classes (ln 10 = 2.303 for an even spread).

Config (`config.diffusion`): num_timesteps, beta_start, beta_end (the paper's 1000, 1e-4, 0.02),
variance ("beta" or "posterior"), clip_x0, sampler, ddim_steps, grid_samples, fid_samples, fid_split,
sample_batch, sample_seed.
"""

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
from papers_jax.errors import ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.objectives import diffusion
from papers_jax.tasks.classification import normalize_images

EVAL_NOISE_SEED = 0

RANGES = (
    ("num_timesteps", "[1, 100000]"),
    ("beta_start", "(0, 1)"),
    ("beta_end", "(0, 1)"),
    ("ddim_steps", "[1, 100000]"),
    ("grid_samples", "[0, 1024]"),
    ("fid_samples", "[0, 100000]"),
    ("sample_batch", "[1, 100000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.diffusion`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      num_timesteps=1000, beta_start=1e-4, beta_end=0.02, variance="beta", clip_x0=True, sampler="ancestral",
      ddim_steps=50, grid_samples=64, fid_samples=0, fid_split="train", sample_batch=256, sample_seed=0)
      | overrides)


def pixel_hash(images):
  """(B,) uint32 per-image hashes of uint8 pixels (a weighted sum with odd multipliers, wrapping)."""
  flat = images.reshape(images.shape[0], -1).astype(jnp.uint32)
  weights = jnp.arange(flat.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761) | jnp.uint32(1)
  return (flat * weights).sum(axis=1, dtype=jnp.uint32)


class DiffusionTask:
  """Model + loss + evaluation for `config.task = "diffusion"`."""

  def __init__(self, config):
    self.config = config
    d = self.diffusion = config.diffusion
    if d.variance not in diffusion.VARIANCES:
      raise ConfigError(f"diffusion.variance={d.variance!r}; choose from {diffusion.VARIANCES}")
    if d.sampler not in diffusion.METHODS:
      raise ConfigError(f"diffusion.sampler={d.sampler!r}; choose from {diffusion.METHODS}")
    if d.sampler == "ddim" and d.ddim_steps > d.num_timesteps:
      raise ConfigError(f"diffusion.ddim_steps={d.ddim_steps} exceeds diffusion.num_timesteps={d.num_timesteps}")
    if d.beta_end < d.beta_start:
      raise ConfigError(f"diffusion.beta_end={d.beta_end} is below beta_start={d.beta_start}")
    if d.fid_samples and config.data.name != "digits":
      raise ConfigError(f"diffusion.fid_samples needs the digits' feature extractor (evaluators/fid.py); the data "
                        f"{config.data.name!r} has none here. Set --config.diffusion.fid_samples=0.")
    if d.fid_samples == 1:
      raise ConfigError("diffusion.fid_samples=1: a covariance needs at least 2 samples")
    self.schedule = diffusion.linear_schedule(d.num_timesteps, d.beta_start, d.beta_end)
    self.mean, self.std, _ = image_preprocessing(config)
    self._sampler = None
    self._references = None

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def forward_flops(self, model) -> float:
    """FLOPs per example: one UNet call on a noised image of data.image_size (models/ddpm_unet.py)."""
    return models.forward_flops(model, img_size=int(self.config.data.image_size))

  def _losses(self, model, images, t_noise_keys, dropout_key=None):
    """Per-example L_simple; `t_noise_keys` (B,) keys give each example its t and ε."""
    x0 = normalize_images(images, self.mean, self.std)
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, self.schedule.num_steps))(t_noise_keys)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x0.shape[1:], jnp.float32))(t_noise_keys)
    x_t = diffusion.q_sample(self.schedule, x0, t, noise)
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    eps = model(x_t.astype(x0.dtype), t, train=dropout_key is not None, rngs=rngs)
    return diffusion.l_simple(eps, noise)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      noise_key, dropout_key = jax.random.split(rng)
      keys = jax.random.split(noise_key, batch["image"].shape[0])
      losses = self._losses(model, batch["image"], keys, dropout_key)
      return losses.mean(), ({}, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      keys = jax.vmap(lambda h: jax.random.fold_in(jax.random.key(EVAL_NOISE_SEED), h))(pixel_hash(batch["image"]))
      losses = self._losses(model, batch["image"], keys)
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "count": valid.sum()}
    return eval_fn

  # ------------------------------------------------------------------ sampling
  def to_uint8(self, x) -> np.ndarray:
    """Model-space images (about [−1, 1]) → uint8, undoing the data normalisation."""
    x = np.asarray(x, np.float32) * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)

  def sample(self, trainer, num: int, seed: int, params=None) -> np.ndarray:
    """`num` uint8 samples (num, S, S, C) from `params` (default: the weight EMA, else the weights)."""
    d, state = self.diffusion, trainer.state
    if params is None:
      params = state.extra.get("ema_params", state.params)
    size, channels = self.config.data.image_size, self._channels()
    if self._sampler is None:
      graphdef, schedule = trainer.graphdef, self.schedule

      def run(params, model_state, key, *, batch):
        model = merge_model(graphdef, params, model_state)
        denoise = lambda x, t: model(x.astype(model.conv_in.dtype or jnp.float32), t)  # noqa: E731
        return diffusion.sample(denoise, schedule, (batch, size, size, channels), key, method=d.sampler,
                                num_steps=d.ddim_steps, variance=d.variance, clip_x0=bool(d.clip_x0))

      self._sampler = jax.jit(run, static_argnames="batch", out_shardings=sharding.replicated(trainer.mesh))
    out = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for i, start in enumerate(range(0, num, d.sample_batch)):
        batch = min(d.sample_batch, num - start)
        key = jax.random.fold_in(jax.random.key(seed), i)
        out.append(self.to_uint8(self._sampler(params, state.model_state, key, batch=batch)))
    return np.concatenate(out)

  def _channels(self) -> int:
    return int(self.config.model.get("in_chans", models.model_config(self.config.model.name).get("in_chans", 3)))

  def _fid_references(self):
    """(reference features, {name: FID of a reference sample set}), computed once per run."""
    if self._references is None:
      d, size = self.diffusion, self.config.data.image_size
      extractor = fid_lib.digits_feature_extractor(size)
      real, _ = fid_lib.digits_images(d.fid_split, size)
      real_features = extractor.features(real)
      gaussian = fid_lib.gaussian_baseline(real, d.fid_samples, seed=d.sample_seed)
      refs = {"fid_gaussian": fid_lib.fid(extractor.features(gaussian), real_features)}
      if d.fid_split != "test":
        test, _ = fid_lib.digits_images("test", size)
        refs["fid_test_split"] = fid_lib.fid(extractor.features(test), real_features)
      self._references = (extractor, real_features, refs)
    return self._references

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    d, out = self.diffusion, {}
    grid = None
    if d.fid_samples:
      samples = self.sample(trainer, d.fid_samples, d.sample_seed)
      extractor, real_features, refs = self._fid_references()
      out = {"fid": fid_lib.fid(extractor.features(samples), real_features), **refs}
      counts = np.bincount(extractor.predict(samples), minlength=10) / len(samples)
      out["sample_class_entropy"] = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())
      grid = samples[:d.grid_samples]
    elif d.grid_samples:
      grid = self.sample(trainer, d.grid_samples, d.sample_seed)
    if grid is not None and len(grid) and writer is not None and trainer.is_main:
      per_row = int(np.ceil(np.sqrt(len(grid))))
      rows = [grid[i:i + per_row] / 255.0 for i in range(0, len(grid) - per_row + 1, per_row)] or [grid / 255.0]
      which = "EMA" if "ema_params" in trainer.state.extra else "raw"
      steps = d.ddim_steps if d.sampler == "ddim" else d.num_timesteps
      picture = vis.grid_image(rows, cell=max(16, 2 * self.config.data.image_size),
                               caption=f"DDPM step {step}, {which} weights, {d.sampler} ({steps} steps)")
      vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
      writer.write_image(step, "diffusion/samples", picture)
    return out
