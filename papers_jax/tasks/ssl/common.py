"""What every SSL method shares: the `config.ssl` fields, the model (online backbone and heads,
momentum encoder, queues, centre, memory banks), multi-crop encoding, the momentum update's tree
helpers and the NCE normaliser."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from papers_jax.data import views
from papers_jax.errors import ConfigError
from papers_jax.models.ssl_heads import DINOHead, MLPHead, WeightNormDense, unit_columns_init
from papers_jax.nn.embed import resample_pos_embed
from papers_jax.nn.frozen import params_as
from papers_jax.objectives import contrastive, memory

PRETEXT = ("rotation", "jigsaw", "relative_position", "colorization")  # tasks/ssl/pretext.py
METHODS = ("simclr", "moco_v1", "moco_v2", "moco_v3", "byol", "simsiam", "swav", "dino", "instdisc",
           "cmc") + PRETEXT
MOMENTUM_ENCODER = ("moco_v1", "moco_v2", "moco_v3", "byol", "dino")
PREDICTOR = ("moco_v3", "byol", "simsiam")
QUEUE = ("moco_v1", "moco_v2")
MULTI_CROP = ("swav", "dino")
MEMORY_BANK = ("instdisc", "cmc")
MULTI_CROP_VIEWS = ("multi_crop", "swav_multi_crop")
# data/views.py recipes
VIEWS = ("simclr", "moco_v1", "moco_v2", "byol", "instdisc", "cmc", "pretext") + MULTI_CROP_VIEWS

# Allowed values of config.ssl's numbers (core/config.py check_ranges).
RANGES = (
    ("*momentum", "[0, 1]"),
    ("*crop_scale", "(0, 1]"),
    ("color_jitter", "[0, 1]"),
    ("*view_size", "[1, 16384]"),
    ("num_local_views", "[0, 64]"),
    ("projector_layers", "[1, 64]"),
    ("projector_*", "[1, 1048576]"),
    ("predictor_hidden", "[0, 1048576]"),        # 0: no predictor
    ("*temperature", "(0, 100]"),
    ("warmup_teacher_temperature_steps", "[0, inf)"),
    ("queue_size", "[0, 16777216]"),             # 0: none
    ("queue_start_steps", "[0, inf)"),
    ("num_prototypes", "[1, 1048576]"),
    ("sinkhorn_epsilon", "(0, 100]"),
    ("sinkhorn_iterations", "[1, 1000]"),
    ("freeze_last_layer_steps", "[0, inf)"),
    ("nce_negatives", "[1, 1048576]"),
    ("bank_size", "[0, 16777216]"),              # 0: the train split's size
    ("bn_group_size", "[0, inf)"),               # 0: the whole batch
    ("knn_k", "[1, 100000]"),
    ("knn_max_train", "[0, inf)"),               # 0: all
    ("feature_batch", "[1, 1048576]"),
    ("num_permutations", "[1, 362880]"),
    ("cell_size", "[1, 16384]"),
    ("tile_size", "[1, 16384]"),
    ("tile_jitter", "[0, 16384]"),
    ("tile_view_size", "[1, 16384]"),
    ("ab_grid", "(0, 110]"),
    ("ab_neighbours", "[1, 64]"),
    ("ab_sigma", "(0, 1000]"),
    ("rebalance_lambda", "[0, 1]"),
    ("prior_max_examples", "[1, inf)"),
)


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
  Pretext tasks (tasks/ssl/pretext.py): jigsaw / relative position cut a 3 × 3 grid of `cell_size`-px
  cells centred in the view, a `tile_size` tile per cell jittered by ≤ `tile_jitter` px, resized to
  `tile_view_size`; jigsaw draws from `num_permutations` permutations of maximal Hamming distance.
  Colourisation: ab bins of `ab_grid`, soft targets on `ab_neighbours` bins with σ `ab_sigma`, class
  rebalancing with `rebalance_lambda` (1: none) over the first `prior_max_examples` training images.
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
      num_permutations=1000, cell_size=75, tile_size=64, tile_jitter=5, tile_view_size=64,
      ab_grid=10.0, ab_neighbours=5, ab_sigma=5.0, rebalance_lambda=0.5, prior_max_examples=10000)
      | overrides)


class EMA(nnx.Variable):
  """Weights of the momentum encoder: they follow the online weights by EMA, never by gradient."""


class QueueState(nnx.Variable):
  """MoCo's dictionary of earlier keys and its pointer; SwAV's queue of earlier projections."""


class MemoryBank(nnx.Variable):
  """InstDisc / CMC: one L2-normalised 128-d row per training example."""


class SSLState(nnx.Variable):
  """Other state the objective carries: DINO's centre, the NCE normalisers, the step counter."""


