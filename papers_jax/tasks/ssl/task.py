"""`SSLTask`: the trainer's interface for every SSL method (model, loss, momentum update, k-NN
monitor); each method's loss lives in its own module."""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from papers_jax import models
from papers_jax.core import precision, sharding
from papers_jax.core.config import image_preprocessing
from papers_jax.core.state import merge_model, split_model
from papers_jax.data import pipeline, views
from papers_jax.data.sources import get_source
from papers_jax.errors import ConfigError
from papers_jax.evaluators import features as features_lib
from papers_jax.evaluators import knn as knn_lib
from papers_jax.models import conv_flops
from papers_jax.objectives import memory
from papers_jax.objectives import pretext as pretext_objectives
from papers_jax.tasks.ssl import byol, cmc, dino, instdisc, moco, pretext, simclr, simsiam, swav
from papers_jax.tasks.ssl.common import (MEMORY_BANK, METHODS, MOMENTUM_ENCODER, MULTI_CROP, MULTI_CROP_VIEWS, PRETEXT,
                                         VIEWS, QUEUE, SSLModel, entries_like, replace_entries)

log = logging.getLogger(__name__)

LOSSES = {"simclr": simclr.loss, "moco_v1": moco.queue_loss, "moco_v2": moco.queue_loss, "moco_v3": moco.v3_loss,
          "byol": byol.loss, "simsiam": simsiam.loss, "swav": swav.loss, "dino": dino.loss,
          "instdisc": instdisc.loss, "cmc": cmc.loss} | pretext.LOSSES


