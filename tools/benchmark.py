"""Measures a config's model the same way every time: compile time, step time, throughput, MFU.

  python tools/benchmark.py --config configs/vit/imagenet.py:variant=B/16 --batch 256 [--dtype bfloat16]
      [--mode train|infer|decode|input] [--attention xla|cudnn] [--remat full|dots|dots_no_batch] [--scan]
      [--steps 20] [--warmup 3] [--json out.json]
      [--reference torch+compile] [--set model.key=value ...]

Inputs are synthetic and already on device (a task may say how with `synthetic_batch(batch, rng)`, and
pass its sequence lengths to the model's FLOP counter in `forward_flops(model)`), so the model is measured,
not the input pipeline;
`--mode input` measures the input pipeline alone (the config's data, preprocessing and threads).
The step is compiled ahead of time (its time reported separately), then run `--warmup` times and
timed over `--steps` steps, each step synchronised, reporting the median and the spread, and
examples/s (and tokens/s for the language models).
FLOPs per example are counted analytically (`models.forward_flops`: matmuls and convolutions, a counter
next to each family's variant table; core/flops.py) and by XLA's cost analysis (which counts a loop's
body once: `xla_flops_note` says when `--scan` makes it too low); MFU is analytic FLOPs per second over
the device's dense peak (on CPU: a measured float32 GEMM ceiling).
`--mode decode` times autoregressive decoding (Whisper: the front end, the encoder and greedy or beam
decoding with the KV cache, all in one jitted program).
`--reference torch|torch_compile|torch+compile` times PyTorch's implementation of the same model on
the same device (eager and/or `torch.compile`; CUDA when JAX runs on a GPU, which needs a CUDA build of
torch; bf16 autocast with `--dtype bfloat16`): HF transformers' GPT-2 and BERT pre-training, Whisper
(training, forward, greedy `generate`), wav2vec 2.0 pre-training and CTC, timm's image models. It reports
the JAX/PyTorch throughput ratio.
"""

import argparse
import ast
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.core import host, platform_setup  # noqa: E402  (standard library only)

if __name__ == "__main__":
  platform_setup.setup_entry_point()  # before JAX starts: the train step's buffers on huge pages, as in training

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from papers_jax import models, tasks  # noqa: E402
from papers_jax.core import config as config_lib, flops as flops_lib, optim, sharding, step as step_lib  # noqa: E402
from papers_jax.core.state import create_train_state  # noqa: E402
from papers_jax.nn.remat import REMAT_POLICIES  # noqa: E402


def apply_override(config, item: str):
  """`a.b.c=value`: the value read as a Python literal (true/false accepted), else kept as a string."""
  key, sep, text = item.partition("=")
  if not sep:
    raise SystemExit(f"error: --set wants KEY=VALUE, got {item!r}")
  try:
    value = ast.literal_eval({"true": "True", "false": "False"}.get(text.lower(), text))
  except (ValueError, SyntaxError):
    value = text
  config_lib.set_path(config, key, value)


def forward_flops(model, task=None) -> float:
  """Per-example forward FLOPs (core/flops.py: the model family's counter, at the task's lengths); NaN without one."""
  flops = flops_lib.forward_flops(model, task)
  return float("nan") if flops is None else flops


def gemm_rate(matmul, size: int, repeats: int = 5) -> float:
  """FLOP/s of the fastest of `repeats` calls of `matmul()`, a synchronised size³ product, after one untimed call."""
  matmul()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    matmul()
    times.append(time.perf_counter() - t)
  return 2 * size ** 3 / min(times)


def cpu_matmul_peak(size: int = 2048) -> float:
  """A measured float32 GEMM ceiling on this machine (the CPU 'peak' for MFU)."""
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return gemm_rate(lambda: f(a).block_until_ready(), size)


def device_peak(dtype: str):
  kind = jax.devices()[0].device_kind
  if jax.default_backend() == "cpu":
    return cpu_matmul_peak(), "measured float32 GEMM (2048³)"
  return flops_lib.known_peak(kind, dtype)


