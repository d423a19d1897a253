"""Exact minimum-cost bipartite matching (the Hungarian problem) in pure JAX, for use inside a jitted step.

`linear_sum_assignment` solves one (rows × cols) cost matrix with the shortest augmenting path method
(Jonker & Volgenant, 1987; the O(n²m) form with row and column potentials): each row in turn is
added to the matching by a Dijkstra-like search over the reduced costs, then the path found is
flipped. Every loop is a `lax.fori_loop` / `lax.while_loop` over static shapes and the column work is
vectorised, so it compiles on any backend, vmaps over a batch, and needs no host callback (as
scenic's `hungarian_jax` matcher, which this follows in spirit, not code).

`match_queries` is the detection form: a (num_queries × max_targets) cost with a validity mask over
the padded targets, batched with vmap. Padded targets become rows of zeros: a constant row takes a
column without changing which columns the real rows get, since there are at least as many queries
(columns) as targets.

Costs are float32 here: exact for integer costs below 2**24, and for real costs the returned
assignment is optimal up to float32 rounding of the potentials.
"""

import jax
import jax.numpy as jnp


def _solve_rows_le_cols(cost: jax.Array) -> jax.Array:
  """Column of each row (n,), for an (n, m) cost with n <= m."""
  n, m = cost.shape
  cost = cost.astype(jnp.float32)
  inf = jnp.float32(jnp.inf)
  # Index 0 of the column arrays is a virtual column where each new row's search starts; rows and
  # columns are 1-based in `row_of` (0: free) and the potentials.
  cost = jnp.pad(cost, ((1, 0), (1, 0)))

  def add_row(i, carry):
    u, v, row_of = carry
    row_of = row_of.at[0].set(i)
    min_slack = jnp.full((m + 1,), inf)
    way = jnp.zeros((m + 1,), jnp.int32)
    used = jnp.zeros((m + 1,), bool)

    def search_cond(s):
      _, _, _, _, _, _, j0 = s
      return s[2][j0] != 0  # row_of[j0]: the search ends at a free column

    def search_step(s):
      u, v, row_of, min_slack, way, used, j0 = s
      used = used.at[j0].set(True)
      i0 = row_of[j0]
      reduced = cost[i0] - u[i0] - v
      better = ~used & (reduced < min_slack)
      min_slack = jnp.where(better, reduced, min_slack)
      way = jnp.where(better, j0, way)
      candidates = jnp.where(used, inf, min_slack).at[0].set(inf)
      j1 = jnp.argmin(candidates).astype(jnp.int32)
      delta = candidates[j1]
      # Shift the potentials of the search tree by delta, so that column j1 gets a zero reduced cost.
      u = u.at[row_of].add(jnp.where(used, delta, 0.0))
      v = jnp.where(used, v - delta, v)
      min_slack = jnp.where(used, min_slack, min_slack - delta)
      return u, v, row_of, min_slack, way, used, j1

    s = (u, v, row_of, min_slack, way, used, jnp.int32(0))
    s = search_step(s)  # the do-while's first pass
    u, v, row_of, _, way, _, j0 = jax.lax.while_loop(search_cond, search_step, s)

    def flip_step(s):
      row_of, j0 = s
      j1 = way[j0]
      return row_of.at[j0].set(row_of[j1]), j1

    row_of, _ = jax.lax.while_loop(lambda s: s[1] != 0, flip_step, (row_of, j0))
    return u, v, row_of

  u = jnp.zeros((n + 1,), jnp.float32)
  v = jnp.zeros((m + 1,), jnp.float32)
  row_of = jnp.zeros((m + 1,), jnp.int32)
  _, _, row_of = jax.lax.fori_loop(1, n + 1, add_row, (u, v, row_of))
  # Invert: the column of each row. Free columns (row 0) scatter to a dropped slot.
  col_of = jnp.zeros((n + 1,), jnp.int32).at[row_of[1:]].set(jnp.arange(m, dtype=jnp.int32))
  return col_of[1:]


def linear_sum_assignment(cost: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Minimum-cost assignment of an (n, m) cost matrix, like scipy.optimize.linear_sum_assignment.

  Returns (row_ind, col_ind), each of length min(n, m), with row_ind sorted: cost[row_ind, col_ind]
  has the least possible sum. Non-finite costs are not allowed (replace them first).
  """
  n, m = cost.shape
  if n <= m:
    return jnp.arange(n, dtype=jnp.int32), _solve_rows_le_cols(cost)
  row_of_col = _solve_rows_le_cols(cost.T)  # the row of each column
  order = jnp.argsort(row_of_col)
  return row_of_col[order], order.astype(jnp.int32)


def match_queries(cost: jax.Array, target_valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Hungarian matching of queries to padded targets, batched.

  cost (B, Q, T) with T <= Q, target_valid (B, T) bool. Returns
    target_for_query (B, Q) int32: the matched target of each query, -1 for none;
    query_for_target (B, T) int32: the matched query of each real target, -1 for padding.
  Non-finite costs (NaN / inf from a diverged prediction) are replaced by a large finite cost (1e4, and
  costs are clipped to ±1e4), so such a query is matched only when nothing else can be, as DETR's matcher does.
  """
  b, q, t = cost.shape
  if t > q:
    raise ValueError(f"match_queries needs at least as many queries as targets, got {q} queries and {t} targets")
  if target_valid is None:
    target_valid = jnp.ones((b, t), bool)
  cost = cost.astype(jnp.float32)
  # Far above a DETR matching cost (at most ~50), and small enough that float32 potentials keep the
  # real costs' differences (1e4 has a resolution of 1e-3).
  big = 1e4
  cost = jnp.where(jnp.isfinite(cost), jnp.clip(cost, -big, big), big)
  rows = jnp.where(target_valid[:, :, None], jnp.swapaxes(cost, 1, 2), 0.0)  # (B, T, Q); padded rows of zeros
  query_for_target = jax.vmap(_solve_rows_le_cols)(rows)
  query_for_target = jnp.where(target_valid, query_for_target, -1)
  # Scatter the real targets' indices onto their queries; padded targets go to an extra dropped slot.
  slot = jnp.where(target_valid, query_for_target, q)
  target_for_query = jnp.full((b, q + 1), -1, jnp.int32)
  target_for_query = jax.vmap(lambda r, s: r.at[s].set(jnp.arange(t, dtype=jnp.int32)))(target_for_query, slot)
  return target_for_query[:, :q], query_for_target
