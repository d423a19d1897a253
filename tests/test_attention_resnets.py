"""Stand-alone self-attention (models/sasa.py) and axial attention (models/axial.py): each layer against a direct
numpy loop on tiny inputs (every tensor random, BatchNorm statistics included), parameter counts of the papers'
networks (shape-only builds), and the FLOP counters against XLA's cost analysis. No reference implementation
builds offline, so the counts are checked against the numbers the authors give: Table 1 of Ramachandran et al.
(2019), the Axial-DeepLab PyTorch code's model zoo (Axial-ResNet-26-S) and the official TF code's (deeplab2) exact
backbone counts of Axial-ResNet-S and -L."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.models import axial, conv_flops, sasa
from timm_parity import abstract, num_params

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
RTOL, ATOL = 1e-4, 1e-5


def _randomise(module, seed: int):
  """Every parameter and BatchNorm statistic random (variances positive, scales around 1)."""
  rng = np.random.default_rng(seed)
  for path, var in nnx.iter_graph(module):
    if isinstance(var, nnx.Variable) and hasattr(var, "shape"):
      name = path[-1]
      shape = var[...].shape
      if name == "var":
        value = rng.uniform(0.5, 2.0, shape)
      elif name == "scale":
        value = 1.0 + 0.3 * rng.standard_normal(shape)
      else:
        value = 0.5 * rng.standard_normal(shape)
      var[...] = jnp.asarray(value, jnp.float32)


def _np(v):
  return np.asarray(v[...], np.float64)


def _softmax(z):
  z = np.asarray(z) - np.max(z)
  e = np.exp(z)
  return e / e.sum()


def _bn(x, bn):
  return (x - _np(bn.mean)) / np.sqrt(_np(bn.var) + bn.eps) * _np(bn.scale) + _np(bn.bias)


def local_attention_reference(layer: sasa.LocalSelfAttention, x):
  """The paper's Eq. 3, pixel by pixel: neighbours inside the map only, r = [r_row(a-i), r_col(b-j)]."""
  x = np.asarray(x, np.float64)
  proj = lambda conv: x @ _np(conv.kernel)[0, 0]
  q, k, v = proj(layer.query), proj(layer.key), proj(layer.value)
  bsz, h, w, c = q.shape
  n, d, ks = layer.num_heads, layer.head_dim, layer.kernel_size
  lo = (ks - 1) // 2
  rel_row, rel_col = _np(layer.rel_row), _np(layer.rel_col)
  y = np.zeros((bsz, h, w, c))
  for b in range(bsz):
    for i in range(h):
      for j in range(w):
        for head in range(n):
          sl = slice(head * d, (head + 1) * d)
          logits, values = [], []
          for a in range(i - lo, i - lo + ks):
            for bb in range(j - lo, j - lo + ks):
              if 0 <= a < h and 0 <= bb < w:
                r = np.concatenate([rel_row[a - i + lo], rel_col[bb - j + lo]])
                logits.append(q[b, i, j, sl] @ (k[b, a, bb, sl] + r))
                values.append(v[b, a, bb, sl])
          y[b, i, j, sl] = _softmax(logits) @ np.stack(values)
  if layer.stride > 1:
    y = y[:, :h // 2 * 2, :w // 2 * 2].reshape(bsz, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return y


def stem_reference(stem: sasa.AttentionStem, x):
  """Attention inside each block with spatially-aware values, BatchNorm (eval), block × block max pool."""
  x = np.asarray(x, np.float64)
  s, n, d, m_count, out = stem.block, stem.num_heads, stem.head_dim, stem.value_mixtures, stem.out_features
  q, k = x @ _np(stem.query.kernel)[0, 0], x @ _np(stem.key.kernel)[0, 0]
  wv = _np(stem.value.kernel)[0, 0]
  emb_row, emb_col, nu = _np(stem.emb_row), _np(stem.emb_col), _np(stem.mixture)
  rel_row, rel_col = _np(stem.rel_row), _np(stem.rel_col)
  bsz, h, w, _ = x.shape
  v = np.zeros((bsz, h, w, out))
  for a in range(h):
    for bb in range(w):
      p = _softmax((emb_row[a % s] + emb_col[bb % s]) @ nu)
      weights = sum(p[m] * wv[:, m * out:(m + 1) * out] for m in range(m_count))
      v[:, a, bb] = x[:, a, bb] @ weights
  y = np.zeros((bsz, h, w, out))
  for b in range(bsz):
    for i in range(h):
      for j in range(w):
        by, bx = i // s * s, j // s * s
        for head in range(n):
          sl = slice(head * d, (head + 1) * d)
          logits, values = [], []
          for a in range(by, by + s):
            for bb in range(bx, bx + s):
              r = np.concatenate([rel_row[a - i + s - 1], rel_col[bb - j + s - 1]])
              logits.append(q[b, i, j, sl] @ k[b, a, bb, sl] + q[b, i, j, sl] @ r)
              values.append(v[b, a, bb, sl])
          y[b, i, j, sl] = _softmax(logits) @ np.stack(values)
  y = _bn(y, stem.norm)
  return y.reshape(bsz, h // s, s, w // s, s, out).max(axis=(2, 4))


def axial_reference(layer: axial.AxialAttention, x):
  """Eq. 4 along the layer's axis, position by position, with the code's BatchNorms (eval) and the gates."""
  x = np.asarray(x, np.float64)
  if layer.axis == 2:
    x = x.transpose(0, 2, 1, 3)
  n, d, span, out = layer.num_heads, layer.head_dim, layer.span, layer.out_features
  qkv = _bn(x @ _np(layer.qkv.kernel)[0, 0], layer.bn_qkv)
  table = _np(layer.relative)
  g = _np(layer.gates) if layer.gates is not None else np.ones(4)
  # BatchNorm (eval) of channel c as an affine map a·t + b
  affine = lambda bn: (_np(bn.scale) / np.sqrt(_np(bn.var) + bn.eps),
                       _np(bn.bias) - _np(bn.mean) * _np(bn.scale) / np.sqrt(_np(bn.var) + bn.eps))
  (sa, sb), (oa, ob) = affine(layer.bn_similarity), affine(layer.bn_output)
  bsz, length, other, _ = x.shape
  y = np.zeros((bsz, length, other, out))
  for b in range(bsz):
    for col in range(other):
      for head in range(n):
        t = qkv[b, :, col, head * 2 * d:(head + 1) * 2 * d]
        q, k, v = t[:, :d // 2], t[:, d // 2:d], t[:, d:]
        for o in range(length):
          logits = []
          for p in range(length):
            r = table[p - o + span - 1]
            terms = [q[o] @ k[p], g[0] * (q[o] @ r[:d // 2]), g[1] * (k[p] @ r[d // 2:d])]
            logits.append(sum(sa[i * n + head] * terms[i] + sb[i * n + head] for i in range(3)))
          a = _softmax(logits)
          sv = g[2] * (a @ v)
          sve = g[3] * sum(a[p] * table[p - o + span - 1][d:] for p in range(length))
          for c in range(d):
            for i, val in enumerate((sv[c], sve[c])):
              ch = (head * d + c) * 2 + i
              y[b, o, col, head * d + c] += oa[ch] * val + ob[ch]
  return y.transpose(0, 2, 1, 3) if layer.axis == 2 else y


@pytest.fixture(scope="module")
def layers():
  """The tiny layers and inputs, every tensor random, and their outputs in float32 (one jit each)."""
  rng = np.random.default_rng(0)
  cases = {
      "local": (sasa.LocalSelfAttention(4, 6, kernel_size=3, num_heads=2, stride=2, rngs=nnx.Rngs(0)), (1, 5, 6, 4)),
      "stem": (sasa.AttentionStem(3, 4, block=4, value_mixtures=3, num_heads=2, rngs=nnx.Rngs(2)), (1, 8, 8, 3)),
      # a height then a width layer (both shorter than the span: the table's central offsets), MedT's gates on
      "axial": (axial.AxialAttention2D(6, 8, span=6, num_heads=2, gated=True, rngs=nnx.Rngs(3)), (2, 5, 4, 6)),
  }
  out = {}
  for i, (name, (layer, shape)) in enumerate(cases.items()):
    _randomise(layer, seed=10 + i)
    x = rng.standard_normal(shape).astype(np.float32)
    call = (lambda m, x: m(x)) if name == "local" else (lambda m, x: m(x, train=False))
    out[name] = (layer, x, np.asarray(nnx.jit(call)(layer, jnp.asarray(x))))
  return out


def test_local_self_attention_matches_the_numpy_loop(layers):
  layer, x, got = layers["local"]
  assert got.shape == (1, 2, 3, 6)
  np.testing.assert_allclose(got, local_attention_reference(layer, x), rtol=RTOL, atol=ATOL)


def test_attention_stem_matches_the_numpy_loop(layers):
  stem, x, got = layers["stem"]
  assert got.shape == (1, 2, 2, 4)
  np.testing.assert_allclose(got, stem_reference(stem, x), rtol=RTOL, atol=ATOL)


def test_axial_attention_matches_the_numpy_loop(layers):
  pair, x, got = layers["axial"]
  want = axial_reference(pair.width, axial_reference(pair.height, x))
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_axial_attention_refuses_an_axis_longer_than_its_span(layers):
  pair, _, _ = layers["axial"]
  with pytest.raises(ConfigError, match="span"):
    pair.height.embeddings(7)


def test_parameter_counts_match_the_papers():
  # Ramachandran et al. Table 1 (0.1M precision: ResNet-38's 14.17M is printed 14.1), the Axial-DeepLab code's
  # Axial-ResNet-26-S (5.9M). Full: every depth, both stems, and the conv baseline of the same table.
  names = list(sasa.VARIANTS) if FULL else ["sasa_resnet26"]
  for name in names:
    for stem, paper in (("", sasa.PAPER_PARAMS_M[name][2]), ("_convstem", sasa.PAPER_PARAMS_M[name][1])):
      if stem and not FULL:
        continue
      count = num_params(abstract(name + stem)) / 1e6
      assert abs(count - paper) <= 0.08, (name + stem, count, paper)
  if FULL:
    for name, layers_ in sasa.VARIANTS.items():
      count = num_params(abstract("resnet50", layers=layers_)) / 1e6
      assert abs(count - sasa.PAPER_PARAMS_M[name][0]) <= 0.05, (name, count)
  count = num_params(abstract("axial_resnet26_s")) / 1e6
  assert abs(count - axial.PAPER_PARAMS_M["axial_resnet26_s"]) < 0.05, count
  # The official TF code's own backbone counts, exactly (its relative tables and stem width; no classifier).
  for name in axial.DEEPLAB2_BACKBONE_PARAMS if FULL else ["axial_resnet50_s"]:
    model = abstract(name, num_classes=0, span=axial.DEEPLAB2_SPAN, stem_width=axial.DEEPLAB2_STEM_WIDTH)
    assert num_params(model) == axial.DEEPLAB2_BACKBONE_PARAMS[name], name


TINY = {
    "sasa": ("sasa_resnet26", dict(layers=(1, 1), width=8, num_heads=2, kernel_size=3, num_classes=3,
                                    img_size=8, stem_value_mixtures=2)),
    "axial": ("axial_resnet26_s", dict(layers=(1, 1), width_multiplier=0.125, num_heads=2, num_classes=3,
                                       img_size=16)),
}


@pytest.mark.parametrize("case", sorted(TINY))
def test_forward_flops_match_xla(case):
  name, overrides = TINY[case]
  model = abstract(name, **overrides)
  analytic = models.forward_flops(model, count_padding=False)
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, model.img_size, model.img_size, 3), jnp.float32)
  xla = conv_flops.xla_flops(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state, x) / 2
  assert 0.95 < xla / analytic < 1.05, (case, xla / analytic)
  assert models.embedding_params(model) == 0
