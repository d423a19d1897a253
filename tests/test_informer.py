"""Informer: full-attention parity with HF `InformerForPrediction` on a tiny random model (every non-matrix
tensor perturbed, BatchNorm running statistics included), ProbSparse attention against a numpy reference
given the same sampled keys, the sparse counts, and the FLOP counter against XLA's cost analysis.

What the HF comparison covers. HF's Informer is a probabilistic model: its encoder and decoder read
features (lagged values, the log-loc and log-scale static features, time features) through one linear
layer, add a sin/cos table laid out in halves (the decoder's rows continuing after the encoder's), apply a
LayerNorm, and end without a final LayerNorm; its decoder input is the lagged future values (teacher
forcing), not a start token with zero placeholders; its head is a distribution. Ours, built with
`attention="full", token_kernel_size=1, embed_norm=True, positions="halves", final_norm=False`, is that
layout; its `encode` / `decode` get the same lagged values and time features as HF's full forward (lag 1,
no scaling, so the static features are 0). Compared: the encoder output (after two layers of attention
distilling), the decoder output, and the Normal head's mean (HF's `params[0]`, a linear layer d_model → C
as our forecast head). The start token, the zero placeholders, the kernel-3 token convolution and the
interleaved table are the paper's and are not in HF; `forward` is checked for shapes and the start-token
input below.
"""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import models
from papers_jax.models import informer

TOL = 1e-4
C, L, H, F = 3, 24, 6, 2
TINY = dict(d_model=16, num_heads=2, d_ff=32, encoder_layers=3, decoder_layers=2, dropout=0.0)


class FixedKeyRngs:
  def params(self):
    return jax.random.key(0)


# ------------------------------------------------------------------------------ ProbSparse against numpy


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _prob_sparse_numpy(q, k, v, index, factor, causal):
  """Loops over (example, head, query): the measure on the sampled keys, the top-u queries' softmax,
  the lazy queries' mean (encoder) or running sum (causal decoder) of V."""
  b, lq, h, d = q.shape
  lk = k.shape[1]
  u = min(factor * math.ceil(math.log(lq)), lq)
  out = np.zeros_like(q)
  for i in range(b):
    for j in range(h):
      qs, ks, vs = q[i, :, j], k[i, :, j], v[i, :, j]
      measure = np.array([max(qs[t] @ ks[s] for s in index[t]) - np.mean([qs[t] @ ks[s] for s in index[t]])
                          for t in range(lq)])
      top = np.argsort(-measure, kind="stable")[:u]
      for t in range(lq):
        if t in top:
          scores = ks @ qs[t] / np.sqrt(d)
          if causal:
            scores = np.where(np.arange(lk) <= t, scores, -np.inf)
          out[i, t, j] = _softmax(scores) @ vs
        else:
          out[i, t, j] = vs[:t + 1].sum(0) if causal else vs.mean(0)
  return out


@pytest.mark.parametrize("causal", [False, True])
def test_prob_sparse_matches_numpy(causal):
  rng = np.random.RandomState(0)
  lq, factor = 30, 2  # u = 2·⌈ln 30⌉ = 8 of 30 queries active, U = 8 keys sampled per query
  q, k, v = (rng.randn(2, lq, 2, 4).astype(np.float32) for _ in range(3))
  u, count = informer.sparse_counts(lq, lq, factor)
  assert (u, count) == (8, 8)
  index = rng.randint(0, lq, (lq, count))
  with jax.default_matmul_precision("highest"):
    got = np.asarray(informer.prob_sparse_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v),
                                                    jnp.asarray(index), factor=factor, causal=causal))
  want = _prob_sparse_numpy(q, k, v, index, factor, causal)
  np.testing.assert_allclose(got, want, atol=1e-5)
  lazy = np.abs(got - (np.cumsum(v, 1) if causal else v.mean(1, keepdims=True))).max(-1) < 1e-6
  # exactly L − u lazy queries per example and head (in the causal case an active query 0, which sees only
  # key 0, also equals its running sum)
  assert ((lazy.sum(1) == lq - u) | (causal & lazy[:, 0] & (lazy.sum(1) == lq - u + 1))).all()


