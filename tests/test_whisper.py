"""Whisper against HF `WhisperForConditionalGeneration` on random weights (every tensor perturbed): logits,
greedy decoding with the KV cache, beam search, and the parameter counts of tiny…large."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.data import audio
from papers_jax.models import whisper
from papers_jax.models.whisper import Whisper, WhisperTokens

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from papers_jax.convert.torch_compat import import_timm  # noqa: E402

import_timm()  # the torchvision shim, before transformers' models
import transformers  # noqa: E402
from timm_parity import FixedKeyRngs  # noqa: E402

TOL = 1e-4
# A small model: 2 layers, width 64, 4 heads, 200 frames (2 s), a 40-text-token vocabulary.
SMALL = dict(d_model=64, num_layers=2, num_heads=4, num_mels=80, max_source_positions=100, max_target_positions=32,
             num_text_tokens=40)


def hf_config(d_model, num_layers, num_heads, vocab_size, num_mels=80, max_source_positions=1500,
              max_target_positions=448):
  return transformers.WhisperConfig(
      vocab_size=vocab_size, num_mel_bins=num_mels, d_model=d_model, encoder_layers=num_layers,
      decoder_layers=num_layers, encoder_attention_heads=num_heads, decoder_attention_heads=num_heads,
      encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model, max_source_positions=max_source_positions,
      max_target_positions=max_target_positions, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
      pad_token_id=vocab_size - 1, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
      decoder_start_token_id=vocab_size - 1)


@pytest.fixture(scope="module")
def pair():
  vocab = WhisperTokens.layout(SMALL["num_text_tokens"], ("en",)).vocab_size
  config = hf_config(SMALL["d_model"], SMALL["num_layers"], SMALL["num_heads"], vocab,
                     max_source_positions=SMALL["max_source_positions"],
                     max_target_positions=SMALL["max_target_positions"])
  ref = transformers.WhisperForConditionalGeneration(config).eval()
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for key, p in ref.named_parameters():
      if key.endswith("embed_positions.weight") and ".encoder." in key:
        continue  # the fixed sinusoid table
      if p.ndim == 1:
        base = 1.0 if "layer_norm" in key and key.endswith(".weight") else 0.0
        p.copy_(base + 0.1 * torch.randn(p.shape, generator=generator))
      else:
        p.copy_(torch.randn(p.shape, generator=generator) / np.sqrt(np.prod(p.shape[1:])))  # unit gain
    # Token embeddings of equal norm, so that no single token wins every greedy step (they are the logits' rows)
    table = ref.model.decoder.embed_tokens.weight
    table.copy_(table / table.norm(dim=1, keepdim=True))
  ours = nnx.eval_shape(lambda: Whisper(vocab_size=vocab, **SMALL, rngs=FixedKeyRngs()))
  sd = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
  report = convert.load_torch_weights(ours, sd, "hf")
  return ref, ours, report


def features(seed=0, batch=2, frames=200):
  x = np.random.RandomState(seed).randn(batch, frames * 160).astype(np.float32) * 0.1
  return np.asarray(audio.log_mel_spectrogram(x))


def hf_logits(ref, feats, tokens):
  with torch.no_grad():
    out = ref(input_features=torch.from_numpy(feats.transpose(0, 2, 1).copy()),
              decoder_input_ids=torch.from_numpy(np.asarray(tokens, np.int64)))
  return out.logits.numpy()


def test_logits_match_hf(pair):
  ref, ours, report = pair
  feats = features()
  tokens = np.array([ours.tokens.prompt() + [3, 7, 11], ours.tokens.prompt() + [5, 5, 2]], np.int32)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(nnx.jit(lambda m, f, t: m(f, t))(ours, jnp.asarray(feats), jnp.asarray(tokens)))
  np.testing.assert_allclose(got, hf_logits(ref, feats, tokens), atol=TOL, rtol=TOL)


def hf_greedy(ref, feats, prompt, steps):
  """HF's model decoding greedily, the whole sequence re-run at every step (no cache)."""
  tokens = np.asarray(prompt, np.int64)
  for _ in range(steps):
    nxt = hf_logits(ref, feats, tokens)[:, -1].argmax(-1)
    tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
  return tokens[:, len(prompt[0]):]


