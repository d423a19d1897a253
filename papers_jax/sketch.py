"""CLIPasso (Vinker et al., 2022): sketching an image with strokes optimised against a frozen CLIP.

A sketch is `num_strokes` cubic Bézier strokes (nn/raster.py). They start at points sampled from a saliency
map of the image and are optimised with Adam so that augmented (sketch, image) pairs agree under CLIP: the
final embeddings (semantic loss) and intermediate layers (geometric loss; objectives/clipasso.py). Each image
gets `num_sketches` sketches from different initialisations, and the one with the lowest final loss is kept,
as the paper. Nothing is trained: this is an optimisation per image, run by tools/clipasso.py.

Where this follows the released code rather than the paper's text: the augmentations (random perspective with
distortion 0.5, then a random resized crop of 80% of the area, applied identically to sketch and image, with
the unaugmented pair kept as the first of 1 + `num_augs`), the initial control points (a random walk of three
steps within `init_radius` of the image size from the sampled start), and the saliency's softmax temperature.

Departures (see tools/clipasso.py for the demo's):
- The CLIP is ours, a ViT; the paper takes the geometric loss from layers 3 and 4 of CLIP's ResNet-101 and the
  semantic loss and the saliency from ViT-B/32. Here both losses and the saliency come from one ViT, the
  geometric loss from the token activations of blocks `layers` (the patch tokens, as a spatial map).
- Saliency: attention rollout of the [CLS] token (evaluators/interpret.py) on a thresholded Sobel edge map, in
  place of the relevancy map of Chefer et al. on thresholded XDoG edges.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.evaluators import interpret
from papers_jax.nn import raster
from papers_jax.objectives import clipasso as objective


@dataclasses.dataclass(frozen=True)
class SketchConfig:
  """The paper's defaults (224-pixel canvas, 2000 iterations, lr 1.0 on pixel coordinates)."""
  num_strokes: int = 16
  width: float = 1.5
  iterations: int = 2000
  lr: float = 1.0
  num_augs: int = 4
  semantic_weight: float = 0.1
  layers: tuple = (2, 3)                  # blocks whose tokens the geometric loss compares (0-indexed)
  layer_weights: tuple = (1.0, 1.0)
  num_sketches: int = 3                   # initialisations per image; the lowest final loss is kept
  init_radius: float = 0.05               # of the image size, per step of the initial control points
  temperature: float = 0.3                # softmax temperature of the saliency map
  distortion: float = 0.5                 # random perspective's distortion scale
  crop_scale: float = 0.8                 # random resized crop's area fraction
  samples: int = 24                       # points per Bézier curve in the rasteriser
  stroke_colour: tuple = (0.0, 0.0, 0.0)
  background: tuple = (1.0, 1.0, 1.0)

  def __post_init__(self):
    if self.num_strokes < 1 or self.iterations < 0 or self.num_sketches < 1 or self.num_augs < 0:
      raise ConfigError(f"num_strokes and num_sketches must be ≥ 1 and iterations, num_augs ≥ 0: {self}")
    if len(self.layers) != len(self.layer_weights):
      raise ConfigError(f"layers {self.layers} and layer_weights {self.layer_weights} differ in length")


# --- Augmentation: a random perspective, then a random resized crop (torchvision's, as the released code) ---


def homography(src, dst):
  """The 3×3 matrix H with H · [src, 1] ∝ [dst, 1] for four point pairs (4, 2) each."""
  rows, rhs = [], []
  for i in range(4):
    (x, y), (u, v) = src[i], dst[i]
    rows.append(jnp.stack([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]))
    rows.append(jnp.stack([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y]))
    rhs += [u, v]
  h = jnp.linalg.solve(jnp.stack(rows), jnp.stack(rhs))
  return jnp.append(h, 1.0).reshape(3, 3)


def augmentation_matrix(key, size: int, distortion: float, crop_scale: float):
  """The map from output pixel coordinates to input ones (3×3) of one random perspective + resized crop on a
  size × size image. The perspective moves each corner inwards by up to `distortion` · size / 2 in x and y
  (torchvision's RandomPerspective); the crop takes a square of `crop_scale` of the area at a random place."""
  k_corner, k_crop = jax.random.split(key)
  half = distortion * size / 2
  corners = jnp.array([[0.0, 0.0], [size, 0.0], [size, size], [0.0, size]])
  inward = jnp.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
  moved = corners + inward * jax.random.uniform(k_corner, (4, 2), maxval=half)
  # The perspective maps the corners to `moved`; sampling needs its inverse: output → input.
  inverse_perspective = homography(moved, corners)
  side = size * np.sqrt(crop_scale)
  origin = jax.random.uniform(k_crop, (2,), maxval=size - side)
  crop = jnp.array([[side / size, 0.0, 0.0], [0.0, side / size, 0.0], [0.0, 0.0, 1.0]]).at[:2, 2].set(origin)
  return inverse_perspective @ crop


