"""Classification losses and metrics (all computed in float32)."""

import jax
import jax.numpy as jnp


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """One-hot targets with label smoothing: the true class gets 1 - s + s/K, every other class s/K."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return onehot * (1.0 - smoothing) + smoothing / num_classes


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example cross-entropy between logits (..., K) and target distributions (..., K)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -(targets * logp).sum(-1)


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example binary cross-entropy summed over classes (the ViT paper's upstream loss)."""
  logits = logits.astype(jnp.float32)
  return -(targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits)).sum(-1)


def correct_top_k(logits: jax.Array, labels: jax.Array, k: int = 1) -> jax.Array:
  """1.0 where the label is among the k highest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return (top == labels[..., None]).any(-1).astype(jnp.float32)


def cutmix_box(lam: jax.Array, cy: jax.Array, cx: jax.Array, height: int, width: int):
  """timm's `rand_bbox`: a box of side fraction sqrt(1 - lam) centred at (cy, cx), clipped to the image.

  Returns (y0, y1, x0, x1) and the area-corrected lam = 1 - box area / image area.
  """
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = (height * ratio).astype(jnp.int32)
  cut_w = (width * ratio).astype(jnp.int32)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  return (y0, y1, x0, x1), 1.0 - ((y1 - y0) * (x1 - x0)).astype(jnp.float32) / (height * width)


def mix_batch(images: jax.Array, targets: jax.Array, lam: jax.Array, box=None):
  """Mixes each example with the batch's mirror image (example i with example B-1-i, as timm does).

  box None: mixup, images lam·x + (1-lam)·flip(x); a box (y0, y1, x0, x1): cutmix, the box pasted from
  flip(x). Targets always become lam·t + (1-lam)·flip(t) (for cutmix with the area-corrected lam).
  """
  flipped = images[::-1]
  if box is None:
    mixed = lam * images + (1.0 - lam) * flipped
  else:
    y0, y1, x0, x1 = box
    rows = jnp.arange(images.shape[1])[:, None]
    cols = jnp.arange(images.shape[2])[None, :]
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    mixed = jnp.where(inside[None, :, :, None], flipped, images)
  return mixed.astype(images.dtype), lam * targets + (1.0 - lam) * targets[::-1]


def mixup_cutmix(rng: jax.Array, images: jax.Array, targets: jax.Array, *, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, switch_prob: float = 0.5, prob: float = 1.0):
  """timm `Mixup` in batch mode (the DeiT / MAE fine-tuning recipe): with probability `prob` the batch
  is mixed, by cutmix (probability `switch_prob` when both alphas are > 0) with lam ~ Beta(cutmix_alpha)
  or by mixup with lam ~ Beta(mixup_alpha). `targets` are (smoothed) one-hot rows. Static shapes."""
  k_apply, k_switch, k_mix, k_cut, k_y, k_x = jax.random.split(rng, 6)
  h, w = images.shape[1], images.shape[2]
  apply = jax.random.uniform(k_apply) < prob
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mix = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.ones(())
  lam_cut = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.ones(())
  box, lam_box = cutmix_box(lam_cut, jax.random.randint(k_y, (), 0, h), jax.random.randint(k_x, (), 0, w), h, w)
  mixed_x, mixed_t = mix_batch(images, targets, lam_mix)
  cut_x, cut_t = mix_batch(images, targets, lam_box, box)
  x = jnp.where(use_cutmix, cut_x, mixed_x)
  t = jnp.where(use_cutmix, cut_t, mixed_t)
  return jnp.where(apply, x, images), jnp.where(apply, t, targets)
