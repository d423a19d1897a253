"""Self-supervised objectives against numpy references, sharded vs single-device gradients, and
the queue / memory bank / EMA state updates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from papers_jax.objectives import contrastive as C
from papers_jax.objectives import memory as M
from papers_jax.objectives import self_distill as S

RNG = np.random.default_rng(0)
N, D, K, V = 16, 8, 24, 4


def rand(*shape):
  return RNG.standard_normal(shape).astype(np.float32)


def norm(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def softmax(x):
  return np.exp(log_softmax(x))


# ---------------------------------------------------------------- numpy references (float64)
def np_info_nce(q, k, queue, t):
  q, k, queue = norm(q), norm(k), norm(queue)
  out = []
  for i in range(len(q)):
    logits = np.concatenate([[q[i] @ k[i]], queue @ q[i]]) / t
    out.append(-log_softmax(logits)[0])
  return np.array(out)


def np_ce_rows(logits, labels):
  return np.array([-log_softmax(row)[j] for row, j in zip(logits, labels)])


def np_moco_v3(q1, q2, k1, k2, t):
  ctr = lambda q, k: np_ce_rows(norm(q) @ norm(k).T / t, np.arange(len(q)))
  return 2 * t * (ctr(q1, k2) + ctr(q2, k1))


def np_nt_xent(z1, z2, t):
  z = norm(np.concatenate([z1, z2]))
  n = len(z1)
  out = []
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    others = [k for k in range(2 * n) if k != i]
    denom = np.sum([np.exp(z[i] @ z[k] / t) for k in others])
    out.append(-np.log(np.exp(z[i] @ z[j] / t) / denom))
  return np.array(out)


def np_nce(pos, neg, t, num_data, z, eps=1e-7):
  m = neg.shape[1]
  pn = 1.0 / num_data
  p_pos = np.exp(np.asarray(pos, np.float64) / t) / z
  p_neg = np.exp(np.asarray(neg, np.float64) / t) / z
  return -(np.log(p_pos / (p_pos + m * pn + eps)) + np.log(m * pn / (p_neg + m * pn + eps)).sum(-1))


def np_clip(i, t, scale):
  logits = scale * norm(i) @ norm(t).T
  labels = np.arange(len(i))
  return 0.5 * (np_ce_rows(logits, labels).mean() + np_ce_rows(logits.T, labels).mean())


def np_byol(p1, p2, z1, z2):
  f = lambda p, z: ((norm(p) - norm(z)) ** 2).sum(-1)
  return f(p1, z2) + f(p2, z1)


def np_simsiam(p1, p2, z1, z2):
  d = lambda p, z: -(norm(p) * norm(z)).sum(-1)
  return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


def np_sinkhorn(scores, eps, iters):
  q = np.exp(np.asarray(scores, np.float64) / eps).T
  k, b = q.shape
  q /= q.sum()
  for _ in range(iters):
    q /= q.sum(axis=1, keepdims=True) * k
    q /= q.sum(axis=0, keepdims=True) * b
  return (q * b).T


def np_swav(scores, t, eps, iters, assign=(0, 1), queue=None):
  v, b = scores.shape[:2]
  total = 0
  for i, crop in enumerate(assign):
    s = scores[crop] if queue is None else np.concatenate([queue[i], scores[crop]])
    q = np_sinkhorn(s, eps, iters)[-b:]
    sub = sum(-(q * log_softmax(scores[u] / t)).sum(-1) for u in range(v) if u != crop)
    total = total + sub / (v - 1)
  return total / len(assign)


def np_dino(student, teacher, center, ts, tt):
  targets = softmax((teacher - center) / tt)
  logs = log_softmax(student / ts)
  terms = [-(targets[a] * logs[b]).sum(-1) for a in range(len(teacher)) for b in range(len(student)) if a != b]
  return sum(terms) / len(terms)


# ---------------------------------------------------------------- cases: (fn, args, reference)
BANK = norm(rand(64, D)).astype(np.float32)
INDEX = RNG.integers(0, 64, N)
NEG_INDEX = RNG.integers(0, 64, (N, 5))


def _nce(features):
  pos, neg = C.bank_logits(features, BANK, INDEX, NEG_INDEX)
  return C.nce_loss(pos, neg, temperature=0.07, num_data=64, normalizer=3.0)


def _np_nce(features):
  f = norm(features)
  return np_nce((f * BANK[INDEX]).sum(-1), np.einsum("nc,nmc->nm", f, BANK[NEG_INDEX]), 0.07, 64, 3.0)


BANK2 = norm(rand(64, D)).astype(np.float32)


def _cmc(z1, z2):
  return C.cmc_nce_loss(z1, z2, BANK, BANK2, INDEX, NEG_INDEX, temperature=0.07, num_data=64, normalizers=(3.0, 5.0))


def _np_cmc(z1, z2):
  a, b = norm(z1), norm(z2)
  return (np_nce((a * BANK2[INDEX]).sum(-1), np.einsum("nc,nmc->nm", a, BANK2[NEG_INDEX]), 0.07, 64, 3.0)
          + np_nce((b * BANK[INDEX]).sum(-1), np.einsum("nc,nmc->nm", b, BANK[NEG_INDEX]), 0.07, 64, 5.0))


QUEUE = rand(K, D)
QUEUE_SCORES = rand(2, 8, K) * 0.3
CENTER = rand(K) * 0.1

CASES = {
    "moco_v1_info_nce": (lambda q, k: C.info_nce(q, k, QUEUE, 0.07), (rand(N, D), rand(N, D)),
                         lambda q, k: np_info_nce(q, k, QUEUE, 0.07)),
    "moco_v3": (lambda q1, q2, k1, k2: C.moco_v3_loss(q1, q2, k1, k2, 0.2), tuple(rand(N, D) for _ in range(4)),
                lambda *a: np_moco_v3(*a, 0.2)),
    "simclr_nt_xent": (lambda a, b: C.nt_xent(a, b, 0.5), (rand(N, D), rand(N, D)), lambda a, b: np_nt_xent(a, b, 0.5)),
    "instdisc_nce": (_nce, (rand(N, D),), _np_nce),
    "cmc_nce": (_cmc, (rand(N, D), rand(N, D)), _np_cmc),
    "clip": (lambda i, t: C.clip_loss(i, t, 14.3), (rand(N, D), rand(N, D)), lambda i, t: np_clip(i, t, 14.3)),
    "byol": (S.byol_loss, tuple(rand(N, D) for _ in range(4)), np_byol),
    "simsiam": (S.simsiam_loss, tuple(rand(N, D) for _ in range(4)), np_simsiam),
    "swav": (lambda s: S.swav_loss(s, temperature=0.1, epsilon=0.05, iterations=3), (rand(V, N, K) * 0.3,),
             lambda s: np_swav(s, 0.1, 0.05, 3)),
    "swav_with_queue": (lambda s: S.swav_loss(s, queue_scores=QUEUE_SCORES), (rand(V, N, K) * 0.3,),
                        lambda s: np_swav(s, 0.1, 0.05, 3, queue=QUEUE_SCORES)),
    "dino": (lambda s, t: S.dino_loss(s, t, CENTER, student_temperature=0.1, teacher_temperature=0.04),
             (rand(V, N, K), rand(2, N, K)), lambda s, t: np_dino(s, t, CENTER, 0.1, 0.04)),
}


@pytest.mark.parametrize("name", CASES)
def test_objective_equals_numpy_reference(name):
  fn, args, reference = CASES[name]
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(fn)(*args))
  np.testing.assert_allclose(ours, reference(*args), rtol=1e-5, atol=1e-5)


def batch_axis(x):
  return 1 if x.ndim == 3 else 0  # (views, B, ...) stacks keep the batch second


@pytest.mark.parametrize("name", CASES)
def test_gradient_on_8_devices_equals_single_device(name):
  """The batch is sharded 8 ways; negatives and Sinkhorn/centre sums must still span all of it."""
  fn, args, _ = CASES[name]
  loss = lambda *a: jnp.mean(fn(*a))
  grad = jax.value_and_grad(loss, argnums=tuple(range(len(args))))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8])
  specs = tuple(P(*([None] * batch_axis(a) + ["data"])) for a in args)
  shardings = tuple(NamedSharding(mesh, s) for s in specs)
  with jax.default_matmul_precision("highest"):
    single = jax.jit(grad)(*[jax.device_put(a, jax.devices()[0]) for a in args])
    sharded = jax.jit(grad, in_shardings=shardings)(*[jax.device_put(a, s) for a, s in zip(args, shardings)])
  assert sharded[1][0].sharding.spec == specs[0] or len(sharded[1][0].sharding.device_set) == 8
  np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=1e-5)
  for g_sharded, g_single in zip(sharded[1], single[1]):
    np.testing.assert_allclose(np.asarray(g_sharded), np.asarray(g_single), rtol=1e-5, atol=1e-6)
  assert any(np.abs(np.asarray(g)).max() > 0 for g in single[1])  # a gradient flows


def test_losses_at_init_are_the_papers_chance_levels():
  q = norm(rand(256, 128)).astype(np.float32)
  # MoCo with a random queue: about log(K + 1); NT-Xent: about log(2N − 1).
  queue = norm(rand(4096, 128)).astype(np.float32)
  assert abs(float(C.info_nce(q, rand(256, 128), queue, 1.0).mean()) - np.log(4097)) < 0.05
  assert abs(float(C.nt_xent(q, rand(256, 128), 1.0).mean()) - np.log(511)) < 0.05


def test_sinkhorn_codes_use_every_prototype_equally():
  codes = np.asarray(S.sinkhorn(jnp.asarray(rand(64, 16) * 0.1), epsilon=0.05, iterations=50))
  np.testing.assert_allclose(codes.sum(1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(codes.sum(0), 64 / 16, rtol=1e-3)


def test_dino_sharpening_lowers_the_entropy_of_the_targets():
  teacher = rand(2, N, K)
  entropy = lambda p: -(p * np.log(p + 1e-12)).sum(-1).mean()
  sharp = softmax(teacher / 0.04)
  soft = softmax(teacher / 1.0)
  assert entropy(sharp) < entropy(soft)
  center = np.zeros(K, np.float32)
  new = np.asarray(S.update_center(center, teacher, momentum=0.9))
  np.testing.assert_allclose(new, 0.1 * teacher.reshape(-1, K).mean(0), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- state updates
def test_queue_holds_exactly_the_last_k_keys_in_order_for_any_batch_sizes():
  size, dim = 12, 3
  queue, pointer = jnp.zeros((size, dim)), jnp.zeros((), jnp.int32)
  history = []
  enqueue = jax.jit(M.enqueue)
  for b in [4, 4, 5, 1, 7, 12, 3, 15, 2, 6]:
    keys = RNG.standard_normal((b, dim)).astype(np.float32)
    history.extend(keys)
    queue, pointer = enqueue(queue, pointer, jnp.asarray(keys))
    if len(history) >= size:
      np.testing.assert_array_equal(np.asarray(M.queue_in_order(queue, pointer)), np.array(history[-size:]))
  assert queue.shape == (size, dim)


def test_queue_multiple_of_batch_uses_a_contiguous_update():
  queue, pointer = jnp.zeros((8, 2)), jnp.zeros((), jnp.int32)
  for i in range(5):
    queue, pointer = M.enqueue(queue, pointer, jnp.full((4, 2), float(i)))
  np.testing.assert_array_equal(np.asarray(M.queue_in_order(queue, pointer))[:, 0], [3, 3, 3, 3, 4, 4, 4, 4])


def test_memory_bank_update_is_the_normalised_momentum_mix():
  bank = norm(rand(10, 4)).astype(np.float32)
  index = np.array([2, 7])
  feats = rand(2, 4)
  new = np.asarray(M.update_bank(jnp.asarray(bank), index, jnp.asarray(feats), momentum=0.5))
  expected = bank.copy()
  expected[index] = norm(0.5 * bank[index] + 0.5 * norm(feats))
  np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)


def test_ema_after_n_steps_equals_the_closed_form():
  m = 0.999
  target = {"w": rand(3, 2), "b": rand(2)}
  online = [{"w": rand(3, 2), "b": rand(2)} for _ in range(20)]
  update = jax.jit(functools.partial(M.ema_update, momentum=m))
  t = target
  for o in online:
    t = update(t, o)
  n = len(online)
  for key in target:  # ξ_n = mⁿ ξ₀ + (1 − m) Σ_k m^(n−1−k) θ_k
    closed = m ** n * target[key] + (1 - m) * sum(m ** (n - 1 - k) * online[k][key] for k in range(n))
    np.testing.assert_allclose(np.asarray(t[key]), closed, rtol=1e-5, atol=1e-6)


def test_cosine_momentum_rises_from_base_to_one():
  assert float(M.cosine_momentum(0, 100, 0.996)) == pytest.approx(0.996)
  assert float(M.cosine_momentum(50, 100, 0.996)) == pytest.approx(0.998)
  assert float(M.cosine_momentum(100, 100, 0.996)) == pytest.approx(1.0)


# ---------------------------------------------------------------- stop-gradients
# Each objective documents which inputs are targets (no gradient). Removing one of its
# `stop_gradient`s leaves every value above unchanged, so only a gradient check can catch it.
def _mae(pred, images, norm_pix_loss):
  from papers_jax.objectives import reconstruction
  mask = jnp.asarray([[1, 0, 1, 1], [0, 1, 1, 0]], jnp.float32)
  return reconstruction.mae_loss(pred, images, mask, 4, norm_pix_loss=norm_pix_loss)


STOP_GRADIENT = {  # name: (fn, args, argnums that must get exactly no gradient)
    "moco_info_nce_keys_and_queue": (lambda q, k, queue: C.info_nce(q, k, queue, 0.07),
                                     (rand(N, D), rand(N, D), rand(K, D)), (1, 2)),
    "moco_v3_momentum_keys": (lambda q1, q2, k1, k2: C.moco_v3_loss(q1, q2, k1, k2, 0.2),
                              tuple(rand(N, D) for _ in range(4)), (2, 3)),
    "byol_targets": (S.byol_loss, tuple(rand(N, D) for _ in range(4)), (2, 3)),
    "simsiam_projections": (S.simsiam_loss, tuple(rand(N, D) for _ in range(4)), (2, 3)),
    "swav_sinkhorn_codes": (lambda s: S.sinkhorn(s, epsilon=0.05, iterations=3), (rand(N, K) * 0.3,), (0,)),
    "swav_queue_scores": (lambda s, q: S.swav_loss(s, queue_scores=q), (rand(V, N, K) * 0.3, QUEUE_SCORES), (1,)),
    "dino_teacher": (lambda s, t: S.dino_loss(s, t, CENTER, student_temperature=0.1, teacher_temperature=0.04),
                     (rand(V, N, K), rand(2, N, K)), (1,)),
    "dino_center_update": (lambda t: S.update_center(CENTER, t, 0.9), (rand(2, N, K),), (0,)),
    "instdisc_bank": (lambda f, bank: C.nce_loss(*C.bank_logits(f, bank, INDEX, NEG_INDEX), temperature=0.07,
                                                 num_data=64, normalizer=3.0), (rand(N, D), BANK), (1,)),
    "nce_normalizer": (lambda logits: C.estimate_nce_normalizer(logits, temperature=0.07, num_data=64),
                       (rand(N, 6),), (0,)),
    "bank_update": (lambda bank, f: M.update_bank(bank, INDEX, f, 0.5), (BANK, rand(N, D)), (1,)),
    "queue_update": (lambda queue, keys: M.enqueue(queue, jnp.zeros((), jnp.int32), keys)[0],
                     (rand(K, D), rand(8, D)), (1,)),
    "mae_pixel_targets": (lambda p, x: _mae(p, x, False), (rand(2, 4, 16), rand(2, 8, 8, 1)), (1,)),
    "mae_normalized_targets": (lambda p, x: _mae(p, x, True), (rand(2, 4, 16), rand(2, 8, 8, 1)), (1,)),
    # No stop-gradient promised: both sides must learn.
    "simclr_both_views": (lambda a, b: C.nt_xent(a, b, 0.5), (rand(N, D), rand(N, D)), ()),
    "clip_both_towers": (lambda i, t: C.clip_loss(i, t, 14.3), (rand(N, D), rand(N, D)), ()),
}


@pytest.mark.parametrize("name", STOP_GRADIENT)
def test_targets_get_no_gradient_and_the_online_inputs_do(name):
  fn, args, frozen = STOP_GRADIENT[name]

  def loss(*a):  # a fixed random weighting, so no gradient vanishes by symmetry
    out = fn(*a)
    return jnp.sum(out * jnp.cos(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape))

  grads = jax.grad(loss, argnums=tuple(range(len(args))))(*[jnp.asarray(a) for a in args])
  for i, g in enumerate(grads):
    if i in frozen:
      np.testing.assert_array_equal(np.asarray(g), 0.0, err_msg=f"{name}: argument {i} is a target")
    else:
      assert np.abs(np.asarray(g)).max() > 1e-6, f"{name}: argument {i} must get a gradient"


def test_swav_gradient_treats_the_codes_as_constants():
  """d loss / d s_u = Σ_{c ≠ u} (softmax(s_u/τ) − q_c) / (τ (V − 1) |assign| B) with the Sinkhorn codes
  q_c held fixed: the scores of the assigned crops get no gradient through their own codes."""
  t, eps, iters = 0.1, 0.05, 3
  scores = rand(V, N, K) * 0.3
  grad = np.asarray(jax.grad(lambda s: S.swav_loss(s, temperature=t, epsilon=eps, iterations=iters).mean())(scores))
  codes = {c: np_sinkhorn(scores[c], eps, iters) for c in (0, 1)}
  expected = np.zeros((V, N, K))
  for u in range(V):
    for c, q in codes.items():
      if c != u:
        expected[u] += (softmax(scores[u] / t) - q) / (t * (V - 1) * len(codes) * N)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)
