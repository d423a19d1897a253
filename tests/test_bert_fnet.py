"""BERT and FNet: parameter counts of every registered name against HF transformers (shape-only),
forward parity with HF's BertForPreTraining / fine-tuning heads / FNetForPreTraining on tiny random
models with every tensor perturbed, both of HF's key layouts, masked-position gathering, scan/remat."""

import importlib.util
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax import convert, models
from papers_jax.errors import CheckpointError
from papers_jax.models import bert, fnet

TOL = 1e-4
VOCAB, HIDDEN, HEADS, FFN, LAYERS, MAX_POS = 211, 64, 4, 128, 2, 40
TINY = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS, intermediate_size=FFN,
            max_position_embeddings=MAX_POS)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/timm_parity.py)."""

  def params(self):
    return jax.random.key(0)


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(build):
  return nnx.eval_shape(lambda: build(FixedKeyRngs()))


def inputs(seed=0, batch=3, length=12, type_vocab=2):
  """Token ids, mixed segment ids (A then B) and padding at the end of all but the first sequence."""
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, VOCAB, (batch, length)).astype(np.int64)
  lengths = [length] + list(rng.randint(length // 2, length, batch - 1))
  mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int64)
  split = rng.randint(2, length // 2, batch)
  types = (np.arange(length)[None] >= split[:, None]).astype(np.int64) * mask
  if type_vocab > 2:
    types = types * rng.randint(1, type_vocab, (batch, 1))
  return ids, types, mask


# ------------------------------------------------------------------------------ behaviour


def filled(model, seed=0):
  """`model` with every param drawn in numpy (instant, where an on-device init compiles per shape)."""
  rng = np.random.RandomState(seed)

  def fill(path, v):
    base = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
    return jnp.asarray(base + 0.05 * rng.randn(*v.shape), v.dtype)

  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
  nnx.update(model, state)
  return model


def tiny(name, **overrides):
  heads = {"num_heads": HEADS} if name.startswith("bert") else {}
  return filled(abstract(lambda r: models.create(name, **TINY, **heads, **overrides, rngs=r)))


@nnx.jit(static_argnames=("train",))
def run(model, ids, types=None, mask=None, positions=None, train=False, rngs=None):
  return model(ids, types, mask, masked_positions=positions, train=train, rngs=rngs)


@pytest.fixture(scope="module")
def tiny_bert():
  return tiny("bert-base-uncased")


def test_masked_positions_gather_the_full_logits(tiny_bert):
  ids, types, mask = inputs()
  positions = np.array([[0, 5, 11], [1, 1, 3], [7, 2, 0]])
  full, nsp = run(tiny_bert, ids, types, mask)
  gathered, nsp_g = run(tiny_bert, ids, types, mask, positions)
  assert full.shape == (3, 12, VOCAB) and gathered.shape == (3, 3, VOCAB) and nsp.shape == (3, 2)
  assert full.dtype == gathered.dtype == jnp.float32
  np.testing.assert_allclose(gathered, np.take_along_axis(np.asarray(full), positions[..., None], 1), atol=1e-5)
  np.testing.assert_array_equal(nsp, nsp_g)


def test_padding_is_invisible_and_dropout_needs_train(tiny_bert):
  ids, types, mask = inputs()
  changed = np.where(mask == 1, ids, (ids + 7) % VOCAB)  # other tokens at the padded positions
  a, _ = run(tiny_bert, ids, types, mask)
  b, _ = run(tiny_bert, changed, types, mask)
  real = mask[..., None] == 1
  np.testing.assert_allclose(np.where(real, a, 0), np.where(real, b, 0), atol=1e-5)
  # Train mode draws dropout masks from `rngs`; eval mode is deterministic.
  t1, _ = run(tiny_bert, ids, types, mask, train=True, rngs=nnx.Rngs(dropout=1))
  t2, _ = run(tiny_bert, ids, types, mask, train=True, rngs=nnx.Rngs(dropout=2))
  assert np.abs(np.asarray(t1) - np.asarray(t2)).max() > 1e-3
  with pytest.raises(ValueError, match="max_position_embeddings"):
    run(tiny_bert, np.zeros((1, MAX_POS + 1), np.int32))


def test_scan_and_remat_match_the_loop(tiny_bert):
  ids, types, mask = inputs()
  want, _ = run(tiny_bert, ids, types, mask)
  for kwargs in (dict(scan=True), dict(remat="full")):
    got, _ = run(tiny("bert-base-uncased", **kwargs), ids, types, mask)
    np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str(kwargs))


def test_fnet_ignores_the_attention_mask_and_mixes_in_float32():
  model = tiny("fnet-base")
  ids, types, mask = inputs(type_vocab=4)
  a, _ = run(model, ids, types, mask)
  b, _ = run(model, ids, types)
  np.testing.assert_array_equal(a, b)
  x = jnp.asarray(np.random.RandomState(0).randn(2, 6, 8), jnp.bfloat16)
  # The transform itself runs on complex64 (float32 parts) whatever the activations' dtype ...
  fft_dtypes = re.findall(r"(\w+)\[[\d,]+\] = fft\[", str(jax.make_jaxpr(fnet.fourier_mix)(x)))
  assert fft_dtypes == ["c64"], fft_dtypes
  # ... so a bfloat16 input gives the exact transform rounded once to bfloat16 (within 1 ulp, 2⁻⁸ relative),
  y = fnet.fourier_mix(x)
  assert y.dtype == jnp.bfloat16
  want = np.fft.fft2(np.asarray(x, np.float64), axes=(1, 2)).real
  np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=2 ** -8, atol=1e-4)
  # and a float32 input float32 accuracy.
  x32 = np.random.RandomState(1).randn(2, 6, 8).astype(np.float32)
  y32 = fnet.fourier_mix(jnp.asarray(x32))
  assert y32.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y32), np.fft.fft2(x32.astype(np.float64), axes=(1, 2)).real, rtol=1e-5,
                             atol=1e-5)


# ------------------------------------------------------------------------------ HF parity

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  import transformers

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")

# HF `parameters()` (the tied decoder counted once) = ours. The paper: BERT_BASE 110M, BERT_LARGE 340M.
OFFICIAL = {
    "bert-base-uncased": 110_106_428, "bert-large-uncased": 336_226_108,
    "bert-base-cased": 108_932_934, "bert-large-cased": 334_661_958,
    "fnet-base": 83_486_722, "fnet-large": 238_031_106,
}


def hf_config(name, **overrides):
  cfg = models.model_config(name)
  kwargs = dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["num_layers"],
                intermediate_size=cfg["intermediate_size"])
  if name.startswith("bert"):
    return transformers.BertConfig(**{**kwargs, "num_attention_heads": cfg["num_heads"], **overrides})
  return transformers.FNetConfig(**{**kwargs, "type_vocab_size": cfg["type_vocab_size"], **overrides})


def hf_tiny(name, **overrides):
  if name.startswith("bert"):
    overrides["num_attention_heads"] = HEADS
  return hf_config(name, vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, intermediate_size=FFN,
                   max_position_embeddings=MAX_POS, **overrides)


def random_hf(hf_class, cfg, seed=0):
  """An HF model in eval mode with random values in EVERY tensor: matrices and embeddings N(0, 0.05),
  biases N(0, 0.1), LayerNorm scales 1 + N(0, 0.1). Tied tensors are drawn once (they are one tensor)."""
  with torch.device("meta"):
    model = hf_class(cfg)
  model = model.to_empty(device="cpu").eval()
  model.tie_weights()  # to_empty made separate tensors of the tied ones
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      if p.ndim > 1:
        base, std = 0.0, 0.05
      else:
        base, std = (1.0 if "LayerNorm" in key and key.endswith(".weight") else 0.0), 0.1
      p.copy_(base + std * torch.randn(p.shape, generator=generator))
    for name, buf in model.named_buffers():  # to_empty left them uninitialised
      if name.endswith("position_ids"):
        buf.copy_(torch.arange(buf.shape[-1]).expand(buf.shape))
      elif name.endswith("token_type_ids"):
        buf.zero_()
  return model


def numpy_sd(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def load_ours(cls, sd, **kwargs):
  model = abstract(lambda r: cls(**kwargs, rngs=r))
  report = convert.load_torch_weights(model, sd, source="hf")
  return model, report


@nnx.jit
def _forward(model, ids, types, mask):
  return model(ids, types, mask)


def hf_forward(ref, ids, types, mask):
  kwargs = dict(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types))
  if mask is not None:  # HF's FNet takes none
    kwargs["attention_mask"] = torch.from_numpy(mask)
  with torch.no_grad():
    return ref(**kwargs)


def max_diff(a, b):
  return float(np.abs(np.asarray(a) - b.detach().numpy()).max())


@needs_torch
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_param_counts_match_hf(name):
  ours = num_params(abstract(lambda r: models.create(name, rngs=r)))
  hf_class = transformers.BertForPreTraining if name.startswith("bert") else transformers.FNetForPreTraining
  with torch.device("meta"):
    ref = hf_class(hf_config(name))
  hf = sum(p.numel() for p in ref.parameters())
  print(f"{name}: ours {ours:,} HF {hf:,}")
  assert ours == hf == OFFICIAL[name]


HEADS_BERT = {  # our class: (HF class, extra kwargs of both)
    bert.BertForPreTraining: ("BertForPreTraining", {}),
    bert.BertForSequenceClassification: ("BertForSequenceClassification", {"num_labels": 3}),
    bert.BertForTokenClassification: ("BertForTokenClassification", {"num_labels": 5}),
    bert.BertForQuestionAnswering: ("BertForQuestionAnswering", {}),
    bert.BertModel: ("BertModel", {}),
}


@needs_torch
@pytest.mark.parametrize("cls", list(HEADS_BERT), ids=lambda c: c.__name__)
def test_tiny_bert_matches_hf(cls):
  hf_name, extra = HEADS_BERT[cls]
  ref = random_hf(getattr(transformers, hf_name), hf_tiny("bert-base-uncased", **extra), seed=1)
  ours, report = load_ours(cls, numpy_sd(ref), **TINY, num_heads=HEADS, **extra)
  assert not (report.missing or report.unexpected or report.mismatched), str(report)
  assert num_params(ours) == sum(p.numel() for p in ref.parameters())
  ids, types, mask = inputs(seed=2)
  out = hf_forward(ref, ids, types, mask)
  with jax.default_matmul_precision("highest"):
    got = _forward(ours, ids, types, mask)
  if cls is bert.BertForPreTraining:
    pairs = [(got[0], out.prediction_logits), (got[1], out.seq_relationship_logits)]
  elif cls is bert.BertForQuestionAnswering:
    pairs = [(got[0], out.start_logits), (got[1], out.end_logits)]
  elif cls is bert.BertModel:
    pairs = [(got[0], out.last_hidden_state), (got[1], out.pooler_output)]
  else:
    pairs = [(got, out.logits)]
  diffs = [max_diff(a, b) for a, b in pairs]
  print(f"{cls.__name__}: max-abs {', '.join(f'{d:.2e}' for d in diffs)}")
  assert max(diffs) < TOL


@needs_torch
@pytest.mark.parametrize("cls", [fnet.FNetForPreTraining, fnet.FNetForSequenceClassification],
                         ids=lambda c: c.__name__)
def test_tiny_fnet_matches_hf(cls):
  extra = {} if cls is fnet.FNetForPreTraining else {"num_labels": 3}
  ref = random_hf(getattr(transformers, cls.__name__), hf_tiny("fnet-base", **extra), seed=3)
  assert ref.config.hidden_act == "gelu_new"  # HF's default: tanh-approximated GELU = our default "gelu_tanh"
  ours, report = load_ours(cls, numpy_sd(ref), **TINY, **extra)
  assert not (report.missing or report.unexpected or report.mismatched), str(report)
  ids, types, _ = inputs(seed=4, type_vocab=4)
  out = hf_forward(ref, ids, types, None)
  with jax.default_matmul_precision("highest"):
    got = _forward(ours, ids, types, None)
  pairs = ([(got[0], out.prediction_logits), (got[1], out.seq_relationship_logits)]
           if cls is fnet.FNetForPreTraining else [(got, out.logits)])
  diffs = [max_diff(a, b) for a, b in pairs]
  print(f"{cls.__name__}: max-abs {', '.join(f'{d:.2e}' for d in diffs)}")
  assert max(diffs) < TOL


@needs_torch
def test_converter_reads_the_old_hub_layout_and_refuses_an_untied_decoder():
  ref = random_hf(transformers.BertForPreTraining, hf_tiny("bert-base-uncased"), seed=5)
  sd = numpy_sd(ref)
  new, _ = load_ours(bert.BertForPreTraining, sd, **TINY, num_heads=HEADS)
  # The oldest hub files: LayerNorm gamma/beta, a persistent position_ids buffer, only one copy of each tied tensor.
  old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
         for k, v in sd.items() if k != "cls.predictions.decoder.bias"}
  old["bert.embeddings.position_ids"] = np.arange(MAX_POS)[None]
  model, report = load_ours(bert.BertForPreTraining, old, **TINY, num_heads=HEADS)
  assert not (report.missing or report.unexpected or report.mismatched)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Param), nnx.state(new, nnx.Param))
  # transformers' save_pretrained keeps the other copies: decoder.weight / decoder.bias without the originals.
  saved = {k: v for k, v in sd.items() if k not in ("bert.embeddings.word_embeddings.weight", "cls.predictions.bias")}
  model, _ = load_ours(bert.BertForPreTraining, saved, **TINY, num_heads=HEADS)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Param), nnx.state(new, nnx.Param))
  untied = dict(sd, **{"cls.predictions.decoder.weight": sd["cls.predictions.decoder.weight"] + 1})
  with pytest.raises(CheckpointError, match="not tied"):
    load_ours(bert.BertForPreTraining, untied, **TINY, num_heads=HEADS)
  with pytest.raises(CheckpointError, match="position_ids"):
    load_ours(bert.BertForPreTraining, dict(old, **{"bert.embeddings.position_ids": np.zeros((1, MAX_POS))}),
              **TINY, num_heads=HEADS)
  # A pre-training checkpoint starts a classifier: its MLM/NSP heads are unexpected, the classifier missing.
  with pytest.raises(CheckpointError, match="classifier/kernel"):
    load_ours(bert.BertForSequenceClassification, sd, **TINY, num_heads=HEADS)
  clf = filled(abstract(lambda r: bert.BertForSequenceClassification(**TINY, num_heads=HEADS, rngs=r)))
  report = convert.load_torch_weights(clf, sd, "hf", allow_missing=("^classifier/",), allow_unexpected=(r"^cls\.",))
  assert sorted(report.missing) == ["classifier/bias", "classifier/kernel"]
  assert len(report.loaded) == len(report.ours) - 2 and all(k.startswith("cls.") for k in report.unexpected)


@needs_torch
@pytest.mark.parametrize("objective", ["classification", "span"])
def test_fine_tuning_loss_equals_hf(objective):
  """tasks/text_finetune.py's training loss (dropout 0) against HF BertForSequenceClassification /
  BertForQuestionAnswering's `loss` on the same batch (sentence pairs, padding) and weights."""
  import ml_collections
  from papers_jax.tasks import text_finetune
  classify = objective == "classification"
  extra = {"num_labels": 3} if classify else {}
  hf_name = "BertForSequenceClassification" if classify else "BertForQuestionAnswering"
  no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  ref = random_hf(getattr(transformers, hf_name), hf_tiny("bert-base-uncased", **no_dropout, **extra), seed=7).train()
  ours, report = load_ours(text_finetune.HEADS[objective], numpy_sd(ref), **TINY, num_heads=HEADS, dropout_rate=0.0,
                           attention_dropout_rate=0.0, **extra)
  assert not (report.missing or report.unexpected or report.mismatched), str(report)
  ids, types, mask = inputs(seed=8)
  rng = np.random.RandomState(9)
  batch = {"input_ids": ids.astype(np.int32), "token_type_ids": types.astype(np.int32), "attention_mask": mask == 1}
  if classify:
    batch["label"] = rng.randint(0, 3, 3).astype(np.int32)
    targets = {"labels": torch.from_numpy(batch["label"].astype(np.int64))}
  else:
    start = rng.randint(0, 8, 3)
    batch |= {"start_position": start.astype(np.int32), "end_position": (start + rng.randint(0, 4, 3)).astype(np.int32),
              "context_mask": mask == 1}
    targets = {"start_positions": torch.from_numpy(start), "end_positions": torch.from_numpy(
        batch["end_position"].astype(np.int64))}
  with torch.no_grad():
    want = ref(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
               attention_mask=torch.from_numpy(mask), **targets).loss.item()
  data = "python_docs_topics" if classify else "number_questions"
  task = text_finetune.TextFinetuneTask(ml_collections.ConfigDict(
      {"finetune": text_finetune.default_config(objective=objective), "data": {"name": data}}))
  graphdef, params, rest = nnx.split(ours, nnx.Param, ...)
  with jax.default_matmul_precision("highest"):
    loss, _ = jax.jit(task.make_loss_fn(graphdef))(nnx.to_pure_dict(params), nnx.to_pure_dict(rest), batch,
                                                   jax.random.key(0))
  print(f"{objective}: ours {float(loss):.6f} HF {want:.6f}")
  assert abs(float(loss) - want) < 1e-5 and want > 0.5