def as_ema(module: nnx.Module) -> nnx.Module:
  """Turns every Param of `module` into an EMA variable with the same value and metadata, and
  switches its dropout / stochastic depth off (targets are deterministic functions of the input)."""
  return params_as(module, EMA, deterministic=True)


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

  BACKBONES = ("backbone", "backbone2")  # whose embedding tables models.embedding_params counts

  def __init__(self, backbone: nnx.Module, c, *, num_data: int = 0, backbone2: nnx.Module | None = None,
               rngs: nnx.Rngs):
    method = c.method
    self.backbone = backbone
    width = _backbone_width(backbone)
    if method in PRETEXT:  # the pretext task's classifier on the backbone's features (pretext.NUM_INPUTS of them)
      from papers_jax.tasks.ssl import pretext
      self.projector = MLPHead(width * pretext.NUM_INPUTS[method], c.projector_hidden, pretext.num_outputs(c),
                               layers=c.projector_layers, bn=c.projector_bn, rngs=rngs)
    elif method == "dino":
      self.projector = DINOHead(width, c.projector_hidden, c.projector_dim, c.num_prototypes,
                                layers=c.projector_layers, bn=c.projector_bn, norm_last_layer=c.norm_last_layer,
                                rngs=rngs)
    else:
      self.projector = MLPHead(width, c.projector_hidden, c.projector_dim, layers=c.projector_layers,
                               bn=c.projector_bn, last_bn=c.projector_last_bn, rngs=rngs)
    self.predictor = (MLPHead(c.projector_dim, c.predictor_hidden, c.projector_dim, layers=2, rngs=rngs)
                      if method in PREDICTOR else None)
    self.prototypes = (WeightNormDense(c.projector_dim, c.num_prototypes, kernel_init=unit_columns_init, rngs=rngs)
                       if method == "swav" else None)
    # CMC: the second view's encoder and projection.
    self.backbone2 = backbone2
    self.projector2 = (MLPHead(_backbone_width(backbone2), c.projector_hidden, c.projector_dim,
                               layers=c.projector_layers, bn=c.projector_bn, last_bn=c.projector_last_bn, rngs=rngs)
                       if backbone2 is not None else None)
    if method in MOMENTUM_ENCODER:  # initialised equal to the online encoder
      self.target_backbone = as_ema(nnx.clone(self.backbone))
      self.target_projector = as_ema(nnx.clone(self.projector))
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


def entries_like(target: dict, online: dict) -> dict:
  """The target's entries at the online params' paths (its EMA weights, without its BatchNorm
  statistics), in the online tree's structure."""
  return {k: entries_like(target[k], v) if isinstance(v, dict) else target[k] for k, v in online.items()}


def replace_entries(target: dict, new: dict) -> dict:
  """`target` with the entries that `new` has replaced by new's; the others (statistics) kept."""
  return {k: (replace_entries(v, new[k]) if isinstance(v, dict) else new[k]) if k in new else v
          for k, v in target.items()}


def two_views(task, images, rng):
  """The two normalised views of a two-view method and the dropout rngs (SimCLR, MoCo, BYOL, SimSiam)."""
  k_views, k_drop = jax.random.split(rng)
  v1, v2 = [task._normalize(v) for v in views.make_views(images, k_views, task.recipes)]
  return v1, v2, nnx.Rngs(dropout=k_drop)


def embedding_std(z):
  """Per-dimension std of the L2-normalised projections: near 0 when they collapse."""
  return jnp.std(contrastive.l2_normalize(z), axis=0).mean()


def nce_normalizer(task, model, i: int, logits_fn):
  """Z of NCE term i (InstDisc, CMC): the stored value, or on the first step the Monte-Carlo
  estimate from this batch's bank logits (computed only then, under `lax.cond`), which is stored
  and kept fixed."""
  c = task.c
  stored = model.nce_normalizer[...][i]

  def estimate():
    positive, negatives = logits_fn()
    logits = jnp.concatenate([positive[:, None], negatives], axis=1)
    return contrastive.estimate_nce_normalizer(logits, temperature=c.temperature, num_data=task.num_data)

  return jax.lax.cond(stored > 0, lambda: stored, estimate)
