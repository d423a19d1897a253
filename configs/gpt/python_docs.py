"""GPT (a small GPT-2) on Python's own documentation text: the causal-LM demo, offline.

  python -m papers_jax.main --config configs/gpt/python_docs.py --workdir runs/gpt_python_docs

Data: the 79 topics of `pydoc_data.topics` (Python 3.11), 71 for training (412k characters) and 8 held
out (53k); a byte-level BPE of 4,096 tokens trained on the training topics; documents packed into rows of
128 tokens with per-document attention and restarted positions. Model: GPT-2's architecture (pre-LN,
GELU-tanh, tied head, learned positions, residual projections scaled by 1/sqrt(2L)) at width 128, 4
layers, 4 heads. AdamW (0.9, 0.95), lr 1e-3, weight decay 0.1, 50 warm-up steps then cosine, batch 16, 400 steps.
Evaluation: held-out loss per token, next-token accuracy, perplexity and bits per byte.
The README's language-model table gives the measured numbers of this command.
`smoke` shrinks it to seconds for the test suite.

Departures from the paper (an offline demo, not one of its experiments):
- Python's documentation text, a 4,096-token BPE, width 128, 4 layers, context 128 instead of
  WebText and GPT-2's sizes.
- AdamW (0.9, 0.95), lr 1e-3, weight decay 0.1 not on biases, LayerNorm gains or embeddings,
  clipping at 1.0, cosine: GPT-3's recipe scaled down (GPT-2's paper gives none).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import lm


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  c = base_config()
  c.task = "lm"
  c.lm = lm.default_config(objective="causal", vocab_size=4096, seq_len=128)
  c.model = dict(name="gpt2", vocab_size=0, context_length=128, embed_dim=128, depth=4, num_heads=4)
  c.data.name = "python_docs"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 16
  c.num_steps = 400
  c.optimizer.update(name="adamw", lr=1e-3, b1=0.9, b2=0.95, weight_decay=0.1, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$", r"embed$"))
  c.schedule.update(name="cosine", warmup_steps=50)
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 200
  if args.smoke:
    lm.smoke(c)
  return c.lock()