def _hlo_computations(hlo_text: str) -> dict:
  """Computation name → its instructions' text, from a compiled module's text."""
  bodies, name, body = {}, None, []
  for line in hlo_text.splitlines():
    head = re.match(r"\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if head and "=" not in re.sub(r"/\*.*?\*/", "", line).split("{")[0]:  # long tuples carry /*index=5*/
      name, body = head.group(1), []
    elif line.strip() == "}" and name:
      bodies[name] = "\n".join(body)
      name = None
    elif name:
      body.append(line)
  return bodies


def _is_matmul(text: str) -> bool:
  return bool(re.search(r"\b(dot|convolution)\(", text)) or "__onednn$matmul" in text or "xnn" in text


def matmul_loops(hlo_text: str) -> int:
  """How many while loops of the compiled module run a matmul in their body (a scan over blocks; the
  RNG's small loops do not). XLA's cost analysis counts such a body once, not once per iteration."""
  bodies = _hlo_computations(hlo_text)

  def runs_matmul(name, seen):
    text = bodies.get(name, "")
    return _is_matmul(text) or any(runs_matmul(c, seen | {c})
                                   for c in re.findall(r"(?:calls|body|to_apply)=%?([\w.\-]+)", text) if c not in seen)
  return sum(runs_matmul(body, {body}) for body in re.findall(r"\swhile\(.*?body=%?([\w.\-]+)", hlo_text))


def _hlo_kinds(hlo_text: str) -> dict:
  """Instruction name → (what it computes, its result type), from the compiled module's text. What it
  computes: "matmul" (a dot or convolution, alone or inside a fusion), "reduction", "copy/transpose",
  or the opcode."""
  bodies = _hlo_computations(hlo_text)
  kinds = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+).*?\s([a-z\-]+)\(", line)
    if not m:
      continue
    inst, result_type, opcode = m.groups()
    text = line
    called = re.search(r"calls=%?([\w.\-]+)", line)
    if called:
      text += bodies.get(called.group(1), "")
    if _is_matmul(text):
      kind = "matmul"
    elif re.search(r"\breduce(-window)?\(", text):
      kind = "reduction"
    elif opcode in ("copy", "transpose") or re.search(r"\b(copy|transpose)\(", text) and opcode == "fusion":
      kind = "copy/transpose"
    else:
      kind = opcode
    kinds[inst] = (kind, re.sub(r"\{[^}]*\}", "", result_type))
  return kinds


def profile_steps(run, args_fn, steps: int, log_dir: str, hlo_text: str) -> dict:
  """Runs `steps` steps under jax.profiler and sums the device time of each HLO instruction from the
  Perfetto trace, grouped by what it computes (see _hlo_kinds). Returns seconds per step per group and
  the 15 costliest instructions."""
  import glob
  import gzip
  jax.block_until_ready(run(*args_fn()))
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    for _ in range(steps):
      jax.block_until_ready(run(*args_fn()))
  paths = sorted(glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True), key=os.path.getmtime)
  if not paths:
    raise SystemExit(f"error: jax.profiler wrote no perfetto_trace.json.gz under {log_dir}")
  events = json.load(gzip.open(paths[-1]))
  events = events["traceEvents"] if isinstance(events, dict) else events
  kinds = _hlo_kinds(hlo_text)
  per_inst = {}
  for e in events:
    if e.get("ph") == "X" and e.get("name") in kinds:
      per_inst[e["name"]] = per_inst.get(e["name"], 0.0) + e.get("dur", 0) / 1e6 / steps
  groups = {}
  for inst, seconds in per_inst.items():
    groups[kinds[inst][0]] = groups.get(kinds[inst][0], 0.0) + seconds
  top = sorted(per_inst.items(), key=lambda kv: -kv[1])[:15]
  return {"trace": paths[-1], "instructions_timed": len(per_inst),
          "seconds_per_step_by_kind": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
          "top_instructions": [(inst, *kinds[inst], seconds) for inst, seconds in top]}


def time_steps(fn, args_fn, steps: int, warmup: int):
  """Wall time of each of `steps` synchronised steps after `warmup`, this process's CPU time and
  minor page faults per timed step (on CPU, XLA maps a fresh temporary buffer per execution, and
  its page faults show up as system time), and its peak resident memory so far."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args_fn()))
  times = []
  before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    args = args_fn()
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  after = resource.getrusage(resource.RUSAGE_SELF)
  usage = {"user_cpu_s": (after.ru_utime - before.ru_utime) / steps,
           "system_cpu_s": (after.ru_stime - before.ru_stime) / steps,
           "minor_page_faults": (after.ru_minflt - before.ru_minflt) / steps,
           "max_resident_bytes": after.ru_maxrss * 1024}  # Linux reports KiB
  return times, usage


def _timm_twin(name: str, overrides: dict, batch: int, device: str, torch):
  """timm's model of the same name and size, and a synthetic image batch for it."""
  from papers_jax.convert.torch_compat import import_timm
  timm = import_timm()
  kwargs = {k: overrides[k] for k in ("num_classes", "img_size", "patch_size", "embed_dim", "depth", "num_heads",
                                      "mlp_ratio", "in_chans", "global_pool", "class_token", "depths", "window_size",
                                      "num_blocks") if k in overrides}
  try:
    model = timm.create_model(name, pretrained=False, **kwargs)
  except TypeError:  # entry points that fix their widths (timm's MLP-Mixers): build the class directly
    with torch.device("meta"):
      cls = type(timm.create_model(name, pretrained=False))
    model = cls(**{k: v for k, v in {**models.model_config(name), **kwargs}.items()
                   if k in ("img_size", "patch_size", "embed_dim", "num_blocks", "depth", "depths", "num_heads",
                            "window_size", "mlp_ratio", "num_classes", "in_chans", "global_pool")})
  model = model.to(device)
  embed = model.stem if hasattr(model, "stem") else model.patch_embed  # MlpMixer calls it stem
  x = torch.randn(batch, embed.proj.in_channels, *embed.img_size, device=device)
  y = torch.randint(0, max(model.num_classes, 1), (batch,), device=device)
  return (model, lambda: torch.nn.functional.cross_entropy(model(x), y), lambda: model(x),
          {"library": "timm", "version": timm.__version__})


def _transformers_twin(model, task, batch: int, device: str, torch, mode: str = "train"):
  """HF transformers' GPT-2, BERT, Whisper or wav2vec 2.0 of the run's sizes and dropout rates (from `model`,
  ours, built for shapes only), and a synthetic batch of the task's lengths; None for other models. Returns
  (module, loss(), infer(), library): infer is the forward, or with `mode="decode"` (Whisper) HF's greedy
  `generate` with its KV cache, made to produce exactly as many tokens as ours. Each library runs its own
  implementation: HF's BERT computes MLM logits at every position, ours at the masked ones."""
  kind = type(model).__name__
  if kind not in ("GPT", "BertForPreTraining", "Whisper", "Wav2Vec2"):
    return None
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim that transformers' imports need on a CPU build of torch
  import transformers
  ids = lambda n, shape: torch.randint(5, n, shape, device=device)  # noqa: E731
  if kind == "Whisper":
    d, layers = model.d_model, len(model.encoder)
    cfg = transformers.WhisperConfig(
        vocab_size=model.token_embedding.shape[0], num_mel_bins=model.num_mels, d_model=d, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=model.num_heads, decoder_attention_heads=model.num_heads,
        encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d, max_source_positions=model.max_source_positions,
        max_target_positions=model.max_target_positions, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, pad_token_id=model.tokens.eot, bos_token_id=model.tokens.eot,
        eos_token_id=model.tokens.eot, decoder_start_token_id=model.tokens.sot)
    twin = transformers.WhisperForConditionalGeneration(cfg).to(device)
    # HF's encoder takes exactly 2 · max_source_positions frames: the task's window
    features = torch.randn(batch, model.num_mels, 2 * model.max_source_positions, device=device)
    tokens = ids(model.tokens.eot, (batch, len(task.prompt) + int(task.c.max_tokens)))
    loss = lambda: twin(input_features=features, decoder_input_ids=tokens[:, :-1], labels=tokens[:, 1:]).loss  # noqa: E731
    infer = lambda: twin(input_features=features, decoder_input_ids=tokens[:, :-1]).logits  # noqa: E731
    if mode == "decode":  # greedy after the task's prompt, max_tokens + 1 new tokens (ours: Whisper.transcribe)
      prompt = torch.tensor([task.prompt] * batch, device=device)
      new_tokens = int(task.c.max_tokens) + 1
      # GenerationMixin's plain greedy loop (Whisper's own generate adds language detection and long-form
      # logic); min_new_tokens holds <|endoftext|> back so that every run decodes all the tokens, as ours does.
      infer = lambda: transformers.GenerationMixin.generate(  # noqa: E731
          twin, input_features=features, decoder_input_ids=prompt, max_new_tokens=new_tokens,
          min_new_tokens=new_tokens, do_sample=False, num_beams=1, use_cache=True)
    return twin, loss, infer, {"library": "transformers", "version": transformers.__version__}
  if kind == "Wav2Vec2":
    return _wav2vec2_twin(model, task, batch, device, torch, transformers)
  if kind == "GPT":
    block = model.blocks[0]
    cfg = transformers.GPT2Config(
        vocab_size=model.vocab_size, n_positions=model.context_length, n_embd=model.embed_dim,
        n_layer=len(model.blocks), n_head=model.num_heads, n_inner=block.mlp.fc1.kernel.shape[1],
        embd_pdrop=model.embed_drop.rate, resid_pdrop=block.mlp_drop.rate, attn_pdrop=block.attn.attn_drop,
        layer_norm_epsilon=model.norm.eps)
    twin = transformers.GPT2LMHeadModel(cfg).to(device)
    tokens = ids(model.vocab_size, (batch, task.lm.seq_len))
    loss, infer = (lambda: twin(input_ids=tokens, labels=tokens).loss), (lambda: twin(input_ids=tokens).logits)
  else:
    bert, layer = model.bert, model.bert.layers[0]
    emb = bert.embeddings
    cfg = transformers.BertConfig(
        vocab_size=bert.vocab_size, hidden_size=bert.hidden_size, num_hidden_layers=len(bert.layers),
        num_attention_heads=layer.attn.num_heads, intermediate_size=layer.mlp.fc1.kernel.shape[1],
        hidden_act=bert.hidden_act, hidden_dropout_prob=bert.dropout_rate,
        attention_probs_dropout_prob=layer.attn.attn_drop, max_position_embeddings=emb.max_positions,
        type_vocab_size=emb.token_type_embeddings.shape[0], layer_norm_eps=bert.layer_norm_eps)
    twin = transformers.BertForPreTraining(cfg).to(device)
    t, p = task.lm.max_seq_len, task.lm.max_predictions
    inputs = {"input_ids": ids(bert.vocab_size, (batch, t)),
              "token_type_ids": (torch.arange(t, device=device) >= t // 2).long().expand(batch, t),
              "attention_mask": torch.ones(batch, t, dtype=torch.long, device=device)}
    labels = torch.full((batch, t), -100, device=device)  # -100: not a prediction
    positions = torch.argsort(torch.rand(batch, t - 1, device=device), dim=1)[:, :p] + 1
    labels.scatter_(1, positions, ids(bert.vocab_size, (batch, p)))
    nsp = torch.randint(0, 2, (batch,), device=device)
    loss = lambda: twin(**inputs, labels=labels, next_sentence_label=nsp).loss  # noqa: E731
    infer = lambda: twin(**inputs).prediction_logits  # noqa: E731
  return twin, loss, infer, {"library": "transformers", "version": transformers.__version__}


def _wav2vec2_twin(model, task, batch: int, device: str, torch, transformers):
  """HF's Wav2Vec2ForPreTraining (task "wav2vec2": the contrastive and diversity losses with span masks and
  distractors drawn by HF's own numpy samplers at the task's settings) or Wav2Vec2ForCTC (task "ctc")."""
  import inspect

  from papers_jax.models.wav2vec2 import Wav2Vec2
  defaults = {k: p.default for k, p in inspect.signature(Wav2Vec2.__init__).parameters.items()
              if p.default is not inspect.Parameter.empty}
  m = defaults | models.model_config(task.config.model.name) | dict(task.config.model)
  m["vocab_size"] = model.vocab_size
  ctc = model.vocab_size > 0
  cfg = transformers.Wav2Vec2Config(
      conv_dim=list(m["conv_dim"]), conv_kernel=list(m["conv_kernel"]), conv_stride=list(m["conv_stride"]),
      num_feat_extract_layers=len(m["conv_dim"]), hidden_size=m["hidden_size"], num_hidden_layers=m["num_layers"],
      num_attention_heads=m["num_heads"], intermediate_size=m["mlp_dim"], feat_extract_norm=m["feat_extract_norm"],
      conv_bias=m["conv_bias"], do_stable_layer_norm=m["stable_layer_norm"],
      num_conv_pos_embeddings=m["pos_conv_kernel"], num_conv_pos_embedding_groups=m["pos_conv_groups"],
      num_codevector_groups=m["num_codevector_groups"], num_codevectors_per_group=m["num_codevectors_per_group"],
      codevector_dim=m["codevector_dim"], proj_codevector_dim=m["proj_codevector_dim"],
      vocab_size=max(m["vocab_size"], 1), hidden_dropout=m["hidden_dropout"], attention_dropout=m["attention_dropout"],
      activation_dropout=m["activation_dropout"], feat_proj_dropout=m["feat_proj_dropout"],
      feat_quantizer_dropout=m["feat_quantizer_dropout"], final_dropout=m["final_dropout"], layerdrop=m["layerdrop"],
      # HF holds the mask embedding only when it masks; both mask at the task's rate in training
      mask_time_prob=float(task.cfg.mask_prob), mask_time_length=int(task.cfg.mask_length),
      mask_time_min_masks=int(task.cfg.min_masks), ctc_zero_infinity=True, pad_token_id=0)
  host = task.synthetic_batch(batch, np.random.default_rng(0))
  audio = torch.tensor(host["audio"], device=device)
  if ctc:
    twin = transformers.Wav2Vec2ForCTC(cfg).to(device)
    labels = torch.tensor(np.where(host["label_mask"], host["labels"], -100), device=device)
    loss = lambda: twin(input_values=audio, labels=labels).loss  # noqa: E731
    infer = lambda: twin(input_values=audio).logits  # noqa: E731
  else:
    from transformers.models.wav2vec2 import modeling_wav2vec2 as hf
    twin = transformers.Wav2Vec2ForPreTraining(cfg).to(device)
    shape = (batch, int(twin._get_feat_extract_output_lengths(audio.shape[1])))
    c = task.cfg
    mask = hf._compute_mask_indices(shape, mask_prob=c.mask_prob, mask_length=c.mask_length, min_masks=c.min_masks)
    negatives = hf._sample_negative_indices(shape, c.num_negatives, mask_time_indices=mask)
    mask, negatives = torch.tensor(mask, device=device), torch.tensor(negatives, device=device)
    loss = lambda: twin(input_values=audio, mask_time_indices=mask, sampled_negative_indices=negatives).loss  # noqa: E731
    infer = lambda: twin(input_values=audio, mask_time_indices=mask).projected_states  # noqa: E731
  return twin, loss, infer, {"library": "transformers", "version": transformers.__version__}


def torch_reference(name: str, overrides: dict, batch: int, mode: str, steps: int, warmup: int,
                    compiled: bool = False, dtype: str = "float32", model=None, task=None, gemm_size: int = 0):
  """PyTorch's implementation of the run's model on JAX's device kind (CUDA when JAX runs on a GPU),
  eager or with `torch.compile` (whose compile happens in the warm-up steps and is timed separately):
  HF transformers' for GPT-2 and BERT pre-training (`model`, ours built for shapes only, and `task`
  give their sizes and lengths), else timm's model of the same name.

  Equal terms: `--dtype bfloat16` runs it under bf16 autocast (float32 params, as ours); float32
  matmuls on a GPU may use TF32, as JAX's default precision does there; AdamW is torch's fused one
  on CUDA. Every step is synchronised, as the JAX steps are."""
  import torch
  device = "cpu"
  if jax.default_backend() == "gpu":
    if not torch.cuda.is_available():
      raise SystemExit("error: JAX runs on a GPU but this torch cannot reach CUDA; --reference needs a CUDA build of "
                       "torch to time PyTorch on the same device")
    device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  elif jax.default_backend() != "cpu":
    raise SystemExit(f"error: --reference runs PyTorch on CPU or CUDA, not on JAX's {jax.default_backend()!r} backend")
  twin = _transformers_twin(model, task, batch, device, torch, mode) if model is not None else None
  if mode == "decode" and twin is None:
    raise SystemExit("error: --mode decode --reference has a twin for Whisper only")
  module, loss_fn, infer_fn, library = twin or _timm_twin(name, overrides, batch, device, torch)
  opt = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=device == "cuda")
  autocast = lambda: torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")  # noqa: E731
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  if mode == "train":
    module.train()
    def step():
      opt.zero_grad(set_to_none=True)
      with autocast():
        loss = loss_fn()
      loss.backward()
      opt.step()
      sync()
  else:
    module.eval()
    def step():
      with torch.no_grad(), autocast():
        infer_fn()
      sync()
  if compiled:
    module.forward = torch.compile(module.forward)
  t = time.perf_counter()
  for _ in range(max(warmup, 1 if compiled else 0)):
    step()
  warmup_s = time.perf_counter() - t
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
  size = gemm_size or (8192 if device == "cuda" else 2048)
  a = torch.randn(size, size, device=device, dtype=torch.bfloat16 if dtype == "bfloat16" else torch.float32)
  return {"torch": torch.__version__, **library, "model": type(module).__name__, "compiled": compiled,
          "device": device, "dtype": dtype, "warmup_s": warmup_s,
          "median_step_s": statistics.median(times), "min_step_s": min(times), "max_step_s": max(times),
          "samples_per_s": batch / statistics.median(times), "threads": torch.get_num_threads(),
          # PyTorch's own GEMM in the run's precision (default 2048³ on CPU, 8192³ on CUDA; --reference-gemm-size)
          "gemm_peak_flops_per_s": gemm_rate(lambda: (a @ a, sync()), size)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True)
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--attention", default=None, choices=("xla", "cudnn"))
  parser.add_argument("--remat", default=None, choices=sorted(REMAT_POLICIES),
                      help="per-block rematerialisation policy (nn/remat.py; ViT, MAE, CLIP, BERT, GPT); "
                      "sets config.model.remat")
  parser.add_argument("--scan", action="store_true", help="scan over the transformer blocks (ViT, MAE): "
                      "one block compiled instead of depth; sets config.model.scan")
  parser.add_argument("--mode", default="train", choices=("train", "infer", "decode", "input"),
                      help="input: the host input pipeline's examples/s on the config's real data, no model; "
                      "decode: autoregressive decoding, the whole loop in one jit (speech_to_text: Whisper's greedy "
                      "or beam transcription with the KV cache)")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--reference-gemm-size", type=int, default=0,
                      help="side of PyTorch's own GEMM in --reference (default 2048 on CPU, 8192 on CUDA); CPUs "
                      "without native bfloat16 run a bf16 2048³ GEMM at well under 1 GFLOP/s")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--reference", default=None, choices=("torch", "torch_compile", "torch+compile"),
                      help="time timm's twin in the same run: eager, torch.compile, or both")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override, e.g. --set model.encoder_mask_token=true (repeatable)")
  parser.add_argument("--json", default=None)
  parser.add_argument("--profile", default=None, metavar="DIR",
                      help="after timing, profile 2 steps into DIR and sum the time of each HLO instruction by kind")
  args = parser.parse_args(argv)
  memory_settings = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")
  if args.reference and not any(k in os.environ for k in memory_settings):
    # On a GPU, JAX would reserve 75% of the memory up front and leave PyTorch, in the same process,
    # too little: it allocates as it goes instead (read when JAX's backend starts, just below).
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

  config = config_lib.load(args.config).unlock()
  for item in args.set:
    apply_override(config, item)
  if args.batch:
    config.batch_size = args.batch
  config.grad_accum_steps = 1
  config.dtype = args.dtype
  if args.attention:
    config.model.attention_impl = args.attention
  if args.remat:
    config.model.remat = args.remat
  if args.scan:
    config.model.scan = True
  config = config.lock()
  task = tasks.get_task(config)
  if args.mode == "input":
    return finish(args, {"config": args.config, **input_throughput(config, task, args.steps, args.warmup)})
  mesh = sharding.make_mesh(dict(config.mesh))
  rules = sharding.rules_from_config(config.sharding_rules)
  batch = config.batch_size
  size, channels = config.model.get("img_size", config.data.image_size), config.model.get("in_chans", 3)
  height, width = tuple(size) if isinstance(size, (tuple, list)) else (size, size)

  with sharding.use_mesh(mesh, rules):
    holder = {}

    def make_tx(params):
      # Enough steps for any warm-up (ImageNet recipes warm up for 10k+ steps); only the update's cost matters.
      steps = 1000 + int(config.schedule.get("warmup_steps", 0))
      tx, holder["schedule"] = optim.make_optimizer(config.optimizer, config.schedule, params, steps)
      return tx

    state, shardings, graphdef, tx = create_train_state(task.build_model, make_tx, mesh, rules, config.seed)
    rng = np.random.default_rng(0)
    if hasattr(task, "synthetic_batch"):  # text and image-text tasks: token ids of the config's lengths
      host_batch = task.synthetic_batch(batch, rng)
    else:
      host_batch = {"image": rng.integers(0, 256, (batch, height, width, channels), dtype=np.uint8),
                    "label": rng.integers(0, config.model.get("num_classes", 2), (batch,), dtype=np.int32)}
    host_batch["mask"] = np.ones((batch,), np.bool_)
    device_batch = sharding.global_batch(host_batch, mesh, rules)

    if args.mode == "train":
      step_fn = step_lib.jit_train_step(
          step_lib.make_train_step(task.make_loss_fn(graphdef), tx, holder["schedule"]), shardings, mesh, rules)
    elif args.mode == "decode":
      if not hasattr(task, "make_decode_fn"):
        raise SystemExit(f"error: --mode decode needs a task that decodes (speech_to_text), not {config.task!r}")
      step_fn = step_lib.jit_eval_step(task.make_decode_fn(graphdef), shardings, mesh, rules)
    else:
      step_fn = step_lib.jit_eval_step(task.make_eval_fn(graphdef), shardings, mesh, rules)
    t = time.perf_counter()
    lowered = step_fn.lower(state, device_batch)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # The cost of one SPMD partition (one device's program): × devices for the whole batch's.
    xla_flops = float(cost.get("flops", float("nan"))) * mesh.devices.size / batch
    hlo_text = compiled.as_text()
    loops = matmul_loops(hlo_text)
    memory = compiled.memory_analysis()
    peak_bytes = None
    if memory is not None:
      peak_bytes = int(getattr(memory, "temp_size_in_bytes", 0) + getattr(memory, "argument_size_in_bytes", 0)
                       + getattr(memory, "output_size_in_bytes", 0) - getattr(memory, "alias_size_in_bytes", 0))

    if args.mode == "train":
      current = {"state": state}

      def run(b):
        current["state"], metrics = compiled(current["state"], b)
        return metrics
      times, usage = time_steps(run, lambda: (device_batch,), args.steps, args.warmup)
      profile_args = (run, lambda: (device_batch,))
    else:
      times, usage = time_steps(compiled, lambda: (state, device_batch), args.steps, args.warmup)
      profile_args = (compiled, lambda: (state, device_batch))
    profile = profile_steps(*profile_args, 2, args.profile, hlo_text) if args.profile else None

  overrides = {k: v for k, v in dict(config.model).items() if k not in ("name", "dtype")}
  shape_model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))  # the measured model's shapes
  analytic = forward_flops(shape_model, task) * (flops_lib.TRAIN_PER_FORWARD if args.mode == "train" else 1)
  if args.mode == "decode":  # token by token with a cache: no counter of its own, so no MFU either
    analytic = float("nan")
  median = statistics.median(times)
  peak, peak_source = device_peak(args.dtype)
  result = {
      "config": args.config, "model": config.model.name, "mode": args.mode, "batch": batch, "dtype": args.dtype,
      "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind, "backend": jax.default_backend(),
      "compile_s": compile_s, "median_step_s": median, "min_step_s": min(times), "max_step_s": max(times),
      "step_times_s": [round(t, 4) for t in times],
      "samples_per_s": batch / median, "analytic_flops_per_sample": analytic, "xla_flops_per_sample": xla_flops,
      "xla_to_analytic": xla_flops / analytic, "peak_flops_per_s": peak, "peak_source": peak_source,
      "mfu": analytic * batch / median / peak if peak else None, "peak_memory_bytes": peak_bytes,
      "jax": jax.__version__, "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "host_cpu": host.host_cpu(), **host.memory_settings(),
      "steps": args.steps, "warmup": args.warmup, "overrides": args.set, "remat": args.remat or "",
      "scan": args.scan, "host_usage_per_step": usage,
  }
  if hasattr(task, "tokens_per_example"):  # language models: tokens/s too
    result["tokens_per_s"] = result["samples_per_s"] * task.tokens_per_example()
  if loops:
    result["xla_flops_note"] = (f"the compiled program runs matmuls in {loops} while loop(s) (--scan runs the blocks in "
                                "one): XLA's cost analysis counts a loop's body once, so its FLOP count is too low")
  if profile:
    result["profile"] = profile
  if args.reference:
    for compiled in (False, True) if args.reference == "torch+compile" else (args.reference == "torch_compile",):
      key = "torch_compile" if compiled else "torch"
      ref = torch_reference(config.model.name, overrides, batch, args.mode, args.steps, args.warmup, compiled,
                            args.dtype, shape_model, task, args.reference_gemm_size)
      result[f"{key}_reference"] = ref
      result[f"jax_to_{key}"] = result["samples_per_s"] / ref["samples_per_s"]
  return finish(args, result)


