"""The Sparse Transformer's factorised attention patterns (Child et al. 2019, "Generating Long Sequences with
Sparse Transformers", §4.2-4.3), as boolean masks over causal self-attention (True = attend).

Each pattern is a pair of connectivity sets (A⁽¹⁾, A⁽²⁾) for output position i, with stride l:
  strided: A⁽¹⁾ᵢ = {j ≤ i : i − j < l}            (the previous l positions)
           A⁽²⁾ᵢ = {j ≤ i : (i − j) mod l = 0}     (every l-th position before i)
  fixed:   A⁽¹⁾ᵢ = {j ≤ i : ⌊j / l⌋ = ⌊i / l⌋}       (i's own block of l)
           A⁽²⁾ᵢ = {j ≤ i : j mod l ≥ l − c} ∪ {i}   (the last c "summary" cells of every block)
GPT-3 (Brown et al. 2020, §2.1) uses "alternating dense and locally banded sparse attention patterns in the
layers of the transformer, similar to the Sparse Transformer":
  banded:  A⁽¹⁾ᵢ = {j ≤ i}                          (dense causal attention)
           A⁽²⁾ᵢ = {j ≤ i : i − j < l}            (a local band of width l, the strided A⁽¹⁾)
interleaved so that layers 1, 3, 5, ... are dense and 2, 4, 6, ... banded. The paper gives no band width.
The fixed A⁽²⁾ is empty before the first summary cell, so every position also attends to itself there (a
choice: the paper does not say; the strided sets and the fixed A⁽¹⁾ hold i already). Two attention steps,
one through each set, connect every position to every earlier one (§4.2). §4.3
integrates them into a transformer by giving each residual block one set, interleaved (`"interleaved"`), or
letting one head attend to their union (`"merged"`).

These masks give the paper's model function, not its speed: the attention is still computed densely and the
masked logits are dropped, where the paper's block-sparse kernels skip them.
"""

import numpy as np

PATTERNS = ("dense", "strided", "fixed", "banded")
MODES = ("interleaved", "merged")


def connectivity(kind: str, i, j, stride: int, summary: int = 1):
  """(A⁽¹⁾, A⁽²⁾) at query positions `i` and key positions `j` (broadcastable integer arrays, numpy or jax),
  the causal mask included."""
  causal = j <= i
  if kind == "strided":
    return causal & (i - j < stride), causal & ((i - j) % stride == 0)
  if kind == "fixed":
    if not 1 <= summary <= stride:
      raise ValueError(f"the fixed pattern's summary cells c={summary} must be in [1, stride={stride}]")
    return causal & (j // stride == i // stride), causal & ((j % stride >= stride - summary) | (j == i))
  if kind == "banded":
    return causal, causal & (i - j < stride)
  raise ValueError(f"unknown sparse attention pattern {kind!r}; choose from {PATTERNS[1:]}")


def pattern_masks(kind: str, length: int, stride: int, summary: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """(A⁽¹⁾, A⁽²⁾), each (length, length) bool with the causal mask included."""
  return connectivity(kind, np.arange(length)[:, None], np.arange(length)[None, :], stride, summary)


def layer_sets(mode: str, depth: int) -> list[tuple[int, ...]]:
  """Which of (A⁽¹⁾, A⁽²⁾) each layer attends through: (0,), (1,), (0,), ... or (0, 1) everywhere."""
  if mode not in MODES:
    raise ValueError(f"unknown sparse attention mode {mode!r}; choose from {MODES}")
  return [(0, 1)] * depth if mode == "merged" else [(layer % 2,) for layer in range(depth)]


def layer_masks(kind: str, mode: str, depth: int, length: int, stride: int, summary: int = 1) -> list:
  """One (length, length) mask per layer: A⁽¹⁾, A⁽²⁾, A⁽¹⁾, ... (`interleaved`) or A⁽¹⁾ ∪ A⁽²⁾ (`merged`);
  None for every layer of the dense pattern."""
  if kind == "dense":
    return [None] * depth
  sets = pattern_masks(kind, length, stride, summary)
  return [sets[0] | sets[1] if len(which) == 2 else sets[which[0]] for which in layer_sets(mode, depth)]
