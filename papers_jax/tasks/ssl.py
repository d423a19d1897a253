"""Self-supervised pre-training (`config.task = "ssl"`): SimCLR, MoCo v1/v2/v3, BYOL and SimSiam
on one backbone (any registered model built with num_classes=0), one view pipeline and one k-NN
monitor, so the methods compare on equal terms.

| method  | views     | online                          | target                       | loss                      |
|---------|-----------|---------------------------------|------------------------------|---------------------------|
| simclr  | 2         | backbone → projector            | —                            | NT-Xent, global batch     |
| moco_v1 | 2         | backbone → projector            | momentum encoder, queue      | InfoNCE vs queue          |
| moco_v2 | 2         | backbone → MLP projector        | momentum encoder, queue      | InfoNCE vs queue          |
| moco_v3 | 2         | backbone → projector → predictor| momentum encoder (cosine m)  | symmetric in-batch InfoNCE|
| byol    | 2 (asym.) | backbone → projector → predictor| momentum encoder (cosine m)  | symmetric normalised MSE  |
| simsiam | 2         | backbone → projector → predictor| stop-gradient of the online  | symmetric −cos            |

Views are made on device (data/views.py) from uint8 images. The momentum encoder's weights are
`EMA` variables in the model state, initialised equal to the online weights and updated after
each optimizer step (`post_update`); MoCo's queue and its pointer are model state too, so all of
it is sharded, checkpointed and restored like any other state. The target's BatchNorm runs on
batch statistics (train mode), as in the papers; its running statistics are not used.

`after_eval` runs the k-NN monitor (k-NN of the online backbone's features, train → eval split)
and reports the per-dimension standard deviation of the L2-normalised projections
(`embedding_std` in the train metrics) and of the backbone's features (`eval/feature_std`), with a
warning when the latter falls under a tenth of its first value (a collapsing representation).
"""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax import models
from papers_jax.core import sharding
from papers_jax.core.state import merge_model
from papers_jax.data import pipeline, views
from papers_jax.errors import ConfigError
from papers_jax.evaluators import features as features_lib
from papers_jax.evaluators import knn as knn_lib
from papers_jax.nn.linear import Dense
from papers_jax.nn.norms import BatchNorm
from papers_jax.objectives import contrastive, memory, self_distill

log = logging.getLogger(__name__)

