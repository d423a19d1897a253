"""The jittable Hungarian matcher (papers_jax/ops/matching.py) against scipy.optimize.linear_sum_assignment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from papers_jax.ops import matching


@pytest.fixture(scope="module")
def solve():
  return jax.jit(matching.linear_sum_assignment)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (1, 5)])
def test_random_costs_equal_scipy(solve, shape):
  rng = np.random.default_rng(sum(shape))
  for _ in range(5):
    cost = rng.normal(size=shape).astype(np.float32)
    rows, cols = solve(cost)
    ref_rows, ref_cols = optimize.linear_sum_assignment(cost)
    # Continuous random costs: the optimum is unique, so the assignment itself must agree.
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(cols, ref_cols)


@pytest.mark.parametrize("shape", [(7, 7), (5, 8), (8, 3)])
def test_ties_reach_the_optimal_total(solve, shape):
  rng = np.random.default_rng(10 + sum(shape))
  for _ in range(10):
    cost = rng.integers(0, 4, size=shape).astype(np.float32)  # many equal costs, many optimal assignments
    rows, cols = np.asarray(solve(cost)[0]), np.asarray(solve(cost)[1])
    ref_rows, ref_cols = optimize.linear_sum_assignment(cost)
    assert cost[rows, cols].sum() == cost[ref_rows, ref_cols].sum()
    assert len(set(cols.tolist())) == len(cols) and len(set(rows.tolist())) == len(rows)  # one-to-one


def test_match_queries_with_padded_targets_batched():
  rng = np.random.default_rng(5)
  b, q, t = 4, 10, 6
  cost = rng.normal(size=(b, q, t)).astype(np.float32)
  valid = np.array([[1] * 6, [1] * 3 + [0] * 3, [0] * 6, [1, 0, 1, 0, 1, 0]], bool)
  cost[1, :, 4] = np.nan  # garbage in padded columns must not matter
  cost[3, 2, 0] = np.inf  # a diverged prediction is matched only when nothing else can be
  target_for_query, query_for_target = jax.jit(matching.match_queries)(cost, valid)
  for i in range(b):
    real = np.flatnonzero(valid[i])
    ref_q, ref_t = optimize.linear_sum_assignment(np.nan_to_num(cost[i][:, real], posinf=1e4))
    expected_qft = np.full(t, -1)
    expected_qft[real[ref_t]] = ref_q
    np.testing.assert_array_equal(query_for_target[i], expected_qft)
    expected_tfq = np.full(q, -1)
    expected_tfq[ref_q] = real[ref_t]
    np.testing.assert_array_equal(target_for_query[i], expected_tfq)
  assert (target_for_query[2] == -1).all()


def test_integer_ties_with_padding_reach_the_optimal_total():
  rng = np.random.default_rng(6)
  cost = rng.integers(0, 3, size=(8, 12, 5)).astype(np.float32)
  valid = rng.uniform(size=(8, 5)) < 0.7
  _, query_for_target = jax.jit(matching.match_queries)(cost, valid)
  for i in range(8):
    real = np.flatnonzero(valid[i])
    ref_q, ref_t = optimize.linear_sum_assignment(cost[i][:, real])
    got = np.asarray(query_for_target[i])[real]
    assert len(set(got.tolist())) == len(real) and (got >= 0).all()
    assert cost[i][got, real].sum() == cost[i][ref_q, real[ref_t]].sum()


def test_runs_inside_a_differentiated_function():
  # The matcher sits inside a train step: under grad (of something else) it must trace and compile.
  def loss(pred, targets, valid):
    cost = jnp.abs(pred[:, :, None] - targets[:, None, :])
    target_for_query, _ = matching.match_queries(jax.lax.stop_gradient(cost), valid)
    matched = jnp.take_along_axis(targets, jnp.maximum(target_for_query, 0), axis=1)
    return jnp.sum(jnp.where(target_for_query >= 0, (pred - matched) ** 2, 0.0))
  pred = jnp.array([[0.0, 1.0, 2.0, 3.0]])
  targets = jnp.array([[2.9, 0.2, 9.0]])
  grad = jax.jit(jax.grad(loss))(pred, targets, jnp.array([[True, True, False]]))
  np.testing.assert_allclose(grad, [[2 * (0.0 - 0.2), 0.0, 0.0, 2 * (3.0 - 2.9)]], atol=1e-6)
