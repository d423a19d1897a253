"""GANs (Goodfellow et al., 2014; DCGAN, Radford et al., 2016) on the generic loop, with two optimizer phases.

One train step runs the discriminator's phase, then the generator's (core/optim.py: Phase), each with its own
optimizer (`config.phases.discriminator` / `.generator`: DCGAN's Adam, lr 2e-4, β1 = 0.5):
  discriminator  −log D(x) − log(1 − D(G(z))) on a real batch and a batch of samples, the two through D
                 separately (as the authors' code: each BatchNorm batch is all real or all fake); G runs in
                 training mode but its BatchNorm statistics are left to the generator's phase.
  generator      `gan.generator_loss`: "non_saturating" (−log D(G(z)), the paper's §3 and DCGAN) or
                 "minimax" (log(1 − D(G(z)))), through the discriminator the first phase just updated, on the
                 same z.
z ~ N(0, I) is drawn on the host with each example (its `z`), so that a resumed run draws the same noise.
Images are scaled to [−1, 1] (G's tanh range).

Evaluation: the mean D(x) on the split's real images (`d_real`), the mean D(G(z)) on as many samples from fixed
noise (`d_fake`) and the discriminator's accuracy on both; `after_eval` writes a grid of `gan.vis_examples`
samples from fixed noise to <workdir>/samples/step_<step>.png and TensorBoard. With `gan.fid_samples` > 0
(digits only), that many samples from fixed noise (`gan.sample_seed`) are scored with the digits FID against
the train split (evaluators/fid.py: digits_sample_metrics): eval/fid, beside eval/fid_gaussian (Gaussian noise
with the data's pixel mean and covariance, as many draws: the floor to beat) and eval/fid_test_split (the
held-out real digits); the grid then shows the first of those samples. `gan.fid_image_size` (0: the data's
size) scores the samples at another size, each resized as the data pipeline resizes the real digits (bilinear):
a generator of the native 8×8 digits is scored at 16×16 beside the other models. The metrics of the phases
(core/step.py) are discriminator/loss, discriminator/d_real, discriminator/d_fake, generator/loss, ...
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.optim import Phase
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline, preprocess
from papers_jax.errors import ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.models import dcgan
from papers_jax.objectives import gan as objective

RANGES = (("vis_examples", "[0, 1024]"), ("sample_seed", "[0, 4294967295]"), ("fid_samples", "[0, 100000]"),
          ("fid_image_size", "[0, 1024]"))
PHASES = (Phase("discriminator", r"^discriminator/"), Phase("generator", r"^generator/"))


def to_unit_range(images):
  """uint8 images → floats in [−1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8_range(x):
  """Samples in [−1, 1] → floats in [0, 1] for pictures."""
  return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


class GANTask:
  """Model + losses + evaluation for `config.task = "gan"`."""

  phases = PHASES

  def __init__(self, config):
    self.config = config
    self.gan = config.gan
    if self.gan.generator_loss not in objective.GENERATOR_LOSSES:
      raise ConfigError(f"gan.generator_loss={self.gan.generator_loss!r}; choose from "
                        f"{tuple(objective.GENERATOR_LOSSES)}")
    self.generator_loss = objective.GENERATOR_LOSSES[self.gan.generator_loss]
    self.z_dim = int(config.model.get("z_dim", 100))
    self.fid_samples = fid_lib.check_fid_samples(config, "gan")

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def forward_flops(self, model, *, count_padding: bool = True) -> float:
    """FLOPs per example of a training step's forward passes: the discriminator's phase runs G on z and D on
    the real and the generated image, the generator's phase G and D once more (models/dcgan.py)."""
    kw = dict(count_padding=count_padding)
    return 2 * dcgan.generator_flops(model, **kw) + 3 * dcgan.discriminator_flops(model, **kw)

  def preprocess(self, train: bool):
    images = pipeline.config_image_preprocess(self.config, train)
    z_dim = self.z_dim

    def fn(example, rng):
      out = {"image": images(example, rng)["image"]}
      if train:
        out["z"] = rng.standard_normal(z_dim).astype(np.float32)
      return out
    return fn

  def make_loss_fn(self, graphdef):
    generator_loss = self.generator_loss

    def discriminator_phase(params, model_state, batch, rng):
      del rng
      model = merge_model(graphdef, params, model_state)
      fake = model.generator(batch["z"], train=True)
      real_logits = model.discriminator(to_unit_range(batch["image"]), train=True)
      fake_logits = model.discriminator(fake, train=True)
      loss = objective.discriminator_loss(real_logits, fake_logits)
      new_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      if "generator" in model_state:  # G's statistics move once per step, in its own phase
        new_state = {**new_state, "generator": model_state["generator"]}
      metrics = {"d_real": jax.nn.sigmoid(real_logits).mean(), "d_fake": jax.nn.sigmoid(fake_logits).mean()}
      return loss, (metrics, new_state)

    def generator_phase(params, model_state, batch, rng):
      del rng
      model = merge_model(graphdef, params, model_state)
      fake_logits = model.discriminator(model.generator(batch["z"], train=True), train=True)
      new_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return generator_loss(fake_logits), ({"d_fake": jax.nn.sigmoid(fake_logits).mean()}, new_state)

    return {"discriminator": discriminator_phase, "generator": generator_phase}

  def make_eval_fn(self, graphdef):
    z_dim, seed = self.z_dim, int(self.gan.sample_seed)

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      mask = batch["mask"].astype(jnp.float32)
      z = jax.random.normal(jax.random.key(seed), (mask.shape[0], z_dim))
      real = model.discriminator(to_unit_range(batch["image"]), train=False)
      fake = model.discriminator(model.generator(z, train=False), train=False)
      accuracy = 0.5 * ((real > 0).astype(jnp.float32) + (fake < 0).astype(jnp.float32))
      return {"d_real": (jax.nn.sigmoid(real) * mask).sum(), "d_fake": (jax.nn.sigmoid(fake) * mask).sum(),
              "d_accuracy": (accuracy * mask).sum(), "count": mask.sum()}
    return eval_fn

  def sample(self, trainer, n: int, seed: int | None = None) -> np.ndarray:
    """`n` samples (n, H, W, C) in [0, 1] from the generator, noise from `seed`: in evaluation mode, or, when
    the run keeps a weight EMA (`config.ema_decay`), from the EMA weights with BatchNorm on the statistics of
    the n samples themselves (the running statistics belong to the raw weights)."""
    seed = int(self.gan.sample_seed) if seed is None else seed
    ema = "ema_params" in trainer.state.extra
    if getattr(self, "_sample_for", None) is not trainer:
      graphdef = trainer.graphdef

      def generate(params, model_state, z):
        return merge_model(graphdef, params, model_state).generator(z, train=ema)
      self._sample_jit = jax.jit(generate, out_shardings=sharding.replicated(trainer.mesh))
      self._sample_for = trainer
    z = jax.random.normal(jax.random.key(seed), (n, self.z_dim))
    params = trainer.state.extra["ema_params"] if ema else trainer.state.params
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      return to_uint8_range(self._sample_jit(params, trainer.state.model_state, z))

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del source, metrics
    n, out = int(self.gan.vis_examples), {}
    if not (n or self.fid_samples):
      return out
    samples = self.sample(trainer, max(n, self.fid_samples))
    size = int(self.gan.get("fid_image_size") or self.config.data.image_size)
    if size != samples.shape[1]:  # resized as the data pipeline resizes the real digits (bilinear, uint8)
      samples = np.stack([preprocess.resize(np.round(x * 255).astype(np.uint8), size) / 255.0 for x in samples])
      samples = samples.reshape(len(samples), size, size, -1)
    if self.fid_samples:
      out = fid_lib.digits_sample_metrics(np.round(samples[:self.fid_samples] * 255).astype(np.uint8), size,
                                          seed=int(self.gan.sample_seed))
    if n and writer is not None:
      samples = samples[:n]
      cols = int(np.ceil(np.sqrt(n)))
      rows = [samples[i:i + cols] for i in range(0, n - n % cols or n, cols)]
      picture = vis.grid_image(rows, cell=2 * samples.shape[1])
      if trainer.is_main:
        vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
        writer.write_image(step, "gan/samples", picture)
    return out
