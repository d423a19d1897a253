"""The Transformer ("Attention Is All You Need"): parameter counts, position encodings, tied embeddings,
KV-cached decoding, beam search against exhaustive search and against greedy decoding, source padding,
and the paper's Adam + inverse-square-root schedule."""

import functools
import importlib.util
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from papers_jax import beam_search, decoding, models
from papers_jax.core import optim
from papers_jax.models.transformer import Transformer, peak_learning_rate, sinusoidal_position_encoding

PAD, BOS, EOS = 0, 1, 2
TINY = dict(num_layers=2, d_model=16, d_ff=32, num_heads=4, pad_id=PAD, bos_id=BOS, eos_id=EOS)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def jitted(model, method: str = "__call__", **static):
  """model.<method>(*arrays, **static) as a jitted function of the arrays."""
  graphdef, state = nnx.split(model)
  return functools.partial(jax.jit(lambda state, *args: getattr(nnx.merge(graphdef, state), method)(*args, **static)),
                           state)


def filled(model, seed=0, std=0.3):
  """`model` with every param drawn in numpy (instant, unlike random init on device): N(0, std²),
  LayerNorm scales 1 + N(0, std²)."""
  rng = np.random.RandomState(seed)

  def fill(path, v):
    base = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
    return jnp.asarray(base + std * rng.randn(*v.shape), v.dtype)

  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
  nnx.update(model, state)
  return model


@pytest.fixture(scope="module")
def tiny():
  """Vocabulary 5 (pad, bos, eos and two words): small enough to enumerate every output of length ≤ 4."""
  return filled(nnx.eval_shape(lambda: Transformer(vocab_size=5, **TINY, rngs=FixedKeyRngs())))


@pytest.fixture(scope="module")
def forward(tiny):
  """Jitted teacher-forced logits, forward(src, tgt_in, src_mask, params=None); other params can be passed in."""
  graphdef, params, rest = nnx.split(tiny, nnx.Param, ...)
  fn = jax.jit(lambda params, src, tgt, mask: nnx.merge(graphdef, params, rest)(src, tgt, src_mask=mask))
  return lambda src, tgt, mask, params=params: fn(params, src, tgt, mask)


# ------------------------------------------------------------------ size and structure


def analytic_count(vocab, n, d, d_ff):
  attn = 4 * d * d + 4 * d  # q, k, v, out projections with biases
  ffn = 2 * d * d_ff + d_ff + d
  encoder = n * (attn + ffn + 2 * 2 * d)
  decoder = n * (2 * attn + ffn + 3 * 2 * d)
  return vocab * d + encoder + decoder  # one embedding matrix, also the output projection


@pytest.mark.parametrize("name,paper", [("transformer_base", 65e6), ("transformer_big", 213e6)])
def test_parameter_counts_at_vocab_37000(name, paper):
  cfg = models.model_config(name)
  model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs()))
  count = num_params(model)
  assert cfg["vocab_size"] == 37000
  assert count == analytic_count(37000, cfg["num_layers"], cfg["d_model"], cfg["d_ff"])
  # base 63,082,496 (-3.0%), big 214,245,376 (+0.6%): the paper's Table 3 rounds and its count depends on its vocabulary
  assert abs(count - paper) / paper < 0.035
  assert cfg["dropout_rate"] == {"transformer_base": 0.1, "transformer_big": 0.3}[name]


