"""BEiT v1 masked image modelling (`config.task = "beit"`), Bao et al., ICLR 2022, §2.

Train step: the images are normalised; the frozen visual tokenizer gives every patch its visual token
(one code per patch: its latent grid must equal the model's patch grid); a block-wise mask of about
`beit.mask_ratio` of the patches (objectives/mim.py `block_mask_bank`: BEiT's Algorithm 1, drawn on the host
into a bank of `beit.mask_bank` masks that the step's key samples from) replaces those patch embeddings by
[MASK]; the loss is the cross-entropy of the visual token at each masked patch (objectives/mim.py
`beit_loss`). Evaluation reports the same loss and the token accuracy, with masks from a fixed key.
`features` gives the mean of the encoder's patch tokens of whole, unmasked images to `config.evals`
(k-NN, linear probe).

The tokenizer: the paper's is DALL·E's discrete VAE (8,192 codes), which cannot be loaded offline; a VQ-VAE
of models/vqvae.py stands in for it: `beit.tokenizer` is the params checkpoint of a VQ-VAE run (e.g.
configs/vqvae/digits.py: <run>/checkpoints/<step>/state), built with `beit.tokenizer_model`; it reads the
same normalised images as the model (so its run must use the same data.mean / data.std). "random": an
untrained VQ-VAE (seed 0), for smoke runs and tests only.
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
from papers_jax.evaluators import features as features_lib
from papers_jax.models import beit
from papers_jax.objectives import mim
from papers_jax.tasks.classification import normalize_images

EVAL_MASK_SEED = 0
RANGES = (
    ("mask_ratio", "(0, 1)"),
    ("block_min_patches", "[1, 65536]"),
    ("mask_bank", "[1, 1000000]"),
)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.beit`, the fields this task reads."""
  return ml_collections.ConfigDict(dict(
      tokenizer="", tokenizer_model=dict(name="vqvae", in_chans=1, hidden=64, res_hidden=32, num_codes=32,
                                         code_dim=16, ema_decay=0.99, restart_threshold=0.01),
      mask_ratio=0.4, block_min_patches=16, mask_bank=4096) | overrides)


def load_tokenizer(model_config, path: str) -> nnx.Module:
  """The VQ-VAE of `model_config` (a dict with its registered `name`) with the params (and EMA codebook) of
  the checkpoint at `path`, or untrained for path "random"."""
  kwargs = dict(model_config)
  vq = models.create(kwargs.pop("name"), rngs=nnx.Rngs(0), **kwargs)
  if path != "random":
    from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
    graphdef, params, rest = nnx.split(vq, nnx.Param, ...)
    params, _ = init_params_from_checkpoint(path, nnx.to_pure_dict(params), skip=())
    rest, _ = init_model_state_from_checkpoint(path, nnx.to_pure_dict(rest))
    vq = merge_model(graphdef, params, rest)
  return vq


class BEiTTask:
  def __init__(self, config):
    self.config = config
    self.cfg = config.beit
    self.mean, self.std, _ = image_preprocessing(config)
    if not self.cfg.tokenizer:
      raise ConfigError("beit.tokenizer is empty: set it to the params checkpoint of a VQ-VAE run (e.g. "
                        "configs/vqvae/digits.py: <run>/checkpoints/<step>/state), or 'random' for a smoke run")
    if self.cfg.tokenizer != "random" and not os.path.isdir(self.cfg.tokenizer):
      raise ConfigError(f"beit.tokenizer={self.cfg.tokenizer!r} is not a checkpoint directory; train a VQ-VAE "
                        "(configs/vqvae/digits.py) and pass <run>/checkpoints/<step>/state")
    # Built here, eagerly: build_model runs under abstract traces (shardings), the tokenizer must stay concrete.
    for key, value in dict(self.cfg.tokenizer_model).items():
      bad_int = isinstance(value, int) and not isinstance(value, bool) and value < 1
      if bad_int or (isinstance(value, float) and not 0 <= value < 1):
        raise ConfigError(f"beit.tokenizer_model.{key}={value!r}: sizes must be ≥ 1 and rates in [0, 1); give the "
                          "settings of the VQ-VAE run that beit.tokenizer comes from")
    try:
      self.tokenizer = load_tokenizer(self.cfg.tokenizer_model, self.cfg.tokenizer)
    except (TypeError, ValueError, KeyError) as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ConfigError(f"beit.tokenizer_model={dict(self.cfg.tokenizer_model)} does not build the tokenizer: "
                        f"{first}") from e
    self.masks = None
    self._encode = None

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs["num_visual_tokens"] = int(self.cfg.tokenizer_model["num_codes"])
    model = models.create(name, rngs=rngs, **kwargs)
    if not isinstance(model, beit.BEiT):
      raise ConfigError(f"task beit trains a BEiT (beit_mim_*), not {name!r}")
    h, w = model.patch_embed.img_size
    chans = model.patch_embed.proj["kernel"].shape[2]
    grid = jax.eval_shape(self.tokenizer.encode, jax.ShapeDtypeStruct((1, h, w, chans), jnp.float32)).shape[1:]
    if tuple(grid) != tuple(model.grid):
      raise ConfigError(f"the tokenizer gives a {tuple(grid)} grid of tokens but the model has {tuple(model.grid)} "
                        "patches; BEiT predicts one token per patch (match the patch size to the tokenizer's stride)")
    self.masks = np.asarray(mim.block_mask_bank(tuple(model.grid), float(self.cfg.mask_ratio),
                                                 int(self.cfg.mask_bank), min_patches=int(self.cfg.block_min_patches)))
    return model

  def _losses(self, model, batch, key, dropout_key=None):
    images = normalize_images(batch["image"], self.mean, self.std)
    tokens = jax.lax.stop_gradient(self.tokenizer.encode(images).reshape(images.shape[0], -1))
    mask = jnp.asarray(self.masks)[jax.random.randint(key, (images.shape[0],), 0, self.masks.shape[0])]
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    logits = model(images, mask, train=dropout_key is not None, rngs=rngs)
    correct = ((logits.argmax(-1) == tokens) & mask).sum(-1) / jnp.maximum(mask.sum(-1), 1)
    return mim.beit_loss(logits, tokens, mask), correct

  def make_loss_fn(self, graphdef):
    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      key, dropout_key = jax.random.split(rng)
      losses, correct = self._losses(model, batch, key, dropout_key)
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return losses.mean(), ({"token_accuracy": correct.mean()}, new_model_state)
    return loss_fn

  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):
      model = merge_model(graphdef, params, model_state)
      losses, correct = self._losses(model, batch, jax.random.key(EVAL_MASK_SEED))
      valid = batch["mask"].astype(jnp.float32)
      return {"loss": (losses * valid).sum(), "token_accuracy": (correct * valid).sum(), "count": valid.sum()}
    return eval_fn

  def features(self, trainer):
    """(uint8 images → the mean of the encoder's patch tokens of the unmasked images, the eval preprocessing)."""
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