@needs_torch
@pytest.mark.parametrize("cls", [bert.BertForPreTraining, bert.BertModel, fnet.FNetForPreTraining],
                         ids=lambda c: c.__name__)
def test_hf_export_is_the_state_dict_hf_loads(cls, tmp_path):
  """export_state_dict(ours, "hf") → safetensors → HF's strict load_state_dict gives HF's logits of our
  weights, and the export is exactly HF's own state dict; importing it again restores ours exactly."""
  import safetensors.torch
  is_bert = cls in HEADS_BERT
  kwargs = dict(TINY, num_heads=HEADS) if is_bert else TINY
  hf_class, cfg = getattr(transformers, cls.__name__), hf_tiny("bert-base-uncased" if is_bert else "fnet-base")
  sd = numpy_sd(random_hf(hf_class, cfg, seed=11))
  ours, _ = load_ours(cls, sd, **kwargs)
  exported = convert.export_state_dict(ours, "hf")
  assert sorted(exported) == sorted(sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  path = str(tmp_path / "exported.safetensors")
  convert.save_state_dict(exported, path)
  ref = hf_class(cfg).eval()
  ref.load_state_dict(safetensors.torch.load_file(path), strict=True)
  ids, types, mask = inputs(seed=12, type_vocab=2 if is_bert else 4)
  out = hf_forward(ref, ids, types, mask if is_bert else None)
  with jax.default_matmul_precision("highest"):
    got = _forward(ours, ids, types, mask if is_bert else None)
  pairs = ([(got[0], out.last_hidden_state), (got[1], out.pooler_output)] if cls is bert.BertModel
           else [(got[0], out.prediction_logits), (got[1], out.seq_relationship_logits)])
  assert max(max_diff(a, b) for a, b in pairs) < TOL
  back, _ = load_ours(cls, safetensors.torch.load_file(path), **kwargs)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(back, nnx.Param), nnx.state(ours, nnx.Param))