def warp(image, matrix):
  """image (H, W, C) sampled bilinearly at matrix · (output pixel centre); zero outside."""
  h, w = image.shape[:2]
  centres = raster.pixel_centres(h, w, image.dtype)
  points = jnp.concatenate([centres, jnp.ones_like(centres[:, :1])], -1) @ matrix.T
  xy = points[:, :2] / points[:, 2:]
  coords = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]  # map_coordinates indexes pixel centres at integers
  sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, coords, order=1, mode="constant", cval=0.0)  # noqa: E731
  return jax.vmap(sample, in_axes=-1, out_axes=-1)(image).reshape(h, w, -1)


def augmented_pairs(key, sketch, image, config: SketchConfig):
  """(1 + num_augs, H, W, C) each: the pair itself, then num_augs pairs under the same random transform."""
  size = image.shape[0]
  matrices = jax.vmap(lambda k: augmentation_matrix(k, size, config.distortion, config.crop_scale))(
      jax.random.split(key, config.num_augs))
  both = jnp.stack([sketch, image])
  warped = jax.vmap(lambda m: jax.vmap(warp, in_axes=(0, None))(both, m))(matrices)  # (augs, 2, H, W, C)
  return jnp.concatenate([sketch[None], warped[:, 0]]), jnp.concatenate([image[None], warped[:, 1]])


# --- CLIP ---


def load_clip_run(run_dir: str):
  """(CLIP module with the run's last weights, the run's config dict) of a finished CLIP run."""
  from papers_jax import models
  from papers_jax.convert import init_params_from_checkpoint
  config_path, ckpt_dir = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "checkpoints")
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not (os.path.isfile(config_path) and steps):
    raise CheckpointError(f"{run_dir!r} is not a finished CLIP run (config.json and checkpoints/<step>/ expected); "
                          "train one with configs/clip/scenes.py first")
  with open(config_path) as f:
    config = json.load(f)["config"]
  model_config = dict(config["model"])
  name = model_config.pop("name")
  if not name.startswith("clip_"):
    raise CheckpointError(f"{run_dir!r} trained {name!r}, not a CLIP")
  if "vocab_size" not in model_config:  # a run on captions sizes its text tower by the tokenizer it wrote
    from papers_jax.data.captions import CaptionTokenizer
    tokenizer = CaptionTokenizer.from_file(os.path.join(run_dir, "tokenizer.json"),
                                           int(model_config.get("context_length", 77)))
    model_config["vocab_size"] = tokenizer.vocab_size
  clip = models.create(name, rngs=nnx.Rngs(0), **model_config)
  state = nnx.state(clip, nnx.Param)
  params, _ = init_params_from_checkpoint(os.path.join(ckpt_dir, str(steps[-1]), "state"), nnx.to_pure_dict(state),
                                          skip=())
  nnx.replace_by_pure_dict(state, params)
  nnx.update(clip, state)
  return clip, config


def image_features(clip, images, layers):
  """(embeddings (B, D), [block tokens (B, tokens, width) for each of `layers`]) of normalised images."""
  if clip.vision != "vit":
    raise ConfigError("CLIPasso here reads a ViT CLIP's blocks; this CLIP has a ResNet image tower")
  out = clip.visual.forward_intermediates(images, indices=list(layers), train=False)
  embedding = clip.visual_projection(out["pre_logits"]).astype(jnp.float32)
  return embedding, [out[f"block{i:02d}/+mlp"].astype(jnp.float32) for i in layers]


def saliency_map(clip, image, mean, std, edge_threshold: float = 0.25):
  """(H, W) in [0, 1], zero off the edges: the [CLS] attention rollout over the patches, upsampled, on the
  pixels whose Sobel edge magnitude is at least `edge_threshold` of its maximum (a binary edge map, as the
  released code's thresholded XDoG), rescaled to [0, 1] there."""
  normalised = (image[None] - jnp.asarray(mean)) / jnp.asarray(std)
  rollout = interpret.attention_rollout(interpret.attention_maps(clip.visual, normalised))
  attention = interpret.upsample(interpret.cls_maps(clip.visual, rollout), image.shape[:2])[0]
  gray = image.mean(-1)
  gx = jnp.zeros_like(gray).at[:, 1:-1].set(gray[:, 2:] - gray[:, :-2])
  gy = jnp.zeros_like(gray).at[1:-1].set(gray[2:] - gray[:-2])
  edges = jnp.sqrt(gx ** 2 + gy ** 2)
  on_edge = edges >= edge_threshold * edges.max()
  a = jnp.where(on_edge, attention, jnp.inf)
  low = a.min()
  high = jnp.where(on_edge, attention, -jnp.inf).max()
  # Every edge pixel keeps a little weight (the edge's least attended pixel is not excluded).
  return jnp.where(on_edge, 0.05 + 0.95 * (attention - low) / jnp.maximum(high - low, 1e-12), 0.0)


