"""BERT fine-tuning for sequence classification (Devlin et al. 2019, §4.1, GLUE), on bundled text.

  python -m papers_jax.main --config configs/bert/python_docs.py --workdir runs/bert_docs   # pre-train first
  python -m papers_jax.main --config configs/bert/finetune_topics.py --workdir runs/bert_topics \
      --config.init_from=runs/bert_docs/checkpoints/2000/state
  python -m papers_jax.main --config configs/bert/finetune_topics.py --workdir runs/bert_topics_scratch   # baseline

Task: which of 8 topics of Python's documentation (`pydoc_data.topics`: compound, specialnames, types,
string-methods, debugger, typesseq, formatstrings, typesmapping) a sentence comes from; single sentences
[CLS] A [SEP] of at most 64 tokens; 1,773 training and 437 validation sentences (every fifth sentence of
each topic; sentences that occur twice are left out). data/text_tasks.py builds sentence pairs [CLS] A [SEP]
B [SEP] the same way for GLUE's pair tasks. Six of the topics are in the pre-training text (unlabelled, as
GLUE's sentences may be in Wikipedia); debugger and formatstrings are held out of it. Model:
configs/bert/python_docs.py's (hidden 128, 4 layers, 4 heads, FFN 512, its WordPiece 4,096 vocabulary) with
the classifier on the pooled [CLS] output (dropout 0.1 → linear). init_from loads the encoder and pooler of
a pre-training checkpoint and skips its MLM and NSP heads; without init_from the same model starts from
random weights. Evaluation: eval/accuracy on the validation sentences. The paper's numbers are on GLUE
(BERT_BASE's average 79.6), not comparable. The README gives this demo's measured numbers and the trivial
(majority-class) baseline.

The paper's fine-tuning recipe: Adam without bias correction (bert_adam), weight decay 0.01, lr among
{2, 3, 5}e-5, batch 32, 3 epochs, linear warm-up over the first 10% then linear decay to 0, dropout 0.1,
gradient clipping at 1.0 (the reference code's). Departures from the paper:
  - lr 1e-4 and 5 epochs (277 steps; `:epochs=N` changes it): a 128-wide model briefly pre-trained, for
    which 3 epochs at 5e-5 are few steps (smaller BERTs are tuned with larger learning rates);
  - a model of 1.35M parameters (BERT_BASE: 110M) pre-trained on 412k characters, not on Wikipedia + books;
  - one run per setting (the paper picks the best lr on the dev set, and restarts unstable runs).
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import text_tasks
from papers_jax.tasks import text_finetune


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, epochs=5)
  c = base_config()
  c.task = "text_finetune"
  c.finetune = text_finetune.default_config(objective="classification", vocab_size=4096, max_seq_len=64)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=128, num_layers=4, num_heads=4,
                 intermediate_size=512, max_position_embeddings=128, dropout_rate=0.1, attention_dropout_rate=0.1)
  c.data.name = "python_docs_topics"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.init_skip = text_finetune.INIT_SKIP["classification"]
  c.batch_size = 32
  c.num_steps = args.epochs * len(text_tasks.python_docs_topics("train")) // c.batch_size
  c.optimizer.update(name="bert_adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=c.num_steps // 10)
  c.log_every = 50
  c.eval_every = 0
  c.checkpoint_every = c.num_steps
  if args.smoke:
    text_finetune.smoke(c)
  return c.lock()
