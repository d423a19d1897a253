"""The ViT paper's masked patch prediction (`config.task = "masked_patch_prediction"`, models/vit_mpp.py).

Train step: the images are normalised with the dataset mean/std and their patch embeddings corrupted with
the step's key (half of the patches: 80% [mask], 10% another patch of the image, 10% unchanged); the loss
is the cross-entropy of each corrupted patch's mean colour, 3 bits per channel, read from the unnormalised
image (objectives/masked_patch.py). Evaluation reports the same loss and the accuracy of the predicted
colour over the corrupted patches, with corruptions from a fixed key (comparable across steps).
`features` gives the encoder's features of whole, uncorrupted images to `config.evals` (k-NN, linear
probe); fine-tuning reads the encoder with `init_from=<run>/checkpoints/<step>/state` and `init_prefix="vit/"`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model
from papers_jax.errors import ConfigError
from papers_jax.evaluators import features as features_lib
from papers_jax.objectives import masked_patch
from papers_jax.tasks.classification import normalize_images

EVAL_CORRUPTION_SEED = 0


class MaskedPatchPredictionTask:
  def __init__(self, config):
    self.config = config
    self.mean, self.std, _ = image_preprocessing(config)
    if not config.model.name.startswith("mpp_vit_"):
      raise ConfigError(f"task masked_patch_prediction trains an mpp_vit_* model, not {config.model.name!r}")
    self._encode = None

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    return models.create(name, rngs=rngs, **kwargs)

  def _losses(self, model, batch, key, dropout_key=None):
    images = batch["image"].astype(jnp.float32) / 255.0
    classes = masked_patch.mean_colour_classes(images, model.patch_size, model.colour_bits)
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    logits, corrupted = model(normalize_images(batch["image"], self.mean, self.std), rng=key,
                              train=dropout_key is not None, rngs=rngs)
    correct = ((logits.argmax(-1) == classes) & corrupted).sum(-1) / jnp.maximum(corrupted.sum(-1), 1)
    return masked_patch.masked_patch_loss(logits, classes, corrupted), correct

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      key, dropout_key = jax.random.split(rng)
      losses, correct = self._losses(model, batch, key, dropout_key)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return losses.mean(), ({"colour_accuracy": correct.mean()}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, correct = self._losses(model, batch, jax.random.key(EVAL_CORRUPTION_SEED))
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "colour_accuracy": (correct * valid).sum(), "count": valid.sum()}
    return eval_fn

  def features(self, trainer):
    """(uint8 images → the encoder's pooled features of the uncorrupted images, the evaluation preprocessing)."""
    if self._encode is None:
      graphdef, mean, std = trainer.graphdef, self.mean, self.std

      def encode(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        return features_lib.named(model, normalize_images(images, mean, std), "pre_logits")
      self._encode = jax.jit(encode, out_shardings=sharding.replicated(trainer.mesh))
    from papers_jax.core.loop import preprocess_fn
    state = trainer.state
    return (lambda images: self._encode(state.params, state.model_state, images)), preprocess_fn(
        self.config, self, train=False)
