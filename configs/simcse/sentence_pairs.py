"""SimCSE (Gao, Yao, Chen 2021) on our BERT, unsupervised or supervised, on generated sentences.

  python tools/simcse_demo.py --workdir runs/simcse_demo      # the three stages below, one table

  python -m papers_jax.main --config configs/simcse/sentence_pairs.py:mode=mlm --workdir runs/simcse_mlm
  python -m papers_jax.main --config configs/simcse/sentence_pairs.py:init=runs/simcse_mlm/checkpoints/1000/\
state,init_prefix=bert/,lr=3e-4 --workdir runs/simcse_unsup
  python -m papers_jax.main --config configs/simcse/sentence_pairs.py:mode=supervised,init=runs/simcse_unsup/\
checkpoints/1000/state --workdir runs/simcse_sup

`mode=mlm` pre-trains the encoder with BERT's masked LM (15%, 80/10/10, no next-sentence prediction) on the
unsupervised training sentences: the stand-in for the pre-trained BERT the paper starts both SimCSEs from
(`init=<its checkpoint>,init_prefix=bert/`); supervised SimCSE straight from it collapsed at lr 3e-4 (every
embedding alike, the loss at log 2N), so the demo starts it from the unsupervised run. Unsupervised: dropout
(0.1, BERT's) as the only noise, in-batch InfoNCE at temperature 0.05, the [CLS] output through an MLP (BERT's
pooler: dense + tanh, untrained by the MLM stage, as the paper's freshly initialised MLP) in training and
without it at test. Supervised: generated NLI-style triples (premise, entailment as the positive,
contradiction as the hard negative), the MLP kept at test. Without `init` both start from random
initialisation (the supervised one then collapsed: every embedding the same, the loss at log 2N, at lr 1e-3
and 2e-4). The paper's batch 64 (unsupervised); Adam. Evaluation: Spearman's ρ × 100 on 1,000 held-out pairs
graded 0-4 (in wordings never trained on) against the untrained model and a bag-of-words baseline
(tasks/simcse.py); docs/language_extras.md has the measured numbers. `smoke` shrinks it to seconds.

Departures from the paper:
- Generated sentences (data/sentence_pairs.py) instead of 10^6 Wikipedia sentences (unsupervised) and
  SNLI + MNLI (supervised), and generated graded pairs instead of STS12-16 / STS-B / SICK-R: no NLI or STS
  set is bundled and nothing downloads.
- A small BERT (hidden 64, 2 layers, 4 heads) pre-trained here (`mode=mlm`: masked LM only, 1,000 steps of
  batch 64 at lr 1e-3 on the unsupervised sentences) instead of the released BERT-base (BooksCorpus +
  Wikipedia, MLM + NSP); unsupervised SimCSE from it at lr 3e-4 (given as `lr=`; the paper: 3e-5), supervised
  from the unsupervised run at 2e-4 (the paper: 5e-5, from BERT); without `init` lr 1e-3 (unsupervised) / 2e-4
  (supervised; 1e-3 collapsed every embedding to one point); 50 warm-up steps and a linear decay (the paper:
  linear decay, no warm-up).
- Supervised: batch 64 instead of 512, 500 steps; unsupervised 1,000 steps (the paper: one epoch of 10^6).
- Sequences cut to 24 tokens (the generated sentences are shorter).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import simcse


def get_config(arg=None):
  args = parse_arg(arg, mode="unsupervised", init="", init_prefix="", lr=0.0, smoke=False)
  c = base_config()
  c.task = "simcse"
  c.simcse = simcse.default_config(mode=args.mode)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=64, num_layers=2, num_heads=4,
                 intermediate_size=256, max_position_embeddings=32)
  c.init_from = args.init  # a run's <workdir>/checkpoints/<step>/state: the encoder to start from
  c.init_prefix = args.init_prefix  # "bert/" when that run is a mode=mlm one (BertForPreTraining's encoder)
  c.data.name = "sentence_pairs"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.batch_size = 64
  c.num_steps = 500 if args.mode == "supervised" else 1000
  # Supervised at 1e-3 collapsed at once (every embedding the same, the loss at log 2N): 2e-4 there.
  lr = args.lr or (2e-4 if args.mode == "supervised" else 1e-3)
  c.optimizer.update(name="adamw", lr=lr, weight_decay=0.0, clip_grad_norm=0.0, wd_exclude=())
  c.schedule.update(name="linear", warmup_steps=50, end_lr_ratio=0.0)
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 1000
  if args.smoke:
    simcse.smoke(c)
  return c.lock()