def finish(args, result: dict) -> dict:
  for key, value in result.items():
    print(f"{key:>26}: {value}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


def input_throughput(config, task, batches: int, warmup: int) -> dict:
  """Examples/s of the run's host input pipeline (the trainer's source, preprocessing, threads and
  batching) over `batches` global batches after `warmup`; each batch's wait is timed."""
  from papers_jax.core.loop import preprocess_fn
  from papers_jax.data import pipeline
  from papers_jax.data.sources import get_source
  split = config.data.train_split
  source = task.source(split) if hasattr(task, "source") else get_source(config.data, split)
  starts = pipeline.batch_starts(0, warmup + batches, config.batch_size)
  preprocess = preprocess_fn(config, task, True)
  it = pipeline.train_batches(source, preprocess, global_batch=config.batch_size,
                              seed=config.seed, starts=starts, num_threads=config.data_threads)
  for _ in range(warmup):
    next(it)
  times = []
  t_all = time.perf_counter()
  for _ in range(batches):
    t = time.perf_counter()
    next(it)
    times.append(time.perf_counter() - t)
  total = time.perf_counter() - t_all
  del it
  # Where one example's time goes, timed serially in this thread: reading it (and, for image files,
  # decoding it) against the per-example preprocessing (crops, resizes, tokenisation).
  rng, read_s, prep_s = np.random.default_rng(0), [], []
  for i in range(min(64, len(source))):
    t = time.perf_counter()
    example = dict(source[i])
    t_read = time.perf_counter()
    preprocess(example, rng)
    read_s.append(t_read - t)
    prep_s.append(time.perf_counter() - t_read)
  return {"mode": "input", "data": config.data.name, "batch": config.batch_size, "data_threads": config.data_threads,
          "batches": batches, "examples_per_s": batches * config.batch_size / total,
          "median_batch_wait_s": statistics.median(times), "max_batch_wait_s": max(times),
          "serial_read_ms_per_example": 1e3 * statistics.median(read_s),
          "serial_preprocess_ms_per_example": 1e3 * statistics.median(prep_s),
          "cpu_count": os.cpu_count(), "python": platform.python_version()}


if __name__ == "__main__":
  main()
