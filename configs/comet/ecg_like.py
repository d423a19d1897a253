"""COMET (Wang et al., NeurIPS 2023) on the generated ECG-like set with patients and trials
(data/ecg_like.py), evaluated with TS2Vec's protocols on the inter-patient test split.

  python -m papers_jax.main --config configs/comet/ecg_like.py --workdir runs/comet_ecg_like

COMET's encoder (models/comet.py: TS2Vec's dilated CNN; the paper's hidden 64, 10 blocks, 320 dimensions with
`paper`, a smaller one by default, below) and its hierarchical loss (objectives/comet.py) at the patient,
trial, sample and observation levels, weighted as the official PTB configuration (0.1, 0.7, 0.1, 0.1), no
mask for the patient and trial levels and continuous spans for the other two, τ = 0.1 for the id levels;
AdamW (torch's default weight decay 0.01), the uniform average of the weights evaluated (the official
AveragedModel). The report: an RBF-SVM and a linear probe on
the max-pooled representations of the test patients' heartbeats, beside the SVM on the raw beats and on the
untrained encoder. `ids=False` drops the patient and trial levels (the ablation: sample and observation levels
only, ½ and ½). `smoke` runs a small encoder for a few steps.

Departures from the paper:
- The data: a generated ECG-like set (48 patients, 3 recordings each, 6 beats of 96 steps and 3 leads per
  recording; data/ecg_like.py), not PTB / PTB-XL, which are not bundled (sktime's mitdb has one record and no
  patient identity). Evaluated at the sample (beat) level only, by frozen-representation protocols, not by
  fine-tuning; the paper also reports patient-level results.
- Sized for a loaded 2-core CPU (8 encoder passes a step): a small encoder, hidden 16, 5 blocks, 64 dimensions
  (the paper: 64, 10, 320; `paper` builds the paper's), batch 32 (256), 100 steps (100 epochs); lr 1e-3 (the
  official PTB setting: 1e-4).
- Batches are drawn at random, where the official code's "trial" shuffle keeps each trial's samples in one
  batch; a level whose batch holds no pair of the same id contributes 0 (the official code divides by zero).
- The factors weight every level: the official code applies them to the sample and observation levels only
  (its non-hierarchical branch returns the patient and trial losses unweighted when their factor is nonzero).
- Each channel is standardised with the train split's statistics (the official code scales each trial).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.tasks import ts_representation


def get_config(arg=None):
  args = parse_arg(arg, steps=100, paper=False, ids=True, smoke=False)
  c = base_config()
  c.task = "ts_representation"
  c.data.name, c.data.path = "ecg_like", ""
  c.data.train_split, c.data.eval_split = "train", "test"
  c.ts_repr = ts_representation.default_config(
      method="comet", comet_factors=(0.1, 0.7, 0.1, 0.1) if args.ids else (0.0, 0.0, 0.5, 0.5),
      comet_temperature=0.1,
      comet_masks=("all_true", "all_true", "continuous", "continuous"))
  c.model = dict(name="comet", output_dims=320, hidden_dims=64, depth=10, dropout=0.1)
  if not args.paper:
    c.model.update(output_dims=64, hidden_dims=16, depth=5)
  c.batch_size = 32
  c.num_steps = args.steps
  c.optimizer.update(name="adamw", lr=1e-3, weight_decay=0.01, wd_exclude=(), clip_grad_norm=0.0)
  c.schedule.update(name="constant", warmup_steps=0)
  c.weight_average = "uniform"
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.log_every = 20
  c.eval_every = 0
  c.checkpoint_every = 100
  if args.smoke:
    c.model.update(output_dims=16, hidden_dims=8, depth=2)
    c.batch_size, c.num_steps = 16, 3
    c.log_every, c.checkpoint_every = 1, 3
  return c.lock()
