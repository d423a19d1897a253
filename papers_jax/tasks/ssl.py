"""Self-supervised pre-training (`config.task = "ssl"`): SimCLR, MoCo v1/v2/v3, BYOL, SimSiam,
SwAV, DINO, InstDisc and CMC on one backbone (any registered model built with num_classes=0), one
view pipeline and one k-NN monitor, so the methods compare on equal terms.

| method   | views              | online                            | target / state                    | loss                         |
|----------|--------------------|-----------------------------------|-----------------------------------|------------------------------|
| simclr   | 2                  | backbone → projector              | —                                 | NT-Xent, global batch        |
| moco_v1  | 2                  | backbone → projector              | momentum encoder, queue           | InfoNCE vs queue             |
| moco_v2  | 2                  | backbone → MLP projector          | momentum encoder, queue           | InfoNCE vs queue             |
| moco_v3  | 2                  | backbone → projector → predictor  | momentum encoder (cosine m)       | symmetric in-batch InfoNCE   |
| byol     | 2 (asym.)          | backbone → projector → predictor  | momentum encoder (cosine m)       | symmetric normalised MSE     |
| simsiam  | 2                  | backbone → projector → predictor  | stop-gradient of the online       | symmetric −cos               |
| swav     | 2 global + N local | backbone → MLP → L2 → prototypes  | optional queue of projections     | swapped prediction, Sinkhorn |
| dino     | 2 global + N local | backbone → DINO head (K outputs)  | EMA teacher (cosine m), centre    | centred, sharpened CE        |
| instdisc | 1                  | backbone → linear 128 → L2        | memory bank (N × 128), NCE Z      | NCE vs m bank draws          |
| cmc      | L / ab (or 2 crops)| 2 encoders → linear 128 → L2      | 2 memory banks, 2 NCE Z           | NCE across views' banks      |

Views are made on device (data/views.py) from uint8 images. The momentum encoder's weights are
`EMA` variables in the model state, initialised equal to the online weights and updated after
each optimizer step (`post_update`); MoCo's and SwAV's queues, DINO's centre, the memory banks,
the NCE normalisers and the step counter are model state too, so all of it is sharded,
checkpointed and restored like any other state. The target's BatchNorm runs on batch statistics
(train mode), as in the papers; its running statistics are not used. Targets are built without
dropout / stochastic depth (DINO's teacher has no drop-path).

Multi-crop (SwAV, DINO): crops of one size go through the backbone in one call (BatchNorm
statistics per resolution, as the references), the head runs once on all crops. A ViT built for
the global size sees the local crops through a weight-sharing view of itself with resampled
position embeddings (DINO's `interpolate_pos_encoding`); ResNets pool globally and take any size.

SwAV's prototypes and DINO's last layer are `WeightNormDense`: the columns are normalised at use
(weight normalisation with the gain fixed to 1). The SwAV paper renormalises the prototype
weights after every update instead; here `post_update` may only write model state, not params,
so the normalisation happens at use: the scores always see unit prototypes, and the update
differs from the paper's only in the gradient being projected onto the sphere (first order the
same step). The raw prototypes start at unit norm, the paper's state after its first
normalisation. Both are frozen (no gradient) for `freeze_last_layer_steps` steps.

InstDisc / CMC read each example's dataset index (`batch["index"]`, from data/pipeline.py) and
keep a bank row per training example, scattered at those indices after the loss used the old
rows (lemniscate / CMC's order). The bank is replicated over the mesh (N × 128 floats: 655 MB for
ImageNet); the scatter works on global arrays, so it is correct for any batch size and mesh.

`after_eval` runs the k-NN monitor (k-NN of the online backbone's features, train → eval split;
CMC: both encoders' features concatenated, as its linear evaluation), with `ssl.linear_probe`
also a linear probe on the same frozen features (`eval/linear_top1`), and reports the
per-dimension standard deviation of the L2-normalised projections (`embedding_std` in the train
metrics) and of the backbone's features (`eval/feature_std`), with a warning when the latter
falls under a tenth of its first value (a collapsing representation). DINO also logs the
teacher's entropy, the teacher→student KL and the centre's norm: collapse to one dimension drives
both entropy and KL to 0, collapse to the uniform distribution drives the entropy to log K.
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
from papers_jax.data.sources import get_source
from papers_jax.errors import ConfigError
from papers_jax.evaluators import features as features_lib
from papers_jax.evaluators import knn as knn_lib
from papers_jax.evaluators import linear_probe as linear_probe_lib
from papers_jax.nn.drop import Dropout
from papers_jax.nn.embed import resample_pos_embed
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import gelu
from papers_jax.nn.norms import BatchNorm
from papers_jax.objectives import contrastive, memory, self_distill

log = logging.getLogger(__name__)

METHODS = ("simclr", "moco_v1", "moco_v2", "moco_v3", "byol", "simsiam", "swav", "dino", "instdisc", "cmc")
MOMENTUM_ENCODER = ("moco_v1", "moco_v2", "moco_v3", "byol", "dino")
PREDICTOR = ("moco_v3", "byol", "simsiam")
QUEUE = ("moco_v1", "moco_v2")
MULTI_CROP = ("swav", "dino")
MEMORY_BANK = ("instdisc", "cmc")
MULTI_CROP_VIEWS = ("multi_crop", "swav_multi_crop")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.ssl`: the fields this task reads (each method's config sets the paper's values).

  Multi-crop: `views` = multi_crop (DINO) or swav_multi_crop with `view_size` global crops of
  `global_crop_scale` and `num_local_views` crops of `local_view_size` px and `local_crop_scale`.
  SwAV: `num_prototypes`, `sinkhorn_*`, `queue_size` (0: none) filled from `queue_start_steps`.
  DINO: `num_prototypes` is the head's K; `temperature` the student's; the teacher's rises
  linearly from `warmup_teacher_temperature` to `teacher_temperature` over
  `warmup_teacher_temperature_steps`; `center_momentum`; `norm_last_layer` fixes the last layer's
  gain to 1. Both: `freeze_last_layer_steps` (SwAV's freeze_prototypes_niters). InstDisc / CMC:
  `nce_negatives` uniform bank draws per example, `bank_momentum`, `bank_size` (rows; 0: the train
  split's size, read from the source, which must then exist); CMC: `lab_views` (the L and ab
  channels of one crop, else two crops of the same image, one per encoder).
  `color_jitter` (brightness, contrast, saturation, hue), when set, replaces the jitter strengths of
  every view (small images: the SimCLR code's `color_jitter_strength` for CIFAR is 0.5, not 1).
  """
  return ml_collections.ConfigDict(dict(
      method="simclr", views="simclr", view_size=224, crop_scale=(), color_jitter=(),
      num_local_views=0, local_view_size=96, global_crop_scale=(0.4, 1.0), local_crop_scale=(0.05, 0.4),
      projector_layers=2, projector_hidden=2048, projector_dim=128, projector_bn=True, projector_last_bn=False,
      predictor_hidden=0, temperature=0.1, queue_size=65536, momentum=0.999, momentum_schedule="constant",
      num_prototypes=3000, sinkhorn_epsilon=0.05, sinkhorn_iterations=3, queue_start_steps=0,
      freeze_last_layer_steps=0, teacher_temperature=0.04, warmup_teacher_temperature=0.04,
      warmup_teacher_temperature_steps=0, center_momentum=0.9, norm_last_layer=True,
      nce_negatives=4096, bank_momentum=0.5, bank_size=0, lab_views=False,
      bn_group_size=0, knn_k=(20, 200), knn_temperature=0.07, knn_max_train=0, feature_batch=256,
      linear_probe=False)
      | overrides)