def initial_strokes(key, saliency, config: SketchConfig):
  """(num_strokes, 4, 2) control points: start points drawn without replacement from softmax(saliency / T)
  over the pixels where the saliency is positive (the released code's rule; uniform where it is zero
  everywhere), each followed by three random steps of at most init_radius · size per coordinate."""
  h, w = saliency.shape
  k_start, k_walk = jax.random.split(key)
  flat = saliency.ravel()
  positive = flat > 0
  logits = jnp.where(positive, flat / config.temperature, -jnp.inf)
  logits = jnp.where(positive.sum() >= config.num_strokes, logits, 0.0)
  index = jax.random.choice(k_start, h * w, (config.num_strokes,), replace=False, p=jax.nn.softmax(logits))
  start = jnp.stack([index % w + 0.5, index // w + 0.5], -1).astype(jnp.float32)
  steps = jax.random.uniform(k_walk, (config.num_strokes, 3, 2), minval=-1.0, maxval=1.0) * config.init_radius * w
  return jnp.concatenate([start[:, None], start[:, None] + jnp.cumsum(steps, axis=1)], axis=1)


def render(control, size: int, config: SketchConfig):
  return raster.render_strokes(control, config.width, size, size, stroke_colour=config.stroke_colour,
                               background=config.background, samples=config.samples)


def sketch_loss(clip, control, image, key, config: SketchConfig, mean, std):
  """(total, (semantic, geometric)) of one sketch against its image; image in [0, 1], (H, W, 3)."""
  sketch = render(control, image.shape[0], config)
  sketches, images = augmented_pairs(key, sketch, image, config)
  norm = lambda x: (x - jnp.asarray(mean)) / jnp.asarray(std)  # noqa: E731
  f_sketch, l_sketch = image_features(clip, norm(sketches), config.layers)
  f_image, l_image = image_features(clip, norm(images), config.layers)
  l_image = [jax.lax.stop_gradient(x) for x in l_image]
  total, semantic, geometric = objective.clipasso_loss(f_sketch, jax.lax.stop_gradient(f_image), l_sketch, l_image,
                                                       config.layer_weights, config.semantic_weight)
  return total, (semantic, geometric)


def sketch_images(clip, images, key, config: SketchConfig, *, mean, std, log_every: int = 0):
  """Sketches of images (B, H, W, 3) in [0, 1]. Returns a dict of numpy arrays: "initial" and "final" control
  points (B, num_sketches, num_strokes, 4, 2), "loss" (B, num_sketches) at the end, "best" (B,) the index of
  the kept sketch, and "history" (iterations logged, 3): mean total, semantic and geometric losses."""
  b, size = images.shape[0], images.shape[1]
  k_init, k_steps = jax.random.split(key)
  graphdef, state = nnx.split(clip)

  @jax.jit
  def start(images, key):
    model = nnx.merge(graphdef, state)
    saliency = jax.vmap(lambda im: saliency_map(model, im, mean, std))(images)
    keys = jax.random.split(key, (b, config.num_sketches))
    return jax.vmap(lambda s, ks: jax.vmap(lambda k: initial_strokes(k, s, config))(ks))(saliency, keys)

  optimizer = optax.adam(config.lr)

  def total_loss(control, images, key):
    model = nnx.merge(graphdef, state)
    keys = jax.random.split(key, (b, config.num_sketches))
    per = jax.vmap(lambda c_img, im, ks: jax.vmap(lambda c, k: sketch_loss(model, c, im, k, config, mean, std))(
        c_img, ks))(control, images, keys)
    totals, (semantic, geometric) = per
    return totals.sum(), (totals, semantic.mean(), geometric.mean())

  @jax.jit
  def step(control, opt_state, images, key):
    grads, aux = jax.grad(total_loss, has_aux=True)(control, images, key)
    updates, opt_state = optimizer.update(grads, opt_state, control)
    return optax.apply_updates(control, updates), opt_state, aux

  initial = start(images, k_init)
  control, opt_state = initial, optimizer.init(initial)
  history, totals = [], None
  for i in range(config.iterations):
    control, opt_state, (totals, semantic, geometric) = step(control, opt_state, images, jax.random.fold_in(k_steps, i))
    if log_every and (i % log_every == 0 or i == config.iterations - 1):
      history.append((float(totals.mean()), float(semantic), float(geometric)))
  # The final loss of every sketch, on one fixed set of augmentations, picks the one kept.
  _, (totals, _, _) = jax.jit(total_loss)(control, images, jax.random.fold_in(k_steps, config.iterations))
  totals = np.asarray(totals)
  return dict(initial=np.asarray(initial), final=np.asarray(control), loss=totals, best=totals.argmin(axis=1),
              history=np.asarray(history))
