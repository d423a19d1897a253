"""GPT-2 (Radford et al. 2019) pretraining at the paper's sizes on C4 (a public stand-in for WebText).

  python -m papers_jax.main --config configs/gpt/gpt2.py:variant=gpt2 --workdir runs/gpt2_c4

WebText was never released; `c4/en` (prepared with TFDS as ArrayRecord; the error message gives the
command) is the closest public web corpus. The paper gives the architecture, context 1,024, batch 512 and
a byte-level BPE of 50,257 tokens, but not the optimiser schedule ("manually tuned"); this config takes GPT-3's
for the smallest model (Brown et al. 2020, Table 2.1: Adam (0.9, 0.95), peak lr 6e-4, cosine decay to 10%,
weight decay 0.1, gradient clipping at 1.0, 375M warm-up tokens). Pass lm.tokenizer=<gpt2 tokenizer.json>
to use GPT-2's own vocabulary (it is not downloaded); otherwise a byte-level BPE of 50,257 tokens is trained
on the training split at the first run. Documents are packed into 1,024-token rows and run on into the next
row (GPT-2's concatenate-and-chop). Evaluation: loss, perplexity and bits per byte on the validation split.
Variants: gpt2 (124M), gpt2-medium (355M), gpt2-large (774M), gpt2-xl (1.5B); the larger ones want
`--config.mesh.fsdp=-1` or tensor parallelism (`--config.mesh.tensor=4`). `smoke` runs the same code on
the bundled Python documentation text in seconds.

Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- C4 instead of WebText (never released).
- The paper does not give its optimisation; GPT-3's small-model recipe stands in (above), with
  weight decay 0.1 not on biases, LayerNorm gains or embeddings.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import lm

PEAK_LR = {"gpt2": 6e-4, "gpt2-medium": 3e-4, "gpt2-large": 2.5e-4, "gpt2-xl": 2e-4}  # GPT-3's Table 2.1 sizes


def get_config(arg=None):
  args = parse_arg(arg, variant="gpt2", smoke=False)
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.task = "lm"
  c.lm = lm.default_config(objective="causal", vocab_size=50257, seq_len=1024, split_documents=True)
  c.model = dict(name=args.variant, vocab_size=0)
  c.data.name = "tfds:c4/en"
  c.data.train_split, c.data.eval_split = "train", "validation[:10000]"
  c.batch_size = 512
  c.num_steps = 572_000  # 300B tokens of 1,024 × 512 (GPT-3's budget)
  c.optimizer.update(name="adamw", lr=PEAK_LR[args.variant], b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                     clip_grad_norm=1.0, wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"embed$"))
  c.schedule.update(name="cosine", warmup_steps=715, end_lr_ratio=0.1)  # 375M tokens
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint_every = 2_000
  if args.smoke:
    lm.smoke(c)
  return c.lock()
