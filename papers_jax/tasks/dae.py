"""A denoising autoencoder (`config.task = "dae"`; Vincent et al., 2008), the baseline the MAE paper sets
itself against (He et al., 2022, §2: MAE is a form of denoising autoencoding that removes patches instead of
corrupting pixels): MAE's encoder-decoder (models/mae.py) with nothing removed (mask ratio 0), reading a
corrupted image and reconstructing the clean one.

Train step: the images are normalised; `corrupt` (objectives/mim.py) adds N(0, `dae.noise_std`²) to every
pixel and then sets each pixel to 0 (the dataset mean) with probability `dae.drop_prob`; the encoder sees
every patch of the corrupted image; the loss is the squared error of every reconstructed pixel against
the clean image (per-patch normalised when `mae.norm_pix_loss`, as MAE's target). Evaluation: the same loss
with corruptions from a fixed key. Everything else (the `config.mae` section, the features of whole clean
images for `config.evals`) is MAE's task (tasks/mae.py); `mae.vis_examples` is best 0 (MAE's pictures show
masked patches, of which a DAE has none).
"""

import jax
import ml_collections
from flax import nnx

from papers_jax.objectives import mim, reconstruction
from papers_jax.tasks.classification import normalize_images
from papers_jax.tasks.mae import MAETask

RANGES = (
    ("noise_std", "[0, 100]"),
    ("drop_prob", "[0, 1)"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.dae`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(noise_std=0.2, drop_prob=0.25) | overrides)


class DenoisingAutoencoderTask(MAETask):
  def _losses(self, model, batch, key, dropout_key=None):
    clean = normalize_images(batch["image"], self.mean, self.std)
    noisy = mim.corrupt(key, clean, noise_std=float(self.config.dae.noise_std),
                        drop_prob=float(self.config.dae.drop_prob))
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    latent, _, ids_restore = model.forward_encoder(noisy, rng=key, mask_ratio=0.0,
                                                   deterministic=dropout_key is None, rngs=rngs)
    pred = model.forward_decoder(latent, ids_restore, deterministic=dropout_key is None, rngs=rngs)
    target = reconstruction.patchify(clean, model.patch_size)
    if self.mae.norm_pix_loss:
      target = reconstruction.normalize_patches(target)
    return mim.denoising_loss(pred, jax.lax.stop_gradient(target))

  def after_eval(self, trainer, step: int, writer, source, metrics) -> dict:
    return {}