METHODS = ("simclr", "moco_v1", "moco_v2", "moco_v3", "byol", "simsiam")
MOMENTUM_ENCODER = ("moco_v1", "moco_v2", "moco_v3", "byol")
PREDICTOR = ("moco_v3", "byol", "simsiam")
QUEUE = ("moco_v1", "moco_v2")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ssl`: the fields this task reads (each method's config sets the paper's values)."""
  return ml_collections.ConfigDict(dict(
      method="simclr", views="simclr", view_size=224, crop_scale=(),
      projector_layers=2, projector_hidden=2048, projector_dim=128, projector_bn=True, projector_last_bn=False,
      predictor_hidden=0, temperature=0.1, queue_size=65536, momentum=0.999, momentum_schedule="constant",
      bn_group_size=0, knn_k=(20, 200), knn_temperature=0.07, knn_max_train=0, feature_batch=256)
      | overrides)


class EMA(nnx.Variable):
  """Weights of the momentum encoder: they follow the online weights by EMA, never by gradient."""


class QueueState(nnx.Variable):
  """MoCo's dictionary of earlier keys and its pointer."""


def _as_ema(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into an EMA variable with the same value and metadata."""
  for _, node in list(nnx.iter_graph(module)):
    if isinstance(node, nnx.Module):
      for name, value in list(vars(node).items()):
        if isinstance(value, nnx.Param):
          setattr(node, name, EMA(value[...], **value.get_metadata()))
  return module


class MLPHead(nnx.Module):
  """(Linear → BatchNorm → ReLU) × (layers − 1) → Linear [→ BatchNorm]: the projector/predictor
  MLPs of SimCLR, MoCo v2/v3, BYOL and SimSiam (`layers=1`: MoCo v1's linear projection)."""

  def __init__(self, in_dim: int, hidden: int, out_dim: int, *, layers: int = 2, bn: bool = True,
               last_bn: bool = False, last_bn_affine: bool = False, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    self.linears = nnx.List([Dense(a, b, axes=("embed", "mlp") if i < layers - 1 else ("mlp", "embed"),
                                   use_bias=not bn, rngs=rngs) for i, (a, b) in enumerate(zip(dims, dims[1:]))])
    self.norms = nnx.List([BatchNorm(hidden, rngs=rngs) for _ in range(layers - 1)] if bn else [])
    self.last_norm = (BatchNorm(out_dim, use_scale=last_bn_affine, use_bias=last_bn_affine, rngs=rngs)
                      if last_bn else None)

  def __call__(self, x, *, train: bool):
    for i, linear in enumerate(self.linears):
      x = linear(x)
      if i < len(self.linears) - 1:
        x = jax.nn.relu(self.norms[i](x, train=train) if len(self.norms) else x)
    if self.last_norm is not None:
      x = self.last_norm(x, train=train)
    return x


class SSLModel(nnx.Module):
  """Online backbone + projector (+ predictor); momentum encoder and queue when the method has them."""

  def __init__(self, backbone: nnx.Module, c, *, rngs: nnx.Rngs):
    method = c.method
    self.backbone = backbone
    width = getattr(backbone, "num_features", None) or backbone.embed_dim
    self.projector = MLPHead(width, c.projector_hidden, c.projector_dim, layers=c.projector_layers,
                             bn=c.projector_bn, last_bn=c.projector_last_bn, rngs=rngs)
    self.predictor = (MLPHead(c.projector_dim, c.predictor_hidden, c.projector_dim, layers=2, rngs=rngs)
                      if method in PREDICTOR else None)
    if method in MOMENTUM_ENCODER:  # initialised equal to the online encoder
      self.target_backbone = _as_ema(nnx.clone(self.backbone))
      self.target_projector = _as_ema(nnx.clone(self.projector))
    else:
      self.target_backbone = self.target_projector = None
    if method in QUEUE:
      queue, pointer = memory.init_queue(rngs.params(), c.queue_size, c.projector_dim)
      self.queue, self.queue_pointer = QueueState(queue), QueueState(pointer)
    else:
      self.queue = self.queue_pointer = None

  def embed(self, x, *, train: bool, rngs=None):
    return self.projector(self.backbone(x, train=train, rngs=rngs), train=train)

  def embed_target(self, x):
    return jax.lax.stop_gradient(self.target_projector(self.target_backbone(x, train=True), train=True))


class SSLTask:

  def __init__(self, config):
    self.config = config
    self.c = config.ssl
    if self.c.method not in METHODS:
      raise ConfigError(f"ssl.method={self.c.method!r}; choose one of {METHODS}")
    if self.c.method in QUEUE and self.c.queue_size % config.batch_size and config.batch_size < self.c.queue_size:
      log.info("queue_size %d is not a multiple of the batch %d: the queue wraps with a scatter update",
               self.c.queue_size, config.batch_size)
    self.mean, self.std = tuple(config.data.mean), tuple(config.data.std)
    self.recipes = getattr(views, self.c.views)(self.c.view_size)
    if self.c.crop_scale:  # small images: milder crops than the ImageNet recipe's
      self.recipes = [dataclasses.replace(r, scale=tuple(self.c.crop_scale)) for r in self.recipes]
    self.num_steps = 0  # set by the trainer; the cosine momentum schedule needs it

  # ---------------------------------------------------------------- model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
    kwargs["num_classes"] = 0
    if self.c.bn_group_size:
      kwargs["bn_group_size"] = self.c.bn_group_size
    return SSLModel(models.create(name, rngs=rngs, **kwargs), self.c, rngs=rngs)

  def _normalize(self, x):
    return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)

  # ---------------------------------------------------------------- loss
  def make_loss_fn(self, graphdef):
    c = self.c

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      k_views, k_drop = jax.random.split(rng)
      images = batch["image"].astype(jnp.float32) / 255.0
      v1, v2 = [self._normalize(v) for v in views.make_views(images, k_views, self.recipes)]
      drop = nnx.Rngs(dropout=k_drop)
      z1, z2 = model.embed(v1, train=True, rngs=drop), model.embed(v2, train=True, rngs=drop)
      metrics = {}
      if c.method == "simclr":
        loss = contrastive.nt_xent(z1, z2, c.temperature).mean()
      elif c.method in QUEUE:
        k2 = model.embed_target(v2)
        loss = contrastive.info_nce(z1, k2, model.queue[...], c.temperature).mean()
        model.queue[...], model.queue_pointer[...] = memory.enqueue(
            model.queue[...], model.queue_pointer[...], contrastive.l2_normalize(k2))
      elif c.method == "moco_v3":
        q1, q2 = model.predictor(z1, train=True), model.predictor(z2, train=True)
        loss = contrastive.moco_v3_loss(q1, q2, model.embed_target(v1), model.embed_target(v2), c.temperature).mean()
      elif c.method == "byol":
        p1, p2 = model.predictor(z1, train=True), model.predictor(z2, train=True)
        loss = self_distill.byol_loss(p1, p2, model.embed_target(v1), model.embed_target(v2)).mean()
      else:  # simsiam
        p1, p2 = model.predictor(z1, train=True), model.predictor(z2, train=True)
        loss = self_distill.simsiam_loss(p1, p2, z1, z2).mean()
      metrics["embedding_std"] = jnp.std(contrastive.l2_normalize(z1), axis=0).mean()
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  def momentum(self, step):
    if self.c.momentum_schedule == "cosine":
      return memory.cosine_momentum(step, self.num_steps, self.c.momentum)
    return jnp.asarray(self.c.momentum, jnp.float32)

  @property
  def post_update(self):
    if self.c.method not in MOMENTUM_ENCODER:
      return None

    def update(params, model_state, step):
      m = self.momentum(step)
      return {**model_state,
              "target_backbone": _ema_into(model_state["target_backbone"], params["backbone"], m),
              "target_projector": _ema_into(model_state["target_projector"], params["projector"], m)}
    return update

  # ---------------------------------------------------------------- evaluation
  def make_eval_fn(self, graphdef):
    def eval_fn(params, model_state, batch):  # the monitor is in after_eval; this keeps the loop's contract
      return {"count": batch["mask"].astype(jnp.float32).sum()}
    return eval_fn

  def feature_fn(self, trainer):
    """uint8 images → online backbone features (eval mode), jitted once per trainer."""
    if getattr(self, "_features_for", None) is not trainer:
      graphdef = trainer.graphdef

      def apply(params, model_state, images):
        model = merge_model(graphdef, params, model_state)
        x = self._normalize(images.astype(jnp.float32) / 255.0)
        return model.backbone(x, train=False)

      self._features_jit, self._features_for = jax.jit(apply), trainer
    state = trainer.state
    return lambda images: self._features_jit(state.params, state.model_state, images)

  def after_eval(self, trainer, step, writer) -> dict:
    c = self.c
    d = self.config.data
    preprocess = pipeline.image_preprocess("none", d.image_size, train=False)
    apply = self.feature_fn(trainer)
    with sharding.use_mesh(trainer.mesh, trainer.rules):
      train_x, train_y = features_lib.extract(apply, trainer.train_source, preprocess, batch_size=c.feature_batch,
                                              max_examples=c.knn_max_train or None)
      test_x, test_y = features_lib.extract(apply, trainer.eval_source, preprocess, batch_size=c.feature_batch)
    out = {f"eval/{k}": v for k, v in knn_lib.knn_accuracy(
        train_x, train_y, test_x, test_y, ks=tuple(c.knn_k), temperature=c.knn_temperature).items()}
    normalized = test_x / np.maximum(np.linalg.norm(test_x, axis=1, keepdims=True), 1e-12)
    std = out["eval/feature_std"] = float(normalized.std(axis=0).mean())
    # Random-init features are far from isotropic, so compare with the first evaluation's spread.
    self.first_feature_std = getattr(self, "first_feature_std", None) or std
    if std < 0.1 * self.first_feature_std:
      log.warning("step %d: the backbone's normalised features have per-dimension std %.2e, under a tenth of "
                  "the first evaluation's %.2e: the representation is collapsing", step, std, self.first_feature_std)
    return out


def _ema_into(target: dict, online: dict, momentum):
  """EMA of the online params into the target's matching entries; the target's other state
  (BatchNorm statistics) is kept."""
  if not isinstance(target, dict):
    return momentum * target + (1.0 - momentum) * online
  return {k: _ema_into(v, online[k], momentum) if k in online else v for k, v in target.items()}


# ------------------------------------------------------------------------ recipes
def recipe(method: str, arg=None, **paper):
  """The config of `configs/ssl/<method>.py`: the paper's ImageNet recipe (`paper` sets it), or
  with `digits` a bundled-data demo of a few CPU minutes, and with `smoke` a seconds-long run.

  Demo: the small ViT of configs/vit/digits.py (width 64, depth 4, 4×4 patches, average pooling) on
  the 16×16-upsampled digits, views with milder crops (scale 0.4–1: an 8% crop of an 8×8 digit shows
  nothing), k-NN monitor on the 360 held-out digits. (XLA's CPU convolutions made a ResNet-18 of
  width 16 take 4.5 s per step here, against a fraction of a second for the ViT.)
  """
  from papers_jax.core.config import base_config, parse_arg
  args = parse_arg(arg, digits=False, smoke=False)
  c = base_config()
  c.task = "ssl"
  c.ssl = default_config(method=method)
  c.model = dict(name="resnet50")
  c.data.name = "tfds:imagenet2012"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.image_size = 224
  c.data.augment = "inception"   # the host crops to 224 at random; the views are made on device
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  c.optimizer.wd_exclude = (r"(^|/)bias$", r"(^|/)scale$")
  for key, value in paper.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  if args.digits or args.smoke:
    c.model = dict(name="vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=4,
                   num_heads=4, mlp_ratio=2.0, global_pool="avg")
    c.data.name = "digits"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 16
    c.data.augment = "none"
    c.data.mean, c.data.std = (0.5,), (0.5,)
    c.ssl.view_size = 16
    c.ssl.crop_scale = (0.4, 1.0)
    c.ssl.queue_size = 4096
    c.ssl.projector_hidden = min(c.ssl.projector_hidden, 256)
    c.ssl.projector_dim = min(c.ssl.projector_dim, 64)
    c.ssl.predictor_hidden = min(c.ssl.predictor_hidden, 256)
    c.ssl.knn_k = (20,)
    c.batch_size = 256
    c.num_steps, c.num_epochs = 300, 0.0
    c.schedule.warmup_steps = 20
    c.log_every, c.eval_every, c.checkpoint_every = 50, 100, 100
    c.mesh.data = -1
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    c.ssl.queue_size = 128
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