class EMA(nnx.Variable):
  """Weights of the momentum encoder: they follow the online weights by EMA, never by gradient."""


class QueueState(nnx.Variable):
  """MoCo's dictionary of earlier keys and its pointer; SwAV's queue of earlier projections."""


class MemoryBank(nnx.Variable):
  """InstDisc / CMC: one L2-normalised 128-d row per training example."""


class SSLState(nnx.Variable):
  """Other state the objective carries: DINO's centre, the NCE normalisers, the step counter."""


def _as_ema(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into an EMA variable with the same value and metadata, and
  switches its dropout / stochastic depth off (targets are deterministic functions of the input)."""
  for _, node in list(nnx.iter_graph(module)):
    if isinstance(node, Dropout):
      node.rate = 0.0
    if isinstance(node, nnx.Module):
      for name, value in list(vars(node).items()):
        if isinstance(value, nnx.Param):
          setattr(node, name, EMA(value[...], **value.get_metadata()))
  return module


class MLPHead(nnx.Module):
  """(Linear → BatchNorm → ReLU) × (layers − 1) → Linear [→ BatchNorm]: the projector/predictor
  MLPs of SimCLR, MoCo v2/v3, BYOL, SimSiam and SwAV (`layers=1`: MoCo v1's / InstDisc's linear
  projection)."""

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


def _torch_linear_init(key, shape, dtype=jnp.float32):
  """nn.Linear's default weight init, U(±1/√fan_in), for an (in, out) kernel."""
  bound = 1.0 / np.sqrt(shape[0])
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def _unit_columns_init(key, shape, dtype=jnp.float32):
  """nn.Linear's init with every output unit's weight vector scaled to norm 1 (SwAV's prototypes
  after the first normalisation)."""
  return contrastive.l2_normalize(_torch_linear_init(key, shape), axis=0).astype(dtype)


class WeightNormDense(nnx.Module):
  """y = x · (v / ‖v‖)·g without bias, each output unit's weight vector normalised at use
  (`torch.nn.utils.weight_norm(nn.Linear(in, out, bias=False))`). `fixed_scale`: no gain
  parameter, g ≡ 1 (DINO's `norm_last_layer`; SwAV's unit-norm prototypes)."""

  def __init__(self, in_dim: int, out_dim: int, *, fixed_scale: bool = True, kernel_init=_torch_linear_init,
               rngs: nnx.Rngs):
    self.kernel = param(rngs, kernel_init, (in_dim, out_dim), jnp.float32, ("embed", "vocab"))
    self.scale = None if fixed_scale else param(rngs, nnx.initializers.ones, (out_dim,), jnp.float32, ("vocab",))

  def weight(self, frozen=False):
    """The effective (in, out) weight; `frozen` (a traced bool) stops its gradient."""
    v, g = self.kernel[...], None if self.scale is None else self.scale[...]
    if frozen is not False:  # SwAV's freeze_prototypes_niters / DINO's freeze_last_layer
      v = jnp.where(frozen, jax.lax.stop_gradient(v), v)
      g = None if g is None else jnp.where(frozen, jax.lax.stop_gradient(g), g)
    w = contrastive.l2_normalize(v, axis=0)
    return w if g is None else w * g

  def __call__(self, x, *, frozen=False):
    return x.astype(jnp.float32) @ self.weight(frozen)


class DINOHead(nnx.Module):
  """DINO's head: (Linear [→ BatchNorm] → GELU) × (layers − 1) → Linear to the bottleneck,
  L2-normalise, then a weight-normalised Linear to K outputs. Linear weights trunc-normal(0.02),
  biases 0, as the reference's `_init_weights`; the last layer keeps nn.Linear's default init.
  `bn`: the reference's `use_bn_in_head` (off by default)."""

  def __init__(self, in_dim: int, hidden: int, bottleneck: int, out_dim: int, *, layers: int = 3,
               bn: bool = False, norm_last_layer: bool = True, rngs: nnx.Rngs):
    dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
    init = nnx.initializers.truncated_normal(0.02)
    self.linears = nnx.List([Dense(a, b, axes=("embed", "mlp") if i < layers - 1 else ("mlp", "embed"),
                                   kernel_init=init, rngs=rngs) for i, (a, b) in enumerate(zip(dims, dims[1:]))])
    self.norms = nnx.List([BatchNorm(hidden, rngs=rngs) for _ in range(layers - 1)] if bn else [])
    self.last_layer = WeightNormDense(bottleneck, out_dim, fixed_scale=norm_last_layer, rngs=rngs)

  def __call__(self, x, *, train: bool, freeze_last_layer=False):
    for i, linear in enumerate(self.linears):
      x = linear(x)
      if i < len(self.linears) - 1:
        x = self.norms[i](x, train=train) if len(self.norms) else x
        x = gelu(x)  # torch's nn.GELU
    return self.last_layer(contrastive.l2_normalize(x), frozen=freeze_last_layer)


def _backbone_width(backbone) -> int:
  return getattr(backbone, "num_features", None) or backbone.embed_dim


def _init_bank(key, num_data: int, dim: int):
  """lemniscate / CMC's init: U(±1/√(dim/3)) per entry, so rows have expected squared norm 1
  (they are not normalised until their first update)."""
  bound = 1.0 / np.sqrt(dim / 3)
  return jax.random.uniform(key, (num_data, dim), jnp.float32, -bound, bound)


class SSLModel(nnx.Module):
  """Online backbone + projector (+ predictor / prototypes / second encoder); the target encoder,
  queue, centre and memory banks when the method has them."""

  def __init__(self, backbone: nnx.Module, c, *, num_data: int = 0, backbone2: nnx.Module | None = None,
               rngs: nnx.Rngs):
    method = c.method
    self.backbone = backbone
    width = _backbone_width(backbone)
    if method == "dino":
      self.projector = DINOHead(width, c.projector_hidden, c.projector_dim, c.num_prototypes,
                                layers=c.projector_layers, bn=c.projector_bn, norm_last_layer=c.norm_last_layer,
                                rngs=rngs)
    else:
      self.projector = MLPHead(width, c.projector_hidden, c.projector_dim, layers=c.projector_layers,
                               bn=c.projector_bn, last_bn=c.projector_last_bn, rngs=rngs)
    self.predictor = (MLPHead(c.projector_dim, c.predictor_hidden, c.projector_dim, layers=2, rngs=rngs)
                      if method in PREDICTOR else None)
    self.prototypes = (WeightNormDense(c.projector_dim, c.num_prototypes, kernel_init=_unit_columns_init, rngs=rngs)
                       if method == "swav" else None)
    # CMC: the second view's encoder and projection.
    self.backbone2 = backbone2
    self.projector2 = (MLPHead(_backbone_width(backbone2), c.projector_hidden, c.projector_dim,
                               layers=c.projector_layers, bn=c.projector_bn, last_bn=c.projector_last_bn, rngs=rngs)
                       if backbone2 is not None else None)
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
    # SwAV: the last queue_size projections of the two global crops, newest first; zeros = not yet filled.
    self.swav_queue = (QueueState(jnp.zeros((2, c.queue_size, c.projector_dim), jnp.float32))
                       if method == "swav" and c.queue_size else None)
    self.center = SSLState(jnp.zeros((c.num_prototypes,), jnp.float32)) if method == "dino" else None
    # The optimizer step, for schedules inside the loss (freezing, temperature warm-up, queue start).
    self.iteration = SSLState(jnp.zeros((), jnp.int32)) if method in MULTI_CROP else None
    if method in MEMORY_BANK:
      self.bank = MemoryBank(_init_bank(rngs.params(), num_data, c.projector_dim))
      self.bank2 = MemoryBank(_init_bank(rngs.params(), num_data, c.projector_dim)) if method == "cmc" else None
      # Z of each NCE term, estimated on the first batch and then fixed; 0 = not yet estimated.
      self.nce_normalizer = SSLState(jnp.zeros((2 if method == "cmc" else 1,), jnp.float32))
    else:
      self.bank = self.bank2 = self.nce_normalizer = None

  def embed(self, x, *, train: bool, rngs=None):
    return self.projector(self.backbone(x, train=train, rngs=rngs), train=train)

  def embed_target(self, x):
    return jax.lax.stop_gradient(self.target_projector(self.target_backbone(x, train=True), train=True))


def _backbone_at(backbone: nnx.Module, size: int) -> nnx.Module:
  """`backbone` for size × size inputs. A ViT built for another size becomes a clone that shares
  its weights (the clone's arrays are the same traced values, so gradients reach the original)
  with the position embeddings resampled bicubically to the new grid: DINO's
  `interpolate_pos_encoding`. Backbones without patch embeddings pool globally and take any size."""
  patch_embed = getattr(backbone, "patch_embed", None)
  if patch_embed is None or tuple(patch_embed.img_size) == (size, size):
    return backbone
  ph, pw = patch_embed.patch_size
  if size % ph or size % pw:
    raise ConfigError(f"crops of {size} px are not divisible by the ViT's {ph}×{pw} patches")
  view = nnx.clone(backbone)
  old_grid, new_grid = patch_embed.grid_size, (size // ph, size // pw)
  view.patch_embed.img_size, view.patch_embed.grid_size = (size, size), new_grid
  view.patch_embed.num_patches = new_grid[0] * new_grid[1]
  if backbone.pos_embed is not None:
    view.pos_embed = nnx.Param(resample_pos_embed(backbone.pos_embed[...], new_grid, old_grid,
                                                  backbone.num_prefix_tokens))
  return view


def encode_crops(backbone, head, crops, *, train: bool = True, rngs=None):
  """(V, B, D) head outputs of V crops (each (B, H, W, C)). Consecutive crops of one size go
  through the backbone in one call, stacked example-major ((B, n) → B·n rows) so that the batch
  sharding carries over without communication; the head runs once on every crop's features."""
  feats, i = [], 0
  while i < len(crops):
    j = i
    while j < len(crops) and crops[j].shape == crops[i].shape:
      j += 1
    x = jnp.stack(crops[i:j], axis=1)
    b, n = x.shape[:2]
    out = _backbone_at(backbone, x.shape[2])(x.reshape((b * n,) + x.shape[2:]), train=train, rngs=rngs)
    feats.append(out.reshape(b, n, -1))
    i = j
  feats = jnp.concatenate(feats, axis=1)
  b, v = feats.shape[:2]
  return head(feats.reshape(b * v, -1)).reshape(b, v, -1).swapaxes(0, 1)


class SSLTask:

  def __init__(self, config):
    self.config = config
    c = self.c = config.ssl
    if c.method not in METHODS:
      raise ConfigError(f"ssl.method={c.method!r}; choose one of {METHODS}")
    if c.method in QUEUE and c.queue_size % config.batch_size and config.batch_size < c.queue_size:
      log.info("queue_size %d is not a multiple of the batch %d: the queue wraps with a scatter update",
               c.queue_size, config.batch_size)
    self.mean, self.std = tuple(config.data.mean), tuple(config.data.std)
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

  # ---------------------------------------------------------------- model
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    kwargs = dict(self.config.model)
    name = kwargs.pop("name")
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

  # ---------------------------------------------------------------- loss
  def make_loss_fn(self, graphdef):
    losses = {"swav": self._swav_loss, "dino": self._dino_loss, "instdisc": self._instdisc_loss,
              "cmc": self._cmc_loss}
    loss_of = losses.get(self.c.method, self._two_view_loss)

    def loss_fn(params, model_state, batch, rng):
      model = merge_model(graphdef, params, model_state)
      images = batch["image"].astype(jnp.float32) / 255.0
      loss, metrics = loss_of(model, images, batch, rng)  # updates the model's state in place
      new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
      return loss, (metrics, new_model_state)

    return loss_fn

  def _two_view_loss(self, model, images, batch, rng):
    """SimCLR, MoCo v1/v2/v3, BYOL, SimSiam."""
    c = self.c
    k_views, k_drop = jax.random.split(rng)
    v1, v2 = [self._normalize(v) for v in views.make_views(images, k_views, self.recipes)]
    drop = nnx.Rngs(dropout=k_drop)
    z1, z2 = model.embed(v1, train=True, rngs=drop), model.embed(v2, train=True, rngs=drop)
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
    return loss, {"embedding_std": jnp.std(contrastive.l2_normalize(z1), axis=0).mean()}

  def _swav_loss(self, model, images, batch, rng):
    """SwAV: codes of the two global crops (Sinkhorn over the global batch, with the queue once it
    is full) predicted from every other crop's softmax over the prototypes."""
    c = self.c
    k_views, k_drop = jax.random.split(rng)
    crops = [self._normalize(v) for v in views.make_views(images, k_views, self.recipes)]
    frozen = model.iteration[...] < c.freeze_last_layer_steps
    z = encode_crops(model.backbone, lambda f: contrastive.l2_normalize(model.projector(f, train=True)), crops,
                     rngs=nnx.Rngs(dropout=k_drop))  # (V, B, D), unit rows
    prototypes = model.prototypes.weight(frozen)  # (D, K), unit columns
    scores = z @ prototypes
    kwargs = dict(temperature=c.temperature, epsilon=c.sinkhorn_epsilon, iterations=c.sinkhorn_iterations,
                  crops_for_assign=(0, 1))
    metrics = {"embedding_std": jnp.std(z[0], axis=0).mean()}
    if model.swav_queue is None:
      loss = self_distill.swav_loss(scores, **kwargs).mean()
    else:
      queue = model.swav_queue[...]
      full = jnp.all(jnp.any(queue[:, -1] != 0, axis=-1))  # the reference uses it once its last row is filled
      queue_scores = queue @ jax.lax.stop_gradient(prototypes)
      loss = jax.lax.cond(full, lambda: self_distill.swav_loss(scores, queue_scores=queue_scores, **kwargs).mean(),
                          lambda: self_distill.swav_loss(scores, **kwargs).mean())
      shifted = jnp.concatenate([jax.lax.stop_gradient(z[:2]), queue], axis=1)[:, :queue.shape[1]]
      model.swav_queue[...] = jnp.where(model.iteration[...] >= c.queue_start_steps, shifted, queue)
      metrics["queue_in_use"] = full.astype(jnp.float32)
    return loss, metrics

  def teacher_temperature(self, iteration):
    """DINO: linear warm-up from `warmup_teacher_temperature` to `teacher_temperature`."""
    c = self.c
    if not c.warmup_teacher_temperature_steps:
      return jnp.asarray(c.teacher_temperature, jnp.float32)
    progress = jnp.clip(jnp.asarray(iteration, jnp.float32) / c.warmup_teacher_temperature_steps, 0.0, 1.0)
    return c.warmup_teacher_temperature + progress * (c.teacher_temperature - c.warmup_teacher_temperature)

  def _dino_loss(self, model, images, batch, rng):
    """DINO: the EMA teacher sees the 2 global crops, the student every crop; the teacher's
    outputs are centred and sharpened (a low temperature lowers their entropy)."""
    c = self.c
    k_views, k_drop = jax.random.split(rng)
    crops = [self._normalize(v) for v in views.make_views(images, k_views, self.recipes)]
    iteration = model.iteration[...]
    frozen = iteration < c.freeze_last_layer_steps
    student = encode_crops(model.backbone, lambda f: model.projector(f, train=True, freeze_last_layer=frozen),
                           crops, rngs=nnx.Rngs(dropout=k_drop))
    teacher = jax.lax.stop_gradient(
        encode_crops(model.target_backbone, lambda f: model.target_projector(f, train=True), crops[:2]))
    center, tau = model.center[...], self.teacher_temperature(iteration)
    loss = self_distill.dino_loss(student, teacher, center, student_temperature=c.temperature,
                                  teacher_temperature=tau).mean()
    model.center[...] = self_distill.update_center(center, teacher, c.center_momentum)
    # Collapse monitor: CE(P_t, P_s) = H(P_t) + KL(P_t ‖ P_s), averaged over the same pairs.
    log_p = jax.nn.log_softmax((teacher.astype(jnp.float32) - center) / tau, axis=-1)
    entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=-1).mean()
    return loss, {"teacher_entropy": entropy, "teacher_student_kl": loss - entropy,
                  "center_norm": jnp.linalg.norm(center), "teacher_temperature": tau}

  def _nce_normalizer(self, model, i: int, logits_fn):
    """Z of NCE term i: the stored value, or on the first step the Monte-Carlo estimate from this
    batch's bank logits (computed only then, under `lax.cond`), which is stored and kept fixed."""
    c = self.c
    stored = model.nce_normalizer[...][i]

    def estimate():
      positive, negatives = logits_fn()
      logits = jnp.concatenate([positive[:, None], negatives], axis=1)
      return contrastive.estimate_nce_normalizer(logits, temperature=c.temperature, num_data=self.num_data)

    return jax.lax.cond(stored > 0, lambda: stored, estimate)

  def _instdisc_loss(self, model, images, batch, rng):
    """InstDisc: NCE of each example's feature against its own bank row and m uniform draws."""
    c = self.c
    k_views, k_drop, k_neg = jax.random.split(rng, 3)
    (view,) = views.make_views(images, k_views, self.recipes)
    z = contrastive.l2_normalize(model.embed(self._normalize(view), train=True, rngs=nnx.Rngs(dropout=k_drop)))
    index, bank = batch["index"], model.bank[...]
    negatives = jax.random.randint(k_neg, (z.shape[0], c.nce_negatives), 0, self.num_data)
    positive, negative = contrastive.bank_logits(z, bank, index, negatives)
    normalizer = self._nce_normalizer(model, 0, lambda: (positive, negative))
    loss = contrastive.nce_loss(positive, negative, temperature=c.temperature, num_data=self.num_data,
                                normalizer=normalizer).mean()
    model.nce_normalizer[...] = normalizer[None]
    model.bank[...] = memory.update_bank(bank, index, z, c.bank_momentum)
    return loss, {"embedding_std": jnp.std(z, axis=0).mean(), "nce_normalizer": normalizer,
                  "positive_prob": jnp.mean(jnp.exp(positive / c.temperature) / normalizer)}

  def _cmc_views(self, images, key=None):
    """CMC's two views, normalised: the L and ab channels of one crop (`lab_views`), or two crops
    (key=None: evaluation, the whole image for both encoders)."""
    if key is None:
      return self._lab_split(images) if self.c.lab_views else (self._normalize(images),) * 2
    crops = views.make_views(images, key, self.recipes)
    return self._lab_split(crops[0]) if self.c.lab_views else tuple(self._normalize(v) for v in crops)

  def _cmc_loss(self, model, images, batch, rng):
    """CMC: each view's features against the other view's bank (NCE), both banks updated."""
    c = self.c
    k_views, k_drop, k_neg = jax.random.split(rng, 3)
    x1, x2 = self._cmc_views(images, k_views)
    drop = nnx.Rngs(dropout=k_drop)
    z1 = contrastive.l2_normalize(model.projector(model.backbone(x1, train=True, rngs=drop), train=True))
    z2 = contrastive.l2_normalize(model.projector2(model.backbone2(x2, train=True, rngs=drop), train=True))
    index, bank1, bank2 = batch["index"], model.bank[...], model.bank2[...]
    negatives = jax.random.randint(k_neg, (z1.shape[0], c.nce_negatives), 0, self.num_data)
    normalizers = (self._nce_normalizer(model, 0, lambda: contrastive.bank_logits(z1, bank2, index, negatives)),
                   self._nce_normalizer(model, 1, lambda: contrastive.bank_logits(z2, bank1, index, negatives)))
    loss = contrastive.cmc_nce_loss(z1, z2, bank1, bank2, index, negatives, temperature=c.temperature,
                                    num_data=self.num_data, normalizers=normalizers).mean()
    model.nce_normalizer[...] = jnp.stack(normalizers)
    model.bank[...] = memory.update_bank(bank1, index, z1, c.bank_momentum)
    model.bank2[...] = memory.update_bank(bank2, index, z2, c.bank_momentum)
    return loss, {"embedding_std": jnp.std(z1, axis=0).mean(), "nce_normalizer": normalizers[0]}

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
      if ema:
        m = self.momentum(step)
        model_state["target_backbone"] = _ema_into(model_state["target_backbone"], params["backbone"], m)
        model_state["target_projector"] = _ema_into(model_state["target_projector"], params["projector"], m)
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
        if self.c.method == "cmc":
          x1, x2 = self._cmc_views(x)
          return jnp.concatenate([features_lib.named(model.backbone, x1), features_lib.named(model.backbone2, x2)],
                                 axis=-1)
        return features_lib.named(model.backbone, self._normalize(x))

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
    if c.linear_probe:  # softmax regression on the same frozen features (evaluators/linear_probe.py)
      probe = linear_probe_lib.fit_and_evaluate(train_x, train_y, test_x, test_y)
      out["eval/linear_top1"] = probe["linear_probe_top1"]
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
def recipe(method: str, arg=None, demo=None, **paper):
  """The config of `configs/ssl/<method>.py`: the paper's ImageNet recipe (`paper` sets it), or
  with `digits` a bundled-data demo of a few CPU minutes (`demo` overrides for it), and with
  `smoke` a seconds-long run.

  Demo: the small ViT of configs/vit/digits.py (width 64, depth 4, 4×4 patches, average pooling) on
  the 16×16-upsampled digits, views with milder crops (scale 0.4–1: an 8% crop of an 8×8 digit shows
  nothing), k-NN monitor on the 360 held-out digits. (XLA's CPU convolutions made a ResNet-18 of
  width 16 take 4.5 s per step here, against a fraction of a second for the ViT.) Every demo trains
  with AdamW (lr 1e-3, weight decay 0.05, gradient norm clipped at 1, cosine after 20 warm-up steps),
  as ViT recipes do (MoCo v3, DINO): with the papers' LARS/SGD this tiny ViT did not learn (SimCLR,
  LARS lr 4.8, 150 steps: k-NN 53% against 58% at init; AdamW: 71%). The recipe's `optimizer.freeze`
  carries over (MoCo v3's frozen patch projection). `demo` adds each method's own changes (DINO: the
  paper's clipping at 3; SwAV, BYOL: softer views); results: docs/ssl_digits.md.
  """
  from papers_jax.core.config import base_config, parse_arg, set_path
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

  def apply(overrides):
    for key, value in overrides.items():
      set_path(c, key, value)

  apply(paper)
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
    if method in QUEUE:
      c.ssl.queue_size = 4096
    c.ssl.projector_hidden = min(c.ssl.projector_hidden, 256)
    c.ssl.projector_dim = min(c.ssl.projector_dim, 64)
    c.ssl.predictor_hidden = min(c.ssl.predictor_hidden, 256)
    c.ssl.knn_k = (20,)
    c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay, c.optimizer.clip_grad_norm = "adamw", 1e-3, 0.05, 1.0
    c.schedule.name, c.schedule.end_lr_ratio = "cosine", 0.0
    c.batch_size = 256
    c.num_steps, c.num_epochs = 300, 0.0
    c.schedule.warmup_steps = 20
    c.log_every, c.eval_every, c.checkpoint_every = 50, 100, 100
    c.mesh.data = -1
    apply(demo or {})
  if args.smoke:
    c.model.update(embed_dim=32, depth=2, num_heads=2)
    c.batch_size = 32
    if method in QUEUE:
      c.ssl.queue_size = 128
    c.ssl.num_local_views = min(c.ssl.num_local_views, 2)
    c.ssl.nce_negatives = min(c.ssl.nce_negatives, 64)
    c.num_steps = 4
    c.schedule.warmup_steps = 1
    c.log_every, c.eval_every, c.checkpoint_every = 2, 0, 4
  return c.lock()