class SSLTask:

  def __init__(self, config):
    self.config = config
    c = self.c = config.ssl
    if c.method not in METHODS:
      raise ConfigError(f"ssl.method={c.method!r}; choose one of {METHODS}")
    if c.method in QUEUE and c.queue_size % config.batch_size and config.batch_size < c.queue_size:
      log.info("queue_size %d is not a multiple of the batch %d: the queue wraps with a scatter update",
               c.queue_size, config.batch_size)
    if c.views not in VIEWS:
      raise ConfigError(f"ssl.views={c.views!r}; choose one of {VIEWS}")
    self.mean, self.std, _ = image_preprocessing(config)  # the config's, else the model name's
    if c.views in MULTI_CROP_VIEWS:
      self.recipes = getattr(views, c.views)(c.view_size, c.local_view_size, c.num_local_views,
                                             tuple(c.global_crop_scale), tuple(c.local_crop_scale))
    else:
      self.recipes = getattr(views, c.views)(c.view_size)
      if c.crop_scale:  # small images: milder crops than the ImageNet recipe's
        self.recipes = [dataclasses.replace(r, scale=tuple(c.crop_scale)) for r in self.recipes]
    if c.color_jitter:  # small images: milder colour distortion than the ImageNet recipe's
      if len(c.color_jitter) != 4:
        raise ConfigError(f"ssl.color_jitter={tuple(c.color_jitter)}; give (brightness, contrast, saturation, hue)")
      self.recipes = [dataclasses.replace(r, jitter=tuple(c.color_jitter)) for r in self.recipes]
    expected = {"swav": None, "dino": None, "instdisc": 1, "cmc": 1 if c.lab_views else 2}.get(c.method, 2)
    if c.method in PRETEXT:
      expected = 1
      self._check_pretext()
    if c.method in MULTI_CROP and c.views not in MULTI_CROP_VIEWS:
      raise ConfigError(f"ssl.method={c.method!r} needs multi-crop views; set ssl.views to one of {MULTI_CROP_VIEWS}")
    if expected is not None and len(self.recipes) != expected:
      raise ConfigError(f"ssl.method={c.method!r} takes {expected} view(s) per image; ssl.views={c.views!r} "
                        f"makes {len(self.recipes)}")
    if c.method == "cmc" and c.lab_views and len(self.mean) != 3:
      raise ConfigError("ssl.lab_views needs RGB data (3 channels)")
    # Memory banks hold one row per training example, addressed by batch["index"].
    self.num_data = 0
    if c.method in MEMORY_BANK:
      self.num_data = c.bank_size or len(get_source(config.data, config.data.train_split))
    self.num_steps = 0  # set by the trainer; the cosine momentum schedule needs it

  def _check_pretext(self):
    c, size = self.c, self.c.view_size
    if c.method in ("jigsaw", "relative_position") and not c.tile_size <= c.cell_size <= size // 3:
      raise ConfigError(f"ssl.tile_size={c.tile_size}, ssl.cell_size={c.cell_size}: a 3×3 grid of cells needs "
                        f"tile_size <= cell_size <= view_size // 3 = {size // 3}")

  @property
  def permutations(self):
    """Jigsaw's permutation set (objectives/pretext.py), built on first use."""
    return pretext_objectives.maximal_hamming_permutations(self.c.num_permutations)

  @property
  def rebalancing(self):
    """Colourisation's class-rebalancing weights over this config's training images."""
    return pretext.rebalancing(self)

  # ---------------------------------------------------------------- model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    name, kwargs = precision.model_kwargs(self.config)
    kwargs["num_classes"] = 0
    if self.c.bn_group_size:
      kwargs["bn_group_size"] = self.c.bn_group_size
    backbone2 = None
    if self.c.method == "cmc":  # one encoder per view; with Lab views L has 1 channel, ab 2
      in1, in2 = (1, 2) if self.c.lab_views else (None, None)
      backbone = models.create(name, rngs=rngs, **kwargs | ({"in_chans": in1} if in1 else {}))
      backbone2 = models.create(name, rngs=rngs, **kwargs | ({"in_chans": in2} if in2 else {}))
    else:
      backbone = models.create(name, rngs=rngs, **kwargs)
    return SSLModel(backbone, self.c, num_data=self.num_data, backbone2=backbone2, rngs=rngs)

  def _normalize(self, x):
    return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)

  def _lab_split(self, x):
    """CMC: RGB in [0, 1] → normalised Lab → (L, ab)."""
    lab = (views.rgb_to_lab(x) - jnp.asarray(views.LAB_MEAN)) / jnp.asarray(views.LAB_STD)
    return lab[..., :1], lab[..., 1:]

  def _cmc_views(self, images, key=None):
    """CMC's two views, normalised: the L and ab channels of one crop (`lab_views`), or two crops
    (key=None: evaluation, the whole image for both encoders)."""
    if key is None:
      return self._lab_split(images) if self.c.lab_views else (self._normalize(images),) * 2
    crops = views.make_views(images, key, self.recipes)
    return self._lab_split(crops[0]) if self.c.lab_views else tuple(self._normalize(v) for v in crops)

  # ---------------------------------------------------------------- loss
  def make_loss_fn(self, graphdef):
    loss_of = LOSSES[self.c.method]

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = batch["image"].astype(jnp.float32) / 255.0
      loss, metrics = loss_of(self, model, images, batch, rng)  # updates the model's state in place
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  # ---------------------------------------------------------------- compute accounting
  def forward_flops(self, model, *, count_padding: bool = True) -> float:
    """FLOPs per example of the training forward pass, counted on the traced loss function
    (models/conv_flops.py): the on-device views, every view through the online backbone and heads, the
    target / teacher encoder, and the loss's similarity matmuls (views, queues, banks, prototypes). The
    element-wise work is counted too: the views' augmentations are mostly that. Counted at the configured
    batch size and divided by it, since in-batch contrastive terms grow with the batch."""
    graphdef, params, model_state = split_model(model)
    b, size = self.config.batch_size, self.config.data.image_size
    batch = {"image": jax.ShapeDtypeStruct((b, size, size, len(self.mean)), jnp.uint8),
             "label": jax.ShapeDtypeStruct((b,), jnp.int32), "index": jax.ShapeDtypeStruct((b,), jnp.int32)}
    jaxpr = jax.make_jaxpr(self.make_loss_fn(graphdef))(params, model_state, batch, jax.random.key(0))
    return conv_flops.jaxpr_flops(jaxpr, count_padding, elementwise=True) / b

  def momentum(self, step):
    if self.c.momentum_schedule == "cosine":
      return memory.cosine_momentum(step, self.num_steps, self.c.momentum)
    return jnp.asarray(self.c.momentum, jnp.float32)

  @property
  def post_update(self):
    ema, counter = self.c.method in MOMENTUM_ENCODER, self.c.method in MULTI_CROP
    if not (ema or counter):
      return None

    def update(params, model_state, step):
      model_state = dict(model_state)
      if ema:  # parameters only: the target's BatchNorm statistics come from its own forward passes
        m = self.momentum(step)
        for name in ("backbone", "projector"):
          target = model_state[f"target_{name}"]
          averaged = optax.incremental_update(params[name], entries_like(target, params[name]), 1.0 - m)
          model_state[f"target_{name}"] = replace_entries(target, averaged)
      if counter:  # the next step's index (a step skipped as non-finite keeps the old state, counter included)
        model_state["iteration"] = (step + 1).astype(jnp.int32)
      return model_state
    return update

  # ---------------------------------------------------------------- evaluation
  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):  # the monitor is in after_eval; this keeps the loop's contract
      return {"count": batch["mask"].astype(jnp.float32).sum()}
    return eval_fn

  def feature_fn(self, trainer):
    """uint8 images → online backbone features (eval mode), jitted once per trainer; CMC: both
    encoders' features, concatenated."""
    if getattr(self, "_features_for", None) is not trainer:
      graphdef = trainer.graphdef

      def apply(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        x = images.astype(jnp.float32) / 255.0
        if self.c.method == "colorization":  # the encoder sees L only; grey images are their own L
          return features_lib.named(model.backbone, pretext.lightness(x)[0])
        if self.c.method == "cmc":
          x1, x2 = self._cmc_views(x)
          return jnp.concatenate([features_lib.named(model.backbone, x1), features_lib.named(model.backbone2, x2)],
                                 axis=-1)
        return features_lib.named(model.backbone, self._normalize(x))

      self._features_jit, self._features_for = jax.jit(apply), trainer
    state = trainer.state
    return lambda images: self._features_jit(state.params, state.model_state, images)

  def features(self, trainer):
    """(uint8 images → backbone features, the evaluation preprocessing): for `config.evals`' k-NN and
    linear probes (core/evals.py) and the monitor below."""
    return self.feature_fn(trainer), pipeline.image_preprocess("none", self.config.data.image_size, train=False)

  def after_eval(self, trainer, step, writer, source, metrics) -> dict:
    c = self.c
    apply, preprocess = self.features(trainer)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      train_x, train_y = features_lib.extract(apply, trainer.train_source, preprocess, batch_size=c.feature_batch,
                                              max_examples=c.knn_max_train or None)
      test_x, test_y = features_lib.extract(apply, source, preprocess, batch_size=c.feature_batch)
    out = knn_lib.knn_accuracy(train_x, train_y, test_x, test_y, ks=tuple(c.knn_k), temperature=c.knn_temperature)
    normalized = test_x / np.maximum(np.linalg.norm(test_x, axis=1, keepdims=True), 1e-12)
    std = out["feature_std"] = float(normalized.std(axis=0).mean())
    # Random-init features are far from isotropic, so compare with the first evaluation's spread.
    self.first_feature_std = getattr(self, "first_feature_std", None) or std
    if std < 0.1 * self.first_feature_std:
      log.warning("step %d: the backbone's normalised features have per-dimension std %.2e, under a tenth of "
                  "the first evaluation's %.2e: the representation is collapsing", step, std, self.first_feature_std)
    return out
