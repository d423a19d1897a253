"""VQ-VAE training (`config.task = "vqvae"`): reconstruction through the vector-quantised bottleneck.

Loss (van den Oord et al. 2017, eq. 3): ‖x − D(z_q)‖² (the mean squared error over pixels, images scaled
by `data.mean` / `data.std`) + the quantiser's codebook and β-weighted commitment losses
(nn/quantize.py; with `model.ema_decay` > 0 the codebook follows EMA updates instead). Metrics of the train
step and of the evaluation: recon_mse, vq_loss, perplexity and usage (the fraction of codes a batch uses).
After each evaluation a PNG grid of originals over reconstructions of the first `vqvae.vis_examples`
eval images goes to <workdir>/reconstructions/ and TensorBoard, and eval/codebook_usage reports the
fraction of codes that the whole eval split uses. With `vqvae.fid` (digits only), the reconstructions of the
whole eval split are scored with the digits FID against the train split (evaluators/fid.py:
digits_sample_metrics): eval/fid_reconstructions, beside eval/fid_gaussian (as many Gaussian-noise draws with the
data's pixel mean and covariance) and eval/fid_test_split (the real test images themselves: the floor a
reconstruction can reach). Samples need a prior over the codes: tasks/code_prior.py trains one on a finished run.
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
from papers_jax.data import pipeline
from papers_jax.errors import ConfigError
from papers_jax.evaluators import fid as fid_lib
from papers_jax.evaluators import reconstruction as vis
from papers_jax.tasks.classification import normalize_images

RANGES = (("vis_examples", "[0, 1024]"),)
METRICS = ("recon_mse", "vq_loss", "perplexity", "usage")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.vqvae`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(vis_examples=8, fid=False) | overrides)


class VQVAETask:
  """Model + loss + evaluation for `config.task = "vqvae"`."""

  def __init__(self, config):
    self.config = config
    self.mean, self.std, _ = image_preprocessing(config)
    self._jitted = None
    if config.vqvae.get("fid") and config.data.name != "digits":
      raise ConfigError(f"vqvae.fid needs the digits' feature extractor (evaluators/fid.py); the data "
                        f"{config.data.name!r} has none here. Set --config.vqvae.fid=False.")

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def forward_flops(self, model) -> float:
    """FLOPs per example: encoder, quantiser and decoder on one image of data.image_size (models/vqvae.py)."""
    return models.forward_flops(model, img_size=int(self.config.data.image_size))

  def _forward(self, model, images, rngs=None):
    x = normalize_images(images, self.mean, self.std)
    recon, aux = model(x, train=rngs is not None, rngs=rngs)
    recon_mse = jnp.square(recon.astype(jnp.float32) - x).reshape(x.shape[0], -1).mean(axis=1)
    return recon_mse, aux

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      recon_mse, aux = self._forward(model, batch["image"], nnx.Rngs(dropout=rng))
      metrics = dict(recon_mse=recon_mse.mean(), vq_loss=aux["loss"], perplexity=aux["perplexity"],
                     usage=aux["usage"])
      return recon_mse.mean() + aux["loss"], (metrics, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      recon_mse, aux = self._forward(model, batch["image"])
      valid = batch["mask"].astype(jnp.float32)
      n = valid.sum()
      # Batch-level metrics weighted by the batch's valid count (averaged over examples by the loop).
      return {"loss": (recon_mse * valid).sum() + aux["loss"] * n, "recon_mse": (recon_mse * valid).sum(),
              "vq_loss": aux["loss"] * n, "perplexity": aux["perplexity"] * n, "count": n}
    return eval_fn

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    if self._jitted is None:
      graphdef = trainer.graphdef

      def run(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        x = normalize_images(images, self.mean, self.std)
        recon, aux = model(x)
        return recon, aux["indices"]
      self._jitted = jax.jit(run, out_shardings=sharding.replicated(trainer.mesh))
    preprocess = pipeline.config_image_preprocess(self.config, False)
    images = np.stack([preprocess(dict(source[i]), None)["image"] for i in range(len(source))])
    used = np.zeros(self._num_codes(), bool)
    recons = []
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      for start in range(0, len(images), 256):
        recon, indices = self._jitted(trainer.state.params, trainer.state.model_state, images[start:start + 256])
        used[np.unique(np.asarray(indices))] = True
        recons.append(np.asarray(recon, np.float32))
    mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
    recons = np.clip(np.concatenate(recons) * std + mean, 0, 1)  # [0, 1]
    out = {"codebook_usage": float(used.mean())}
    if self.config.vqvae.get("fid"):
      scores = fid_lib.digits_sample_metrics(np.round(recons * 255).astype(np.uint8), self.config.data.image_size)
      out |= {"fid_reconstructions": scores.pop("fid"), **scores}
    n = min(int(self.config.vqvae.vis_examples), len(images))
    if n and writer is not None and trainer.is_main:
      rows = [images[:n] / 255.0, recons[:n]]
      picture = vis.grid_image(rows, cell=max(16, 2 * images.shape[1]),
                               caption=f"VQ-VAE step {step}: originals (top), reconstructions (bottom)")
      vis.save_png(picture, os.path.join(trainer.workdir, "reconstructions", f"step_{step:06d}.png"))
      writer.write_image(step, "vqvae/reconstructions", picture)
    return out

  def _num_codes(self) -> int:
    return int(self.config.model.get("num_codes", models.model_config(self.config.model.name)["num_codes"]))