def test_paper_counts_and_forward_shapes():
  assert informer.sparse_counts(96, 96, 5) == (25, 25)  # c·⌈ln 96⌉ = 5·5 (the paper's L = 96)
  assert informer.sparse_counts(72, 72, 5) == (25, 25)  # the decoder: 48 start + 24 placeholders
  model = nnx.eval_shape(lambda: models.create("informer", rngs=FixedKeyRngs(), num_channels=7))
  assert (model.context_length, model.label_length, model.d_model) == (96, 48, 512)
  assert len(model.encoder) == 2 and len(model.distil) == 1 and len(model.decoder) == 1


def test_decoder_input_is_the_start_token_then_zeros():
  x = np.random.RandomState(0).randn(2, L, C).astype(np.float32)
  y = np.asarray(informer.decoder_input(jnp.asarray(x), 8, H))
  assert y.shape == (2, 8 + H, C)
  np.testing.assert_array_equal(y[:, :8], x[:, -8:])
  assert (y[:, 8:] == 0).all()


# ------------------------------------------------------------------------------ HF parity

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  import transformers

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")


def _perturbed(model, seed=0):
  """Every tensor random but the fixed position tables: matrices N(0, 0.2), vectors N(0, 0.1) around their
  usual values, BatchNorm running statistics away from (0, 1)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, t in model.state_dict().items():
      if key.endswith("num_batches_tracked") or "embed_positions" in key:
        continue
      if key.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      elif t.ndim == 1:
        base = 1.0 if ("norm" in key and key.endswith("weight")) else 0.0
        t.copy_(base + 0.1 * torch.randn(t.shape, generator=g))
      else:
        t.copy_(0.2 * torch.randn(t.shape, generator=g))
  return model.eval()


def _load_hf(model, sd):
  """Copies HF's Informer tensors into ours (torch Linear (out, in) → our (in, heads, head_dim) layout).
  `model` is abstract (nnx.eval_shape): a tensor left unloaded stays a shape and fails the forward."""
  sd = {k: v.numpy() for k, v in sd.items()}
  d, nh = TINY["d_model"], TINY["num_heads"]

  def dense(dst, src, heads_out=False, heads_in=False):
    w, b = sd[src + ".weight"].T, sd[src + ".bias"]
    if heads_out:
      w, b = w.reshape(d, nh, d // nh), b.reshape(nh, d // nh)
    if heads_in:
      w = w.reshape(nh, d // nh, d)
    dst.kernel.set_value(jnp.asarray(w))
    dst.bias.set_value(jnp.asarray(b))

  def norm(dst, src):
    dst.scale.set_value(jnp.asarray(sd[src + ".weight"]))
    dst.bias.set_value(jnp.asarray(sd[src + ".bias"]))

  def attention(dst, src):
    for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj")):
      dense(getattr(dst, ours), f"{src}.{theirs}", heads_out=True)
    dense(dst.proj, f"{src}.out_proj", heads_in=True)

  for side, embed in (("encoder", model.enc_embed), ("decoder", model.dec_embed)):
    w = sd[f"model.{side}.value_embedding.value_projection.weight"]  # (d, C values + 2C static + F time)
    embed.token.kernel.set_value(jnp.asarray(w[:, :C].T[None]))
    embed.time.kernel.set_value(jnp.asarray(w[:, 3 * C:].T))
    norm(embed.norm, f"model.{side}.layernorm_embedding")
  for i, layer in enumerate(model.encoder):
    p = f"model.encoder.layers.{i}"
    attention(layer.attn, p + ".self_attn")
    norm(layer.norm1, p + ".self_attn_layer_norm")
    dense(layer.ff.fc1, p + ".fc1")
    dense(layer.ff.fc2, p + ".fc2")
    norm(layer.norm2, p + ".final_layer_norm")
  for i, distil in enumerate(model.distil):
    p = f"model.encoder.conv_layers.{i}"
    distil.conv.kernel.set_value(jnp.asarray(sd[p + ".downConv.weight"].transpose(2, 1, 0)))
    distil.conv.bias.set_value(jnp.asarray(sd[p + ".downConv.bias"]))
    norm(distil.norm, p + ".norm")
    distil.norm.mean.set_value(jnp.asarray(sd[p + ".norm.running_mean"]))
    distil.norm.var.set_value(jnp.asarray(sd[p + ".norm.running_var"]))
  for i, layer in enumerate(model.decoder):
    p = f"model.decoder.layers.{i}"
    attention(layer.self_attn, p + ".self_attn")
    norm(layer.norm1, p + ".self_attn_layer_norm")
    attention(layer.cross_attn, p + ".encoder_attn")
    norm(layer.norm2, p + ".encoder_attn_layer_norm")
    dense(layer.ff.fc1, p + ".fc1")
    dense(layer.ff.fc2, p + ".fc2")
    norm(layer.norm3, p + ".final_layer_norm")
  dense(model.head, "parameter_projection.proj.0")  # the Normal's mean


@pytest.fixture(scope="module")
def hf_and_ours():
  config = transformers.InformerConfig(
      prediction_length=H, context_length=L, input_size=C, lags_sequence=[1], num_time_features=F,
      scaling=None, distribution_output="normal", d_model=TINY["d_model"], encoder_layers=TINY["encoder_layers"],
      decoder_layers=TINY["decoder_layers"], encoder_attention_heads=TINY["num_heads"],
      decoder_attention_heads=TINY["num_heads"], encoder_ffn_dim=TINY["d_ff"], decoder_ffn_dim=TINY["d_ff"],
      activation_function="gelu", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
      encoder_layerdrop=0.0, decoder_layerdrop=0.0, attention_type="full", distil=True)
  torch.manual_seed(0)
  hf = _perturbed(transformers.InformerForPrediction(config))
  ours = nnx.eval_shape(lambda: informer.Informer(
      num_channels=C, context_length=L, prediction_length=H, label_length=0, num_time_features=F, attention="full",
      token_kernel_size=1, embed_norm=True, positions="halves", final_norm=False, rngs=FixedKeyRngs(), **TINY))
  _load_hf(ours, hf.state_dict())
  return hf, ours


@needs_torch
def test_full_attention_matches_hf(hf_and_ours):
  hf, ours = hf_and_ours
  rng = np.random.RandomState(1)
  past = rng.randn(4, L + 1, C).astype(np.float32)   # lag 1: one step more than the context
  future = rng.randn(4, H, C).astype(np.float32)
  past_marks, future_marks = rng.rand(4, L + 1, F).astype(np.float32) - 0.5, rng.rand(4, H, F).astype(np.float32) - 0.5
  with torch.no_grad():
    out = hf(past_values=torch.from_numpy(past), past_time_features=torch.from_numpy(past_marks),
             past_observed_mask=torch.ones(4, L + 1, C), future_values=torch.from_numpy(future),
             future_time_features=torch.from_numpy(future_marks), output_hidden_states=False)
  series = np.concatenate([past, future], 1)
  graphdef, state = nnx.split(ours)

  @jax.jit
  def forward(state, enc_values, enc_marks, dec_values, dec_marks):
    model = nnx.merge(graphdef, state)
    memory = model.encode(enc_values, enc_marks)
    hidden = model.decode(dec_values, memory, dec_marks, position_offset=L)
    return memory, hidden, model.head(hidden)

  with jax.default_matmul_precision("highest"):
    memory, hidden, mean = forward(state, series[:, :L], past_marks[:, 1:], series[:, L:L + H], future_marks)
  assert memory.shape == (4, math.ceil(math.ceil(L / 2) / 2), TINY["d_model"])  # two distilling halvings
  np.testing.assert_allclose(np.asarray(memory), out.encoder_last_hidden_state.numpy(), atol=TOL, rtol=0)
  # HF's decoder hidden states are not in the prediction output; its Normal mean is their projection.
  np.testing.assert_allclose(np.asarray(mean), out.params[0].numpy(), atol=TOL, rtol=0)
  with torch.no_grad():
    dec = hf.model.decoder(inputs_embeds=torch.cat([torch.from_numpy(series[:, L:L + H]),
                                                    torch.zeros(4, H, 2 * C), torch.from_numpy(future_marks)], -1),
                           encoder_hidden_states=out.encoder_last_hidden_state)
  np.testing.assert_allclose(np.asarray(hidden), dec.last_hidden_state.numpy(), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ compute accounting


def test_forward_flops_match_xla():
  """ProbSparse self-attention (encoder and decoder) and full cross-attention, distilling, both embeddings."""
  model = nnx.eval_shape(lambda: models.create(
      "informer", rngs=FixedKeyRngs(), num_channels=2, context_length=96, prediction_length=24,
      d_model=128, num_heads=4, d_ff=256))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, 96, 2), jnp.float32)
  cost = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 2
  ratio = xla / models.forward_flops(model)
  assert 0.95 <= ratio <= 1.05, ratio
