"""Variational autoencoders (Kingma & Welling, 2014) on the generic loop.

Training maximises the ELBO with one reparameterised sample per image (§2.3, L = 1): the loss is the mean over
the batch of −(log p(x|z) − KL(q(z|x) ‖ N(0, I))), in nats per image (objectives/vae.py).

Data, by `model.likelihood`:
  bernoulli  images binarised at `vae.binarize_threshold` (of [0, 1]; a fixed threshold, so the test set is a
             fixed binary data set) and modelled with per-pixel Bernoulli logits;
  gaussian   pixels scaled to [0, 1] with uniform dequantisation noise in training ((x + u) / 256, u ~ U[0, 1),
             drawn on the host); evaluation uses the bin centres (x + ½) / 256. The decoder gives a per-pixel
             mean and log-variance.

Evaluation (sums per batch, averaged by the loop): `elbo` and `kl` (nats per image), `nll_iwae` = −log p̂(x)
from the importance-weighted bound with `vae.eval_k` samples (Burda et al., 2016; k = 100 in the demo), and
`bpd` = that NLL in bits per dimension (with the Gaussian's ln 256 per dimension for 8-bit data). The noise of
the evaluation is fixed (`vae.eval_seed`), so two evaluations of the same weights agree. `after_eval` writes a
grid of test images, their reconstructions (decoder means) and samples from the prior to
<workdir>/samples/step_<step>.png and TensorBoard.

With `vae.fid_samples` > 0 (digits only), `after_eval` also scores that many samples from the prior (fixed noise,
`vae.eval_seed`) with the digits FID against the train split (evaluators/fid.py: digits_sample_metrics), for the
Bernoulli likelihood against the split binarised as the model sees it: eval/fid for samples x ~ p(x|z), z ~ N(0, I)
(binary images, the model's own samples), eval/fid_means for the decoder's means (the grey pictures a VAE is
usually shown with), beside eval/fid_gaussian (Gaussian noise with the data's pixel mean and covariance, as many
draws: the floor to beat) and eval/fid_test_split (the held-out test split, binarised alike).
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.models.vae import reparameterize
from papers_jax.objectives import vae as objective

RANGES = (("binarize_threshold", "(0, 1)"), ("eval_k", "[1, 100000]"), ("vis_examples", "[0, 1024]"),
          ("eval_seed", "[0, 4294967295]"), ("fid_samples", "[0, 100000]"))


class VAETask:
  """Model + ELBO + IWAE evaluation for `config.task = "vae"`."""

  def __init__(self, config):
    self.config = config
    self.vae = config.vae
    self.likelihood = config.model.get("likelihood") or models.model_config(config.model.name).get(
        "likelihood", "bernoulli")
    if self.likelihood not in ("bernoulli", "gaussian"):
      raise ConfigError(f"model.likelihood={self.likelihood!r}; choose 'bernoulli' or 'gaussian'")
    self.fid_samples = fid_lib.check_fid_samples(config, "vae")

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def preprocess(self, train: bool):
    images = pipeline.config_image_preprocess(self.config, train)
    dequantize = train and self.likelihood == "gaussian"

    def fn(example, rng):
      out = {"image": images(example, rng)["image"]}
      if dequantize:
        out["noise"] = rng.random(out["image"].shape).astype(np.float32)
      return out
    return fn

  def inputs(self, batch):
    """The modelled data x in [0, 1]: binary for the Bernoulli likelihood, dequantised pixels for the Gaussian."""
    image = batch["image"].astype(jnp.float32)
    if self.likelihood == "bernoulli":
      return (image / 255.0 > float(self.vae.binarize_threshold)).astype(jnp.float32)
    return (image + batch.get("noise", 0.5)) / 256.0

  def log_likelihood(self, model, z, x):
    out = model.decode(z)
    if self.likelihood == "bernoulli":
      return objective.bernoulli_log_likelihood(out, x)
    return objective.gaussian_log_likelihood(*out, x)

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      x = self.inputs(batch)
      mu, logvar = model.encode(x)
      log_px_z = self.log_likelihood(model, reparameterize(rng, mu, logvar), x)
      kl = objective.gaussian_kl(mu, logvar)
      elbo = objective.elbo(log_px_z, kl)
      return -elbo.mean(), ({"kl": kl.mean(), "log_px_z": log_px_z.mean()}, model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    k, seed = int(self.vae.eval_k), int(self.vae.eval_seed)
    levels = 256 if self.likelihood == "gaussian" else 1

    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      x = self.inputs(batch)
      mask = batch["mask"].astype(jnp.float32)
      mu, logvar = model.encode(x)
      kl = objective.gaussian_kl(mu, logvar)

      def one_sample(_, key):  # log w = log p(x|z) + log p(z) − log q(z|x), one z per image
        z = reparameterize(key, mu, logvar)
        log_px_z = self.log_likelihood(model, z, x)
        log_w = log_px_z + objective.log_normal(z, 0.0, 0.0) - objective.log_normal(z, mu, logvar)
        return None, (log_w, log_px_z)
      _, (log_w, log_px_z) = jax.lax.scan(one_sample, None, jax.random.split(jax.random.key(seed), k))
      elbo = objective.elbo(log_px_z[0], kl)  # the first sample's single-sample estimate
      nll = -objective.iwae_bound(log_w)
      dims = math.prod(x.shape[1:])
      return {"elbo": (elbo * mask).sum(), "kl": (kl * mask).sum(), "nll_iwae": (nll * mask).sum(),
              "bpd": (objective.bits_per_dim(nll, dims, levels) * mask).sum(), "count": mask.sum()}
    return eval_fn

  def pictures(self, trainer, images_uint8, seed: int = 0):
    """(x, reconstructions, prior samples) in [0, 1]: decoder means (Bernoulli: probabilities)."""
    if getattr(self, "_pictures_for", None) is not trainer:
      graphdef, likelihood = trainer.graphdef, self.likelihood

      def mean_of(out):
        return jax.nn.sigmoid(out) if likelihood == "bernoulli" else jnp.clip(out[0], 0.0, 1.0)

      def apply(params, model_state, batch, key):
        model = merge_model(graphdef, params, model_state)
        x = self.inputs(batch)
        mu, _ = model.encode(x)
        prior = jax.random.normal(key, mu.shape)
        return x, mean_of(model.decode(mu)), mean_of(model.decode(prior))
      self._pictures_jit = jax.jit(apply, out_shardings=sharding.replicated(trainer.mesh))
      self._pictures_for = trainer
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      out = self._pictures_jit(trainer.state.params, trainer.state.model_state, {"image": images_uint8},
                               jax.random.key(seed))
    return tuple(np.asarray(a, np.float32) for a in out)

  def sample(self, trainer, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples from the prior as uint8 (n, S, S, C): (samples x ~ p(x|z), the decoder's means)."""
    if getattr(self, "_sample_for", None) is not trainer:
      graphdef, likelihood = trainer.graphdef, self.likelihood

      def generate(params, model_state, key, n):
        model = merge_model(graphdef, params, model_state)
        z_key, x_key = jax.random.split(key)
        out = model.decode(jax.random.normal(z_key, (n, model.latent_dim)))
        if likelihood == "bernoulli":
          mean = jax.nn.sigmoid(out)
          return jax.random.bernoulli(x_key, mean).astype(jnp.float32), mean
        mean, logvar = out
        return mean + jnp.exp(0.5 * logvar) * jax.random.normal(x_key, mean.shape), mean
      self._sample_jit = jax.jit(generate, static_argnames="n", out_shardings=sharding.replicated(trainer.mesh))
      self._sample_for = trainer
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      out = self._sample_jit(trainer.state.params, trainer.state.model_state, jax.random.key(seed), n=n)
    return tuple(np.round(np.clip(np.asarray(a, np.float32), 0, 1) * 255).astype(np.uint8) for a in out)

  def fid_metrics(self, samples, means) -> dict:
    """The digits FID of prior samples and of their decoder means, with the references (module docstring)."""
    threshold = float(self.vae.binarize_threshold) if self.likelihood == "bernoulli" else None
    size, seed = self.config.data.image_size, int(self.vae.eval_seed)
    out = fid_lib.digits_sample_metrics(samples, size, seed=seed, threshold=threshold)
    out["fid_means"] = fid_lib.digits_sample_metrics(means, size, seed=seed, threshold=threshold)["fid"]
    return out

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    del metrics
    out = {}
    if self.fid_samples:
      out = self.fid_metrics(*self.sample(trainer, self.fid_samples, int(self.vae.eval_seed)))
    n = min(int(self.vae.vis_examples), len(source))
    if n and writer is not None:
      fn = self.preprocess(train=False)
      images = np.stack([fn(dict(source[i]), None)["image"] for i in range(n)])
      picture = vis.grid_image(list(self.pictures(trainer, images)), cell=2 * images.shape[1],
                               caption=f"VAE step {step}: test images / reconstructions / samples from the prior")
      if trainer.is_main:
        vis.save_png(picture, os.path.join(trainer.workdir, "samples", f"step_{step:06d}.png"))
        writer.write_image(step, "vae/samples", picture)
    return out
