"""GPT-2: parameter counts and logits against HF transformers' `GPT2LMHeadModel` (and its converter),
KV-cached decoding against full forwards, packed rows against separate documents, sampling, sharding."""

import functools
import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from papers_jax import convert, models
from papers_jax.core import sharding
from papers_jax.core.state import merge_model, split_model
from papers_jax.errors import CheckpointError, ConfigError, UserError

TINY = dict(vocab_size=104, context_length=32, embed_dim=32, depth=2, num_heads=4)
# Counted from the architecture (embeddings once: the head is tied); HF's counts, checked below, agree.
PARAMS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (keeps nnx.eval_shape linear in model size)."""

  def params(self):
    return jax.random.key(0)


def abstract(name="gpt2", **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def filled(model, seed=0):
  """`model` with every param drawn in numpy (no on-device init to compile): N(0, 0.2), LayerNorm scales
  1 + N(0, 0.1)."""
  rng = np.random.RandomState(seed)

  def fill(path, v):
    scale = getattr(path[-1], "key", None) == "scale"
    return jnp.asarray((1.0 + 0.1 * rng.randn(*v.shape)) if scale else 0.2 * rng.randn(*v.shape), v.dtype)

  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
  nnx.update(model, state)
  return model


@pytest.fixture(scope="module")
def tiny():
  return filled(abstract(**TINY))


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, params, rest, x, positions, segment_ids, dropout_key):
  model = merge_model(graphdef, params, rest)
  rngs = None if dropout_key is None else nnx.Rngs(dropout=dropout_key)
  return model(x, positions=positions, segment_ids=segment_ids, train=rngs is not None, rngs=rngs)


def forward(model, x, *, positions=None, segment_ids=None, dropout_key=None):
  """`model(x, ...)` under jit (eager forwards dispatch op by op: slow on 2 cores)."""
  return _forward(*split_model(model), x, positions, segment_ids, dropout_key)


def tokens(batch, length, seed=0, vocab=TINY["vocab_size"]):
  return jnp.asarray(np.random.RandomState(seed).randint(0, vocab, (batch, length)), jnp.int32)


# ---------------------------------------------------------------------------------- sizes


def test_registered_sizes_and_param_counts():
  assert models.list_models("gpt2*") == sorted(PARAMS)
  for name, count in PARAMS.items():
    model = abstract(name)
    assert num_params(model) == count, name
    assert (model.token_embed.shape, model.pos_embed.shape) == ((50257, model.embed_dim), (1024, model.embed_dim))
  cfg = models.model_config("gpt2-xl")
  assert (cfg["depth"], cfg["embed_dim"], cfg["num_heads"]) == (48, 1600, 25)


def test_init_follows_gpt2():
  cfg = {**TINY, "depth": 2, "embed_dim": 64, "vocab_size": 512}
  # One jitted init (an eager one compiles every initialiser separately).
  params = jax.jit(lambda: split_model(models.create("gpt2", **cfg, rngs=nnx.Rngs(0)))[1])()
  std = lambda path: float(np.std(np.asarray(convert._flatten(params)[path])))  # noqa: E731
  for path in ("token_embed", "pos_embed", "blocks/0/attn/qkv/kernel", "blocks/1/mlp/fc1/kernel"):
    assert abs(std(path) - 0.02) < 0.001, path
  for path in ("blocks/0/attn/proj/kernel", "blocks/1/mlp/fc2/kernel"):  # residual projections: 0.02 / sqrt(2 · 2)
    assert abs(std(path) - 0.01) < 0.0005, path
  block = params["blocks"][1]
  assert not np.any(np.asarray(block["attn"]["qkv"]["bias"])) and not np.any(np.asarray(block["mlp"]["fc2"]["bias"]))
  model = abstract(**cfg)
  assert (model.blocks[0].norm1.eps, model.norm.eps) == (1e-5, 1e-5)
  assert model.token_embed.get_metadata()["axes"] == ("vocab", "embed")
  assert model.blocks[0].attn.qkv.kernel.get_metadata()["axes"] == ("embed", None, "heads", "kv")


def test_bad_configs_and_inputs_are_refused(tiny):
  with pytest.raises(ConfigError, match="divisible"):
    abstract(**{**TINY, "num_heads": 5})
  with pytest.raises(UserError, match="context"):
    tiny(tokens(1, 33))
  with pytest.raises(UserError, match="context"):
    tiny.generate(tokens(1, 30), 4)


# ---------------------------------------------------------------------------- decoding


def test_cached_decoding_equals_full_forward(tiny):
  x = tokens(2, 10, seed=1)
  step = jax.jit(lambda params, t, cache: merge_model(graphdef, params, rest).decode_step(t, cache))
  graphdef, params, rest = split_model(tiny)
  with jax.default_matmul_precision("highest"):
    full = forward(tiny, x)
    cache = tiny.init_cache(2, 12)
    logits, cache = step(params, x[:, :5], cache)  # the prompt in one call, then one token at a time
    steps = [logits]
    for t in range(5, 10):
      logits, cache = step(params, x[:, t:t + 1], cache)
      steps.append(logits)
  assert int(cache[0].index) == int(cache[-1].index) == 10
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_generate_greedy_equals_argmax_over_full_forwards(tiny):
  prompt = tokens(2, 4, seed=2)
  with jax.default_matmul_precision("highest"):
    out = tiny.generate(prompt, 6)
    # Full forwards over a fixed-length buffer (one compile): causal, so the zeros after position
    # n - 1 do not change its logits.
    seq = jnp.zeros((2, 10), jnp.int32).at[:, :4].set(prompt)
    for n in range(4, 10):
      seq = seq.at[:, n].set(jnp.argmax(forward(tiny, seq)[:, n - 1], axis=-1).astype(jnp.int32))
  assert out.shape == (2, 6) and out.dtype == jnp.int32
  np.testing.assert_array_equal(out, seq[:, 4:])


def test_sampling_with_top_k_1_is_greedy(tiny):
  prompt = tokens(2, 4, seed=2)
  with jax.default_matmul_precision("highest"):
    greedy = tiny.generate(prompt, 6)
    top1 = tiny.generate(prompt, 6, jax.random.key(7), temperature=1.3, top_k=1)
  np.testing.assert_array_equal(top1, greedy)


# ------------------------------------------------------------------------------ packing


def test_packed_row_gives_each_document_its_own_logits(tiny):
  a, b = tokens(1, 5, seed=4), tokens(1, 4, seed=5)
  row = jnp.concatenate([a, b, jnp.zeros((1, 3), jnp.int32)], axis=1)
  segment_ids = jnp.asarray([[1] * 5 + [2] * 4 + [0] * 3])
  positions = jnp.asarray([list(range(5)) + list(range(4)) + [0] * 3])
  with jax.default_matmul_precision("highest"):
    packed = forward(tiny, row, positions=positions, segment_ids=segment_ids)
    one_segment = forward(tiny, row, positions=positions, segment_ids=jnp.ones_like(segment_ids))
    # Each document alone (b padded at the end, which a causal model never sees).
    alone = forward(tiny, jnp.concatenate([a, jnp.pad(b, ((0, 0), (0, 1)))]))
  np.testing.assert_allclose(packed[:, :5], alone[:1], atol=1e-5)
  np.testing.assert_allclose(packed[:, 5:9], alone[1:, :4], atol=1e-5)
  assert np.abs(np.asarray(one_segment[:, 5:9] - alone[1:, :4])).max() > 1e-2  # b sees a without the segments
  assert np.all(np.isfinite(np.asarray(packed)))  # padding rows too


def test_dropout_only_in_training(tiny):
  x = tokens(2, 10, seed=6)
  eval_logits = forward(tiny, x)
  a = forward(tiny, x, dropout_key=jax.random.key(0))
  b = forward(tiny, x, dropout_key=jax.random.key(1))
  assert np.abs(np.asarray(a - eval_logits)).max() > 1e-3 and np.abs(np.asarray(a - b)).max() > 1e-3
  with pytest.raises(ValueError, match="rngs"):
    tiny(x[:, :2], train=True)


# ----------------------------------------------------------------------- remat, sharding


def _loss_and_grads(model, x):
  graphdef, params, rest = split_model(model)

  @jax.jit
  def f(params):
    logits = merge_model(graphdef, params, rest)(x)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 0])
  return jax.value_and_grad(f)(params)


def test_remat_keeps_loss_and_gradients():
  x = tokens(2, 6, seed=7)
  plain, remat = filled(abstract(**{**TINY, "depth": 1})), filled(abstract(**{**TINY, "depth": 1}, remat="full"))
  with jax.default_matmul_precision("highest"):
    (loss, grads), (loss_r, grads_r) = _loss_and_grads(plain, x), _loss_and_grads(remat, x)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  jax.tree.map(lambda g, h: np.testing.assert_allclose(h, g, atol=1e-6), grads, grads_r)


def test_tensor_parallel_forward_equals_one_device(tiny):
  mesh = sharding.make_mesh({"data": 2, "fsdp": 1, "tensor": 4})
  graphdef, params, rest = split_model(tiny)
  params = jax.device_put(params, sharding.state_shardings(nnx.state(tiny, nnx.Param), mesh))
  assert params["token_embed"].sharding.spec == P("tensor", None)  # vocab over tensor; fsdp has size 1
  assert params["blocks"][0]["attn"]["qkv"]["kernel"].sharding.spec == P(None, None, "tensor", None)
  x = tokens(2, 10, seed=8)
  with sharding.use_mesh(mesh), jax.default_matmul_precision("highest"):
    fwd = jax.jit(lambda p, t: merge_model(graphdef, p, rest)(t))
    logits = fwd(params, jax.device_put(x, sharding.batch_sharding(mesh)))
  assert logits.sharding.spec[-1] == "tensor"  # vocab-sharded logits from the tied head
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(logits, forward(tiny, x), atol=1e-5)


# ---------------------------------------------------------------------------- HF parity

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import GPT2Config, GPT2LMHeadModel

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")


def hf_config(name=None, **kwargs):
  cfg = {**(models.model_config(name) if name else {}), **kwargs}
  return GPT2Config(vocab_size=cfg.get("vocab_size", 50257), n_positions=cfg.get("context_length", 1024),
                    n_embd=cfg["embed_dim"], n_layer=cfg["depth"], n_head=cfg["num_heads"])


def random_hf(seed=0):
  """A tiny GPT2LMHeadModel with random values in EVERY tensor (biases, LayerNorms and both embeddings
  included; the head is the token embedding)."""
  with torch.device("meta"):
    model = GPT2LMHeadModel(hf_config(**TINY))
  model = model.to_empty(device="cpu")
  model.tie_weights()
  model.eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      base = 1.0 if ".ln_" in key and key.endswith(".weight") else 0.0
      p.copy_(base + 0.1 * torch.randn(p.shape, generator=generator))
  assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
  return model


@pytest.fixture(scope="module")
def hf_pair():
  ref = random_hf()
  sd = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
  ours = abstract(**TINY)
  report = convert.load_torch_weights(ours, sd, source="hf")  # strict
  return ref, sd, ours, report


@needs_torch
def test_param_counts_match_hf():
  for name, count in PARAMS.items():
    with torch.device("meta"):
      ref = GPT2LMHeadModel(hf_config(name))
    assert sum(p.numel() for p in ref.parameters()) == count, name


@needs_torch
def test_logits_match_hf(hf_pair):
  ref, sd, ours, report = hf_pair
  assert "lm_head.weight" in sd and len(report.loaded) == len(report.ours)
  x = tokens(2, 12, seed=9)
  with torch.no_grad():
    expected = ref(torch.from_numpy(np.array(x)).long()).logits.numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(forward(ours, x), expected, atol=1e-4)


@needs_torch
def test_hf_export_is_the_state_dict_hf_loads(hf_pair, tmp_path):
  """export_state_dict(ours, "hf") is GPT2LMHeadModel's state dict exactly (the tied head included): HF
  loads it strictly from safetensors and gives our logits; importing it again restores ours exactly."""
  import safetensors.torch
  _, sd, ours, _ = hf_pair
  exported = convert.export_state_dict(ours, "hf")
  assert sorted(exported) == sorted(sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  path = str(tmp_path / "gpt2.safetensors")
  convert.save_state_dict(exported, path)
  ref = GPT2LMHeadModel(hf_config(**TINY)).eval()
  ref.load_state_dict(safetensors.torch.load_file(path), strict=True)
  x = tokens(2, 12, seed=10)
  with torch.no_grad():
    expected = ref(torch.from_numpy(np.array(x)).long()).logits.numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(forward(ours, x), expected, atol=1e-4)
  back = abstract(**TINY)
  convert.load_torch_weights(back, safetensors.torch.load_file(path), source="hf")
  jax.tree.map(np.testing.assert_array_equal, nnx.state(back, nnx.Param), nnx.state(ours, nnx.Param))


@needs_torch
def test_converter_reads_old_layouts_and_refuses_untied_heads(hf_pair):
  _, sd, ours, _ = hf_pair
  expected = nnx.to_pure_dict(nnx.state(ours, nnx.Param))
  # The hub's layout: saved from GPT2Model (no prefix, no head), with the old mask buffers.
  old = {k.removeprefix("transformer."): v for k, v in sd.items() if k != "lm_head.weight"}
  for i in range(TINY["depth"]):
    old[f"h.{i}.attn.bias"] = np.tril(np.ones((32, 32), np.uint8))[None, None]
    old[f"h.{i}.attn.masked_bias"] = np.asarray(-1e4, np.float32)
  model = abstract(**TINY)
  convert.load_torch_weights(model, old, source="hf")
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(model, nnx.Param)), expected)

  untied = {**sd, "lm_head.weight": sd["lm_head.weight"] + 1}
  with pytest.raises(CheckpointError, match="lm_head.weight differs"):
    convert.load_torch_weights(abstract(**TINY), untied, source="hf")
  not_causal = {**old, "h.0.attn.bias": np.ones((1, 1, 32, 32), np.uint8)}
  with pytest.raises(CheckpointError, match="causal mask"):
    convert.load_torch_weights(abstract(**TINY), not_causal, source="hf")
  missing = {k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}
  with pytest.raises(CheckpointError, match="blocks/1/mlp/fc1/bias"):
    convert.load_torch_weights(abstract(**TINY), missing, source="hf")
