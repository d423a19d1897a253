"""GPT-3 (Brown et al. 2020, "Language Models are Few-Shot Learners") pretraining at the sizes of its Table 2.1.

  python -m papers_jax.main --config configs/gpt/gpt3.py:variant=gpt3-small --workdir runs/gpt3_small

The models: GPT-2's architecture (models/gpt.py) at context 2,048 with alternating dense and locally banded
attention layers (the registered gpt3-* names, gpt3-small 125M ... gpt3-175b). The recipe (§2.3, Appendix B):
Adam (0.9, 0.95, eps 1e-8), gradient clipping at 1.0, weight decay 0.1, linear warm-up over the first 375M
tokens, cosine decay to 10% of the peak, 300B training tokens; peak lr and batch size per model from
Table 2.1 (0.5M tokens for Small to Large, 1M for XL and 2.7B, 2M for 6.7B and 13B, 3.2M for 175B: 256 to
1,536 rows of 2,048). Data and the rest are configs/gpt/gpt2.py's, which this config loads: C4 as a
public stand-in, a byte-level BPE of 50,257 tokens (lm.tokenizer=<gpt2 tokenizer.json> for GPT-2's own),
documents packed into full rows. The larger models want `--config.mesh.fsdp=-1` and tensor parallelism.
`smoke` runs configs/gpt/gpt2.py's smoke program (a tiny GPT-2 on the bundled Python documentation text).

Departures from the paper:
- C4 instead of the paper's mixture (filtered Common Crawl 60%, WebText2 22%, Books1/2 16%, Wikipedia 3%).
- No batch-size ramp (the paper grows the batch linearly from 32k tokens over the first 4-12B tokens).
- The cosine runs over all 300B tokens (the paper decays over 260B, then stays at 10%).
- Weight decay 0.1 not on biases, LayerNorm gains or embeddings (the paper does not say which).
- The band width of the banded layers is √2048 ≈ 45 (the paper does not give it); attention computes the
  masked logits densely, so the banded layers change the function, not the speed.
- gpt3-xl has 16 heads of 128 and gpt3-13b a width of 5,120: the table's 24 × 128 for d_model 2,048 and
  5,140 for 40 × 128 do not multiply out (the parameter counts are the table's either way).
- Dropout 0.1 (GPT-2's; GPT-3 does not say).
"""

import os

from papers_jax.core.config import load, parse_arg

# Table 2.1: peak learning rate and batch size (rows of 2,048 tokens).
TABLE = {"gpt3-small": (6e-4, 256), "gpt3-medium": (3e-4, 256), "gpt3-large": (2.5e-4, 256),
         "gpt3-xl": (2e-4, 512), "gpt3-2.7b": (1.6e-4, 512), "gpt3-6.7b": (1.2e-4, 1024),
         "gpt3-13b": (1e-4, 1024), "gpt3-175b": (0.6e-4, 1536)}
TRAIN_TOKENS, WARMUP_TOKENS, CONTEXT = 300e9, 375e6, 2048


def get_config(arg=None):
  args = parse_arg(arg, variant="gpt3-small", smoke=False)
  if args.variant not in TABLE:
    from papers_jax.errors import ConfigError
    raise ConfigError(f"variant={args.variant!r}: choose from {sorted(TABLE)}")
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2.py")
  c = load(base + (":smoke" if args.smoke else "")).unlock()
  if args.smoke:  # gpt2.py's smoke program: the same task and model family on bundled text
    return c.lock()
  lr, batch = TABLE[args.variant]
  c.model = dict(name=args.variant, vocab_size=0)
  c.lm.seq_len = CONTEXT
  c.batch_size = batch
  c.num_steps = round(TRAIN_TOKENS / (batch * CONTEXT))
  c.optimizer.lr = lr
  c.schedule.update(name="cosine", warmup_steps=round(WARMUP_TOKENS / (batch * CONTEXT)), end_lr_ratio=0.1)
  return c.lock()
