"""Grain input pipelines with a host-count-independent, index-based order.

Training reads global example positions p = step * global_batch + i. Position p is example
`perm_e[p mod N]` of epoch e = p // N, where perm_e is a permutation seeded by (seed, e), and its
augmentation is seeded by (seed, p). Host h of P loads the h-th contiguous 1/P of each global
batch. The batch of a step therefore depends only on (seed, step), not on the number of hosts,
and resuming needs only the data position saved with the checkpoint (the start of the next batch,
plus the batches skipped after a non-finite loss).

Evaluation covers each example exactly once: the last global batch is padded and carries
`mask` = 0 on the padding.
"""

import functools

import grain
import numpy as np

from papers_jax.data import preprocess
from papers_jax.data.randaugment import RandAugment
from papers_jax.errors import ConfigError


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def example_index(position: int, num_examples: int, seed: int) -> int:
  epoch, offset = divmod(position, num_examples)
  return int(_epoch_permutation(num_examples, seed, epoch)[offset])


def host_slice(global_batch: int, process_index: int, process_count: int) -> slice:
  if global_batch % process_count:
    raise ConfigError(f"batch_size {global_batch} is not divisible by the {process_count} processes")
  per_host = global_batch // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def _stack(examples: list[dict]) -> dict:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def batch_starts(start_position: int, num_batches: int, global_batch: int, skip=()) -> list[int]:
  """Start positions of the next `num_batches` global batches, passing over the skipped ones."""
  skip, starts, p = set(skip), [], start_position
  while len(starts) < num_batches:
    if p not in skip:
      starts.append(p)
    p += global_batch
  return starts


def train_batches(source, preprocess_fn, *, global_batch: int, seed: int, starts, process_index: int = 0,
                  process_count: int = 1, num_threads: int = 2, prefetch: int = 4, nan_at_positions=()):
  """Iterator over this host's slices of the global batches that begin at the positions `starts`.

  Each batch carries `index` (int32): every row's example index in `source`, which memory-bank
  methods (InstDisc, CMC) use as the instance label; other tasks ignore the key.
  `nan_at_positions` (fault injection for tests) adds a boolean `nan` row flag that makes the
  train step's loss non-finite for a batch holding any of those positions.
  """
  n = len(source)
  rows = host_slice(global_batch, process_index, process_count)
  poisoned = set(nan_at_positions)

  def load(start: int) -> dict:
    positions = range(start + rows.start, start + rows.stop)
    indices = [example_index(p, n, seed) for p in positions]
    examples = [preprocess_fn(dict(source[i]), np.random.default_rng([seed, p, 1])) for i, p in zip(indices, positions)]
    batch = _stack(examples)
    batch["index"] = np.asarray(indices, np.int32)
    if poisoned:
      batch["nan"] = np.asarray([p in poisoned for p in positions])
    return batch

  ds = grain.MapDataset.source(list(starts)).map(load)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)))


def num_eval_steps(num_examples: int, global_batch: int) -> int:
  return -(-num_examples // global_batch)


def eval_batches(source, preprocess_fn, *, global_batch: int, process_index: int = 0, process_count: int = 1,
                 num_threads: int = 2):
  """This host's slices of the evaluation batches; padded rows repeat example 0 with mask 0."""
  n = len(source)
  rows = host_slice(global_batch, process_index, process_count)

  def load(step: int) -> dict:
    examples = []
    for p in range(step * global_batch + rows.start, step * global_batch + rows.stop):
      example = preprocess_fn(dict(source[p if p < n else 0]), None)
      example["mask"] = np.asarray(p < n, np.bool_)
      examples.append(example)
    return _stack(examples)

  ds = grain.MapDataset.range(num_eval_steps(n, global_batch)).map(load)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2)))


AUGMENTATIONS = ("none", "translate", "affine", "cifar", "inception", "flip")


def image_preprocess(kind: str, image_size: int, *, train: bool, max_shift: int = 1, crop_pct: float = 0.875,
                     affine_degrees: float = 10.0, affine_scale=(0.9, 1.1), affine_translate: float = 0.1,
                     randaugment: str = "", random_erasing: float = 0.0, pca_lighting: float = 0.0, mean=(0.5,),
                     std=(0.5,)):
  """Per-example image transform: `fn(example, rng) -> example` with uint8 images out.

  kind: "none" (resize only), "translate" (small integer shifts), "affine" (random rotation,
  scale and sub-pixel shift, for tiny images such as digits),
  "cifar" (pad-4 random crop + flip), "flip" (resize + random horizontal flip: DDPM's only augmentation), "inception" (random-resized crop + flip; evaluation resizes
  the shorter side and centre-crops).
  Training only, after those: `randaugment` (timm's string, e.g. "rand-m9-mstd0.5-inc1"; "" off),
  filling with the dataset `mean`, then random erasing with probability `random_erasing` (timm's
  mode "pixel", noise drawn in the space normalised by `mean` and `std`; see preprocess.random_erasing),
  and AlexNet's PCA lighting noise with α ~ N(0, `pca_lighting`) (0 off; preprocess.pca_lighting).
  """
  if kind not in AUGMENTATIONS:
    raise ConfigError(f"unknown data.augment {kind!r}; choose from {AUGMENTATIONS}")
  if not 0.0 <= random_erasing <= 1.0:
    raise ConfigError(f"data.random_erasing={random_erasing} is a probability: choose it in [0, 1]")
  rand_augment = RandAugment.parse(randaugment) if randaugment else None
  # timm's fill colour: the mean in uint8.
  fill = tuple(min(255, round(255 * m)) for m in mean)

  def fn(example, rng):
    image = example["image"]
    if kind == "inception":
      image = (preprocess.inception_crop(image, rng, image_size) if train
               else preprocess.resize_shorter_then_center_crop(image, image_size, crop_pct))
    else:
      image = preprocess.resize(image, image_size)
    if train and kind == "translate":
      image = preprocess.random_translate(image, rng, max_shift)
    if train and kind == "affine":
      image = preprocess.random_affine(image, rng, degrees=affine_degrees, scale=affine_scale,
                                       translate=affine_translate)
    if train and kind == "cifar":
      image = preprocess.random_crop_with_padding(image, rng, 4)
    if train and kind in ("cifar", "inception", "flip"):
      image = preprocess.random_flip(image, rng)
    if train and rand_augment is not None:
      image = rand_augment(image, rng, np.broadcast_to(fill, image.shape[-1:]))
    if train and pca_lighting > 0:
      image = preprocess.pca_lighting(image, rng, pca_lighting)
    if train and random_erasing > 0:
      image = preprocess.random_erasing(image, rng, random_erasing, mean, std)
    return {"image": image, "label": np.asarray(example["label"], np.int32)}

  return fn


def config_image_preprocess(config, train: bool):
  """`image_preprocess` with a run's `config.data` settings; the mean, std and crop_pct are the config's
  where it sets them, else those of the model's name (core/config.py's `image_preprocessing`)."""
  from papers_jax.core.config import image_preprocessing
  d = config.data
  mean, std, crop_pct = image_preprocessing(config)
  return image_preprocess(d.augment, d.image_size, train=train, max_shift=d.max_shift, crop_pct=crop_pct,
                          affine_degrees=d.affine_degrees, affine_scale=tuple(d.affine_scale),
                          affine_translate=d.affine_translate, randaugment=d.randaugment,
                          random_erasing=d.random_erasing, pca_lighting=d.pca_lighting, mean=mean, std=std)
