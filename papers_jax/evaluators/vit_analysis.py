"""The ViT paper's analysis of what a trained ViT learned (Dosovitskiy et al., 2021, Sec. 4.5, Fig. 7),
as numpy functions of a model's parameters and of its attention weights (named intermediates,
models/intermediates.py). tools/visualize.py's `vit` command draws them.

  - Left: principal components of the patch-embedding filters (each filter is a p·p·C vector).
  - Centre: cosine similarity between the position embedding of each patch and those of all others.
  - Right: mean attention distance per head and depth: the image-space distance between a query
    patch and the patches it attends to, weighted by the attention, averaged over queries and images
    (the paper's "attention distance", the analogue of a CNN's receptive field size).
"""

import numpy as np


def filter_principal_components(kernel, num: int | None = None):
  """Patch kernel (p, p, C, D) → (components (k, p, p, C), explained-variance fractions (k,)).

  Each of the D filters is a sample of p·p·C values; the components are the eigenvectors of their
  covariance, largest first (k = min(num, p·p·C, D))."""
  p1, p2, c, d = kernel.shape
  filters = np.asarray(kernel, np.float64).reshape(p1 * p2 * c, d).T  # (D, p·p·C)
  centred = filters - filters.mean(axis=0, keepdims=True)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  k = len(s) if num is None else min(num, len(s))
  variance = s ** 2
  return vt[:k].reshape(k, p1, p2, c), variance[:k] / variance.sum()


def position_similarity(pos_embed, grid, num_prefix_tokens: int = 1):
  """(1, prefix + gh·gw, D) position embeddings → cosine similarities (gh, gw, gh, gw): entry
  [i, j] is the map of patch (i, j)'s similarity with every patch."""
  gh, gw = grid
  pos = np.asarray(pos_embed, np.float64)[0, num_prefix_tokens:]
  pos = pos / np.maximum(np.linalg.norm(pos, axis=-1, keepdims=True), 1e-12)
  return (pos @ pos.T).reshape(gh, gw, gh, gw)


def patch_distances(grid, patch_size):
  """(gh·gw, gh·gw) distances in pixels between the centres of every two patches (row-major order)."""
  gh, gw = grid
  ph, pw = patch_size if isinstance(patch_size, (tuple, list)) else (patch_size, patch_size)
  y, x = np.mgrid[:gh, :gw]
  centres = np.stack([y.reshape(-1) * ph, x.reshape(-1) * pw], axis=-1).astype(np.float64)
  return np.linalg.norm(centres[:, None] - centres[None], axis=-1)


def mean_attention_distance(attention, grid, patch_size, num_prefix_tokens: int = 1):
  """Attention (batch, heads, tokens, tokens) → mean distance in pixels per head (heads,).

  Queries are the patch tokens; the weights on the patch keys are renormalised to sum to one (the
  class token has no position in the image), then Σ_k w_qk · dist(q, k) is averaged over the
  queries and the batch."""
  a = np.asarray(attention, np.float64)[:, :, num_prefix_tokens:, num_prefix_tokens:]
  a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-12)
  per_query = (a * patch_distances(grid, patch_size)).sum(axis=-1)  # (batch, heads, queries)
  return per_query.mean(axis=(0, 2))