def test_greedy_decoding_with_the_cache_matches_hfs_tokens(pair):
  ref, ours, _ = pair
  feats = features(seed=1)
  prompt = np.array([ours.tokens.prompt()] * 2, np.int32)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(nnx.jit(lambda m, f, p: m.transcribe(f, p, max_new_tokens=12))(
        ours, jnp.asarray(feats), jnp.asarray(prompt)))
  expected = hf_greedy(ref, feats, prompt, 12)
  eot = ours.tokens.eot
  for row, ref_row in zip(got, expected):  # identical up to the first <|endoftext|>, then padding
    stop = int(np.argmax(ref_row == eot)) + 1 if (ref_row == eot).any() else len(ref_row)
    np.testing.assert_array_equal(row[:stop], ref_row[:stop])
    assert np.all(row[stop:] == eot)
  assert len(set(expected.ravel().tolist())) > 1  # a decode that changes, not one repeated token


def test_beam_search_scores_no_worse_than_greedy(pair):
  _, ours, _ = pair
  feats = jnp.asarray(features(seed=2, batch=1))
  prompt = jnp.asarray([ours.tokens.prompt()], jnp.int32)

  @nnx.jit
  def decode_and_score(model, feats):
    greedy = model.transcribe(feats, prompt, max_new_tokens=6)
    beam = model.transcribe(feats, prompt, max_new_tokens=6, beam_size=3)
    memory = model.encode(feats)

    def log_prob(tokens):  # of the tokens up to and with the first <|endoftext|>
      seq = jnp.concatenate([prompt, tokens], axis=1)
      logp = jax.nn.log_softmax(model.decode(seq[:, :-1], memory), -1)[0, prompt.shape[1] - 1:]
      picked = jnp.take_along_axis(logp, tokens[0][:, None], -1)[:, 0]
      before_eot = jnp.cumsum(tokens[0] == model.tokens.eot) - (tokens[0] == model.tokens.eot) == 0
      return jnp.sum(jnp.where(before_eot, picked, 0.0))
    return greedy, beam, log_prob(greedy), log_prob(beam)

  greedy, beam, greedy_score, beam_score = decode_and_score(ours, feats)
  assert float(beam_score) >= float(greedy_score) - 1e-4
  assert greedy.shape == beam.shape == (1, 6)


def test_token_layout_is_openais():
  tokens = WhisperTokens.for_vocab(whisper.MULTILINGUAL_VOCAB)
  assert (tokens.eot, tokens.sot, tokens.language("en"), tokens.translate, tokens.transcribe, tokens.no_timestamps,
          tokens.timestamp_begin) == (50257, 50258, 50259, 50358, 50359, 50363, 50364)
  english = WhisperTokens.for_vocab(whisper.ENGLISH_VOCAB)
  assert (english.eot, english.sot, english.transcribe, english.no_timestamps) == (50256, 50257, 50358, 50362)
  v3 = WhisperTokens.for_vocab(whisper.V3_VOCAB)
  assert (v3.language("yue"), v3.no_timestamps, v3.timestamp_begin) == (50358, 50364, 50365)
  assert tokens.timestamp(1.5) == 50364 + 75 and tokens.prompt("de", "translate") == [50258, 50261, 50358, 50363]


FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
full_only = pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1 (10 s each)")


@pytest.mark.parametrize("name,vocab,mels", [
    ("whisper_tiny", 51865, 80), ("whisper_base_en", 51864, 80), ("whisper_large_v3", 51866, 128),
    pytest.param("whisper_small", 51865, 80, marks=full_only),
    pytest.param("whisper_medium_en", 51864, 80, marks=full_only),
    pytest.param("whisper_large", 51865, 80, marks=full_only)])
def test_parameter_counts_match_hf(name, vocab, mels):
  row = whisper.VARIANTS[name.split("_")[1]]
  with torch.device("meta"):
    ref = transformers.WhisperForConditionalGeneration(hf_config(row["d_model"], row["num_layers"], row["num_heads"],
                                                                 vocab, num_mels=mels))
  expected = sum(p.numel() for p in ref.parameters())
  ours = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs()))
  count = models.param_counts(ours)["params"]
  assert count == expected - 1500 * row["d_model"]  # HF stores the fixed encoder sinusoids as a parameter


def test_forward_flops_match_xla():
  wide = SMALL | dict(d_model=384, num_heads=6, num_layers=1)  # wide enough that matmuls dominate
  model = nnx.eval_shape(lambda: Whisper(vocab_size=WhisperTokens.layout(40, ("en",)).vocab_size, **wide,
                                         rngs=FixedKeyRngs()))
  graphdef, state = nnx.split(model)
  f = jax.ShapeDtypeStruct((2, 200, 80), jnp.float32)
  t = jax.ShapeDtypeStruct((2, 32), jnp.int32)
  cost = jax.jit(lambda s, f, t: nnx.merge(graphdef, s)(f, t)).lower(state, f, t).cost_analysis()
  xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / 2
  ratio = xla / models.forward_flops(model, source_len=200, target_len=32)
  assert 1.0 <= ratio < 1.05, ratio
