"""CLIPasso's losses (Vinker et al., 2022, Sec. 3.2), on CLIP features of augmented (sketch, image) pairs.

- semantic: 1 − cos(CLIP(sketch), CLIP(image)) on the final image embeddings, averaged over the pairs;
- geometric: Σ_l w_l · ‖CLIP_l(sketch) − CLIP_l(image)‖² over intermediate layers l (the released code's "L2":
  the mean of the squared differences per layer), averaged over the pairs.
The total is geometric + semantic_weight · semantic (the released code's default weight: 0.1).
"""

import jax.numpy as jnp


def semantic_loss(sketch_features, image_features):
  """(pairs, dim) embeddings each → scalar: the mean of 1 − cosine similarity."""
  s = sketch_features / jnp.linalg.norm(sketch_features, axis=-1, keepdims=True)
  i = image_features / jnp.linalg.norm(image_features, axis=-1, keepdims=True)
  return jnp.mean(1.0 - (s * i).sum(-1))


def geometric_loss(sketch_layers, image_layers, weights):
  """Lists of (pairs, ...) activations, one per layer, and their weights → scalar: Σ_l w_l · mean over the
  pairs of the mean squared difference."""
  total = 0.0
  for s, i, w in zip(sketch_layers, image_layers, weights, strict=True):
    total = total + w * jnp.mean(((s - i) ** 2).reshape(s.shape[0], -1).mean(-1))
  return total


def clipasso_loss(sketch_features, image_features, sketch_layers, image_layers, layer_weights,
                  semantic_weight: float = 0.1):
  """(total, semantic, geometric)."""
  semantic = semantic_loss(sketch_features, image_features)
  geometric = geometric_loss(sketch_layers, image_layers, layer_weights)
  return geometric + semantic_weight * semantic, semantic, geometric
