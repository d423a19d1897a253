"""FNet pretraining (Lee-Thorp et al. 2022) with BERT's objectives on C4.

  python -m papers_jax.main --config configs/fnet/c4.py:variant=base --workdir runs/fnet_base_c4

The paper pre-trains FNet and BERT the same way on C4 (masked LM + next-sentence prediction) and compares
them on GLUE (abstract: "92-97% of the accuracy of BERT counterparts") and on speed ("80% faster on GPUs and
70% faster on TPUs at standard 512 input lengths"). Here: `c4/en` prepared with TFDS as ArrayRecord (the error
message gives the command), a WordPiece vocabulary of 32,000 trained on the training split, sequence length
512, batch 64, Adam (β 0.9, 0.999, ε 1e-6, decoupled weight decay 0.01 on every parameter) at lr 1e-4 with
10,000 warm-up steps and a linear decay to 0, no gradient clipping, at most 80 masked predictions a sequence,
1,000,000 steps. The paper's body was not in the search index (only its abstract); these settings are the
authors' released pre-training code's (google-research f_net: configs/pretraining.py, run_pretraining.py's
Adam and schedule), whose vocabulary is a SentencePiece BPE model of C4 (c4_bpe_sentencepiece.model).
`tools/benchmark.py --config configs/fnet/c4.py` against the same with
`--set model.name=bert-base-uncased` gives the FNet/BERT step-time ratio (add `--set model.vocab_size=32000` so
that no tokenizer is trained). BertPretrainingSource builds its sentence pairs in memory, so a run on C4 needs
a slice that fits (e.g. `--config.data.train_split='train[:100000]'`); a streaming pair writer does not exist
yet. `smoke` runs the same code on the bundled Python documentation text in seconds.

Precision: bfloat16 compute with float32 params and float32 softmax, norms and losses;
`--config.dtype=float32` for full precision. `smoke` keeps bfloat16.

Departures from the paper:
- A WordPiece vocabulary of 32,000 trained here instead of the released SentencePiece BPE model.
- optax's AdamW, bias-corrected as flax.optim.Adam in the released code; weight decay on every parameter and
  no clipping as there (an earlier version of this config clipped at 1.0 and spared biases and LayerNorm
  gains, as BERT's code; no run of it was reported).
- bfloat16 compute with float32 params (Precision above).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import lm


def get_config(arg=None):
  args = parse_arg(arg, variant="base", smoke=False)
  c = base_config()
  c.dtype = "bfloat16"  # compute; params stay float32
  c.task = "lm"
  c.lm = lm.default_config(objective="bert", vocab_size=32000, max_seq_len=512, max_predictions=80, dupe_factor=1)
  c.model = dict(name=f"fnet-{args.variant}", vocab_size=0)
  c.data.name = "tfds:c4/en"
  c.data.train_split, c.data.eval_split = "train", "validation[:10000]"
  c.batch_size = 64
  c.num_steps = 1_000_000
  # The released f_net code: flax.optim.Adam(1e-4, 0.9, 0.999, eps=1e-6, weight_decay=0.01), no clipping.
  c.optimizer.update(name="adamw", lr=1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=0.0,
                     wd_exclude=())
  c.schedule.update(name="linear", warmup_steps=10_000)
  c.log_every = 100
  c.eval_every = 50_000
  c.checkpoint_every = 5_000
  if args.smoke:
    lm.smoke(c)
  return c.lock()
