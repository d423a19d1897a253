"""COMET: each level's loss against a numpy reference written with loops, the encoder's parameter count in
the paper's PTB configuration, and the generated ECG-like set's hierarchy."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.data import ecg_like
from papers_jax.objectives import comet


def np_id_loss(z1, z2, ids, tau):
  """For each ordered pair (i, j), i ≠ j, of the same id: exp(cos / τ) of view-1 row i and view-2 row j over
  the sum of row i's (j > i) or of column j's (j < i) terms; each triangle's −mean log, then their mean."""
  z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
  b = len(z1)
  flat = lambda z: (z / np.sqrt((z ** 2).sum(axis=1, keepdims=True))).reshape(b, -1)  # noqa: E731  (over time)
  v1, v2 = flat(z1), flat(z2)
  e = np.zeros((b, b))
  for i in range(b):
    for j in range(b):
      e[i, j] = math.exp(v1[i] @ v2[j] / (np.linalg.norm(v1[i]) * np.linalg.norm(v2[j]) * tau))
  upper, lower = [], []
  for i in range(b):
    for j in range(b):
      if ids[i] == ids[j] and j > i:
        upper.append(-math.log(e[i, j] / e[i].sum()))
      if ids[i] == ids[j] and j < i:
        lower.append(-math.log(e[i, j] / e[:, j].sum()))
  terms = [np.mean(t) for t in (upper, lower) if t]
  return np.mean(terms) if terms else 0.0


def np_nll(scores, positive, exclude):
  """−log softmax of `scores` at `positive`, the entry `exclude` left out."""
  keep = [k for k in range(len(scores)) if k != exclude]
  return -(scores[positive] - math.log(sum(math.exp(scores[k]) for k in keep)))


def np_sample(z1, z2):
  b, t = z1.shape[:2]
  total = 0.0
  for s in range(t):
    z = np.concatenate([z1[:, s], z2[:, s]]).astype(np.float64)
    sim = z @ z.T
    total += sum(np_nll(sim[i], (i + b) % (2 * b), i) for i in range(2 * b))
  return total / (2 * b * t)


def np_observation(z1, z2):
  b, t = z1.shape[:2]
  total = 0.0
  for i in range(b):
    z = np.concatenate([z1[i], z2[i]]).astype(np.float64)
    sim = z @ z.T
    total += sum(np_nll(sim[s], (s + t) % (2 * t), s) for s in range(2 * t))
  return total / (2 * b * t)


def np_hierarchical(fn, z1, z2):
  values = []
  while z1.shape[1] > 1:
    values.append(fn(z1, z2))
    n = z1.shape[1] // 2
    z1 = np.maximum(z1[:, 0:2 * n:2], z1[:, 1:2 * n:2])
    z2 = np.maximum(z2[:, 0:2 * n:2], z2[:, 1:2 * n:2])
  return np.mean(values)


@pytest.fixture(scope="module")
def views():
  rng = np.random.default_rng(0)
  return [rng.normal(size=(6, 11, 4)).astype(np.float32) * 0.5 for _ in range(2)]


def test_id_levels_equal_the_numpy_reference(views):
  loss = jax.jit(comet.id_contrastive_loss, static_argnums=3)
  z1, z2 = views
  for ids in ([0, 0, 1, 1, 1, 2], [3, 1, 3, 1, 3, 1], [0, 1, 2, 3, 4, 5]):
    for tau in (0.1, 0.5):
      got = float(loss(z1, z2, jnp.asarray(ids), tau))
      np.testing.assert_allclose(got, np_id_loss(z1, z2, ids, tau), rtol=1e-5, atol=1e-7, err_msg=str(ids))
  assert float(loss(z1, z2, jnp.arange(6), 0.1)) == 0.0  # no pair of the same id: no term


def test_sample_and_observation_levels_equal_the_numpy_reference(views):
  z1, z2 = views  # 11 steps: scales 11, 5, 2 (an odd step dropped at each pooling)
  ids = np.asarray([0, 0, 1, 1, 2, 2])

  def levels(a, b):
    total, _ = comet.comet_loss({level: (a, b) for level in comet.LEVELS}, ids, ids // 2, (0.1, 0.7, 0.1, 0.1), 0.1)
    return comet.sample_loss(a, b), comet.observation_loss(a, b), total
  sample, observation, total = jax.jit(levels)(z1, z2)
  np.testing.assert_allclose(float(sample), np_hierarchical(np_sample, z1, z2), rtol=1e-5)
  np.testing.assert_allclose(float(observation), np_hierarchical(np_observation, z1, z2), rtol=1e-5)
  # the weighted sum of the four levels
  want = (0.1 * np_id_loss(z1, z2, ids, 0.1) + 0.7 * np_id_loss(z1, z2, ids // 2, 0.1)
          + 0.1 * float(sample) + 0.1 * float(observation))
  np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_paper_configuration_parameter_count():
  """The paper's PTB configuration: 15 leads in, hidden 64, depth 10, 320 out; counted by hand below."""
  model = nnx.eval_shape(lambda: models.create("comet", input_dims=15, output_dims=320, hidden_dims=64, depth=10,
                                               rngs=nnx.Rngs(0)))
  input_fc = 15 * 64 + 64
  hidden_block = 2 * (64 * 64 * 3 + 64)  # two kernel-3 convolutions with biases
  last_block = (64 * 320 * 3 + 320) + (320 * 320 * 3 + 320) + (64 * 320 + 320)  # + the 1×1 projection
  params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert params == input_fc + 10 * hidden_block + last_block == 638_144
  out = jax.eval_shape(lambda m, x: m(x, mask="continuous"), model, jax.ShapeDtypeStruct((2, 30, 15), jnp.float32))
  assert out.shape == (2, 30, 320)


def test_ecg_like_hierarchy_and_inter_patient_split():
  config = ml_collections.ConfigDict(dict(name="ecg_like"))
  train, test = ecg_like.ECGLikeSource(config, "train"), ecg_like.ECGLikeSource(config, "test")
  shape = ecg_like.ECG_LIKE
  assert len(train) == shape["train_patients"] * shape["trials"] * shape["samples"]
  assert len(test) == (shape["patients"] - shape["train_patients"]) * shape["trials"] * shape["samples"]
  assert not set(train.patients) & set(test.patients)  # patient-independent
  for source in (train, test):
    assert source.series.shape[1:] == (shape["length"], 3) and np.isfinite(source.series).all()
    assert source.labels.mean() == 0.5
    for trial in np.unique(source.trials):  # each trial belongs to one patient, and a patient has one label
      rows = source.trials == trial
      assert len(np.unique(source.patients[rows])) == 1 and rows.sum() == shape["samples"]
    for patient in np.unique(source.patients):
      assert len(np.unique(source.labels[source.patients == patient])) == 1
  np.testing.assert_allclose(train.series.reshape(-1, 3).mean(0), 0, atol=1e-4)
  example = train[0]
  assert set(example) == {"series", "label", "patient", "trial"}
