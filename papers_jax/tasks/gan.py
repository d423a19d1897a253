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
samples from fixed noise to <workdir>/samples/step_<step>.png and TensorBoard. The metrics of the phases
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
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError
from papers_jax.evaluators import reconstruction as vis
from papers_jax.models import dcgan
from papers_jax.objectives import gan as objective

RANGES = (("vis_examples", "[0, 1024]"), ("sample_seed", "[0, 4294967295]"))
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
    """`n` samples (n, H, W, C) in [0, 1] from the generator in evaluation mode, noise from `seed`."""
    seed = int(self.gan.sample_seed) if seed is None else seed
    if getattr(self, "_sample_for", None) is not trainer:
      graphdef = trainer.graphdef

      def generate(params, model_state, z):
        return merge_model(graphdef, params, model_state).generator(z, train=False)
      self._sample_jit = jax.jit(generate, out_shardings=sharding.replicated(trainer.mesh))
      self._sample_for = trainer
    z = jax.random.normal(jax.random.key(seed), (n, self.z_dim))
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      return to_uint8_range(self._sample_jit(trainer.state.params, trainer.state.model_state, z))

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del source, metrics
    n = int(self.gan.vis_examples)
    if n and writer is not None:
      samples = self.sample(trainer, n)
      cols = int(np.ceil(np.sqrt(n)))
      rows = [samples[i:i + cols] for i in range(0, n - n % cols or n, cols)]
      picture = vis.grid_image(rows, cell=2 * samples.shape[1])
      if trainer.is_main:
        vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
        writer.write_image(step, "gan/samples", picture)
    return {}