def test_position_encoding_is_the_papers_formula():
  length, d = 60, 32
  want = np.zeros((length, d))
  for pos in range(length):
    for i in range(d // 2):
      want[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
      want[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
  np.testing.assert_allclose(sinusoidal_position_encoding(length, d), want, atol=1e-6)


def test_one_embedding_matrix_is_shared_with_the_output_projection(tiny, forward):
  vocab_params = [p for p in jax.tree.leaves(nnx.state(tiny, nnx.Param)) if 5 in p.shape]
  assert len(vocab_params) == 1 and vocab_params[0].shape == (5, 16)
  assert tuple(tiny.embedding.get_metadata()["axes"]) == ("vocab", "embed")
  src, tgt, mask = jnp.array([[3, 3]]), jnp.array([[BOS, 3]]), jnp.array([[1, 1]])  # 0, 2 and 4 appear in neither
  params = nnx.state(tiny, nnx.Param)
  base = forward(src, tgt, mask)

  def changed(row):
    """Which logits change when one row of the embedding matrix changes."""
    new = jax.tree.map(lambda x: x, params)
    new["embedding"][...] = params["embedding"][...].at[row].add(0.5)
    return np.abs(np.asarray(forward(src, tgt, mask, new) - base)).max(axis=(0, 1)) > 1e-6

  # Rows 0, 2 and 4 are used only by the output projection: only their own token's logit moves.
  # Rows 1 and 3 are also input embeddings here: every logit moves.
  for row in (0, 2, 4):
    np.testing.assert_array_equal(changed(row), np.arange(5) == row)
  assert changed(1).all() and changed(3).all()


def test_layers_match_torch_nn_transformer(tiny, forward):
  """Post-LN encoder/decoder layers = PyTorch's nn.TransformerEncoderLayer / DecoderLayer (norm_first=False,
  ReLU, eps 1e-6, no final norm) with our weights copied in; every tensor of ours is random, biases included."""
  if importlib.util.find_spec("torch") is None:
    pytest.skip("needs torch")
  import torch

  d, heads, d_ff = TINY["d_model"], TINY["num_heads"], TINY["d_ff"]
  kw = dict(dropout=0.0, activation="relu", layer_norm_eps=1e-6, batch_first=True, norm_first=False)
  encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(d, heads, d_ff, **kw), 2, norm=None,
                                        enable_nested_tensor=False).eval()
  decoder = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(d, heads, d_ff, **kw), 2, norm=None).eval()
  t = lambda x: torch.from_numpy(np.array(x, np.float32))  # noqa: E731
  square = lambda kernel: np.asarray(kernel).reshape(d, d).T  # ours (in, ..., out) → torch (out, in)  # noqa: E731

  def load_common(ref, ours, norms):
    ref.linear1.weight.data, ref.linear1.bias.data = t(ours.mlp.fc1.kernel[...].T), t(ours.mlp.fc1.bias[...])
    ref.linear2.weight.data, ref.linear2.bias.data = t(ours.mlp.fc2.kernel[...].T), t(ours.mlp.fc2.bias[...])
    for name in norms:
      getattr(ref, name).weight.data = t(getattr(ours, name).scale[...])
      getattr(ref, name).bias.data = t(getattr(ours, name).bias[...])

  def load_self_attn(ref, ours):
    kernel, bias = ours.qkv.kernel[...], ours.qkv.bias[...]
    ref.in_proj_weight.data = t(np.concatenate([square(kernel[:, j]) for j in range(3)]))
    ref.in_proj_bias.data = t(np.asarray(bias).reshape(-1))
    ref.out_proj.weight.data, ref.out_proj.bias.data = t(square(ours.proj.kernel[...])), t(ours.proj.bias[...])

  for ref, ours in zip(encoder.layers, tiny.encoder):
    load_self_attn(ref.self_attn, ours.self_attn)
    load_common(ref, ours, ("norm1", "norm2"))
  for ref, ours in zip(decoder.layers, tiny.decoder):
    load_self_attn(ref.self_attn, ours.self_attn)
    cross = ours.cross_attn
    ref.multihead_attn.in_proj_weight.data = t(np.concatenate(
        [square(cross.q.kernel[...]), square(cross.kv.kernel[:, 0]), square(cross.kv.kernel[:, 1])]))
    ref.multihead_attn.in_proj_bias.data = t(np.concatenate(
        [np.asarray(cross.q.bias[...]).reshape(-1), np.asarray(cross.kv.bias[...]).reshape(-1)]))
    ref.multihead_attn.out_proj.weight.data = t(square(cross.proj.kernel[...]))
    ref.multihead_attn.out_proj.bias.data = t(cross.proj.bias[...])
    load_common(ref, ours, ("norm1", "norm2", "norm3"))

  src = np.array([[3, 4, 4, 3, 4, 0], [4, 3, 3, 0, 0, 0]])
  mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
  tgt = np.array([[BOS, 4, 3, 0, 3], [BOS, 3, 3, 4, 1]])
  table = np.asarray(tiny.embedding[...])
  embed = lambda x: t(table[x] * math.sqrt(d) + sinusoidal_position_encoding(x.shape[1], d))  # noqa: E731
  with torch.no_grad():
    memory = encoder(embed(src), src_key_padding_mask=t(mask) == 0)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
    out = decoder(embed(tgt), memory, tgt_mask=causal, memory_key_padding_mask=t(mask) == 0)
    want = (out @ t(table).T).numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(forward(jnp.asarray(src), jnp.asarray(tgt), jnp.asarray(mask)), want, atol=1e-4)


# ------------------------------------------------------------------ incremental decoding


@pytest.mark.parametrize("project_memory", [True, False])
def test_cached_decoding_equals_teacher_forcing(tiny, forward, project_memory):
  src = jnp.array([[3, 4, 4, 3, 4, 0], [4, 3, 3, 0, 0, 0]])
  src_mask = jnp.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
  tgt = jnp.array([[BOS, 4, 3, 0, 3, 4, 2], [BOS, 3, 3, 4, 1, 4, 4]])

  def incremental(model, src, src_mask, tgt):
    memory = model.encode(src, src_mask)
    cache = model.init_cache(memory, 9, project_memory=project_memory)
    memory = None if project_memory else memory
    logits, cache = model.decode_step(tgt[:, :3], cache, memory, src_mask)  # a prefix, then one token at a time
    steps = [logits]
    for t in range(3, 7):
      logits, cache = model.decode_step(tgt[:, t:t + 1], cache, memory, src_mask)
      steps.append(logits)
    return jnp.concatenate(steps, axis=1), cache["self_attn"][0].index

  with jax.default_matmul_precision("highest"):
    full = forward(src, tgt, src_mask)
    steps, index = nnx.jit(incremental)(tiny, src, src_mask, tgt)
  assert steps.dtype == full.dtype == jnp.float32 and full.shape == (2, 7, 5) and int(index) == 7
  np.testing.assert_allclose(steps, full, atol=1e-5)


def test_source_padding_does_not_change_the_outputs(tiny, forward):
  short = jnp.array([[3, 4, 4]])
  padded = jnp.array([[3, 4, 4, 3, 1, 2], [4, 3, 3, 3, 4, 0]])  # row 0 = `short` + garbage under the mask
  mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
  tgt = jnp.array([[BOS, 4, 3, 4]])
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(forward(padded, jnp.tile(tgt, (2, 1)), mask)[:1], forward(short, tgt, short > 0),
                               atol=1e-5)
    beam_padded = jitted(tiny, "translate", max_len=8)(padded, mask)
    beam_short = jitted(tiny, "translate", max_len=8)(short, short > 0)
  np.testing.assert_array_equal(beam_padded[0][:1], beam_short[0])
  np.testing.assert_allclose(beam_padded[1][:1], beam_short[1], atol=1e-5)


# ------------------------------------------------------------------ beam search


def length_penalised_scores(forward, src, src_mask, hyps, alpha):
  """Teacher-forced log P(y | src) / ((5 + |y|) / 6)^α of each hypothesis (rows of `hyps`, pad after EOS)."""
  lengths = np.array([list(h).index(EOS) + 1 if EOS in h else len(h) for h in hyps])
  tgt_in = np.concatenate([np.full((len(hyps), 1), BOS), hyps[:, :-1]], axis=1)
  n = len(hyps)
  with jax.default_matmul_precision("highest"):
    logits = forward(jnp.tile(src, (n, 1)), jnp.asarray(tgt_in), jnp.tile(src_mask, (n, 1)))
  logp = np.asarray(jax.nn.log_softmax(logits), np.float64)
  token_logp = np.take_along_axis(logp, hyps[:, :, None], axis=2)[:, :, 0]
  keep = np.arange(hyps.shape[1])[None] < lengths[:, None]
  return (token_logp * keep).sum(1) / ((5 + lengths) / 6) ** alpha


def every_hypothesis(vocab, max_len):
  """All outputs: a sequence ending in EOS at length 1..max_len (pad after it), or max_len tokens without EOS."""
  words = [t for t in range(vocab) if t != EOS]
  hyps = []
  for length in range(1, max_len + 1):
    for prefix in itertools.product(words, repeat=length - 1):
      hyps.append(list(prefix) + [EOS] + [PAD] * (max_len - length))
  hyps += [list(p) for p in itertools.product(words, repeat=max_len)]
  return np.array(hyps)


def test_beam_search_finds_the_exhaustive_best(tiny, forward):
  max_len, alpha = 4, 0.6
  hyps = every_hypothesis(5, max_len)  # 341
  src = jnp.array([[3, 4, 3], [4, 4, 0]])
  mask = jnp.array([[1, 1, 1], [1, 1, 0]])
  with jax.default_matmul_precision("highest"):
    # A beam of 320 = 5 · 4^3 keeps every candidate at every step: the search is exhaustive.
    tokens, scores = jitted(tiny, "translate", beam_size=320, alpha=alpha, max_len=max_len)(src, mask)
    narrow_tokens, narrow_scores = jitted(tiny, "translate", beam_size=2, alpha=alpha, max_len=max_len)(src, mask)
  for b in range(2):
    scored = length_penalised_scores(forward, src[b:b + 1], mask[b:b + 1], hyps, alpha)
    best = int(np.argmax(scored))
    assert np.sort(scored)[-1] - np.sort(scored)[-2] > 1e-4  # a unique best
    np.testing.assert_array_equal(tokens[b], hyps[best])
    np.testing.assert_allclose(scores[b], scored[best], atol=1e-5)
    # A narrow beam (its caches reordered between beams) returns a real hypothesis with its true score.
    mine = int(np.flatnonzero((hyps == np.asarray(narrow_tokens[b])).all(1))[0])
    np.testing.assert_allclose(narrow_scores[b], scored[mine], atol=1e-5)
    assert narrow_scores[b] <= scored[best] + 1e-6


def test_beam_size_one_is_greedy(tiny):
  # A step function whose next token depends on the position and the previous token; EOS ends
  # some rows early and others run to max_len.
  vocab, max_len = 6, 6
  table = (jax.random.normal(jax.random.key(0), (max_len, vocab, vocab)) * 2.0).at[:, :, EOS].add(-1.0)

  def step_fn(tokens, cache):
    return table[cache["pos"]][tokens[:, -1]][:, None], {"pos": cache["pos"] + 1}

  start = jnp.arange(vocab)
  cache = {"pos": jnp.zeros((), jnp.int32)}
  greedy = jax.jit(lambda: decoding.generate(step_fn, cache, start[:, None], max_new_tokens=max_len, eos_id=EOS,
                                             pad_id=PAD))()
  beam, _ = jax.jit(lambda: beam_search.beam_search(step_fn, cache, start, beam_size=1, max_len=max_len, eos_id=EOS,
                                                    pad_id=PAD))()
  ended = np.asarray(greedy == EOS).any(1)
  assert ended.any() and not ended.all()
  np.testing.assert_array_equal(beam, greedy)
  # The model's own beam 1 and greedy decoding.
  src = jax.random.randint(jax.random.key(3), (4, 6), 0, 5)
  np.testing.assert_array_equal(jitted(tiny, "translate", beam_size=1, max_len=8)(src, src >= 0)[0],
                                jitted(tiny, "translate_greedy", max_len=8)(src, src >= 0))


def test_translate_decodes_up_to_the_input_length_plus_50(tiny):
  src = jax.ShapeDtypeStruct((3, 7), jnp.int32)
  tokens, scores = jax.eval_shape(lambda s: tiny.translate(s), src)
  assert tokens.shape == (3, 7 + 50) and tokens.dtype == jnp.int32 and scores.shape == (3,)
  assert jax.eval_shape(lambda s: tiny.translate_greedy(s), src).shape == (3, 7 + 50)


def test_training_mode_uses_dropout(tiny):
  src, tgt = jnp.array([[3, 4, 4]]), jnp.array([[BOS, 4, 3]])
  train = nnx.jit(lambda model, key: model(src, tgt, train=True, rngs=nnx.Rngs(dropout=key)))
  a, b = train(tiny, jax.random.key(0)), train(tiny, jax.random.key(1))
  assert not np.allclose(a, b)


# ------------------------------------------------------------------ optimizer


def test_adam_and_inverse_square_root_schedule_follow_the_paper():
  d_model, warmup = 512, 4000
  opt = ml_collections.ConfigDict(dict(name="adam", lr=peak_learning_rate(d_model, warmup), b1=0.9, b2=0.98, eps=1e-9))
  sched_cfg = ml_collections.ConfigDict(dict(name="rsqrt", warmup_steps=warmup))
  params = {"w": jnp.ones((3,))}
  tx, schedule = optim.make_optimizer(opt, sched_cfg, params, 100_000)
  steps = np.array([1, 10, 1000, 3999, 4000, 4001, 10_000, 99_999])
  want = d_model ** -0.5 * np.minimum(steps ** -0.5, steps * warmup ** -1.5)
  np.testing.assert_allclose([float(schedule(s)) for s in steps], want, rtol=1e-4)  # float32
  # Adam with β = (0.9, 0.98), ε = 1e-9: the update at step count 5 against the textbook formula.
  grads = [jnp.array([0.1, -2.0, 3e-9]) * (k + 1) for k in range(6)]
  state = tx.init(params)
  for g in grads:
    update, state = tx.update({"w": g}, state, params)
  m = v = np.zeros(3)
  for g in grads:
    m, v = 0.9 * m + 0.1 * np.asarray(g), 0.98 * v + 0.02 * np.asarray(g) ** 2
  m_hat, v_hat = m / (1 - 0.9 ** 6), v / (1 - 0.98 ** 6)
  lr = d_model ** -0.5 * min(5 ** -0.5, 5 * warmup ** -1.5)  # optax counts updates from 0
  np.testing.assert_allclose(update["w"], -lr * m_hat / (np.sqrt(v_hat) + 1e-9), rtol=1e-5)
  assert isinstance(tx, optax.GradientTransformation)
