"""BERT fine-tuning for span extraction (Devlin et al. 2019, §4.2, SQuAD v1.1), on generated sentences.

  python -m papers_jax.main --config configs/bert/python_docs.py --workdir runs/bert_docs   # pre-train first
  python -m papers_jax.main --config configs/bert/finetune_numbers.py --workdir runs/bert_numbers \
      --config.init_from=runs/bert_docs/checkpoints/2000/state
  python -m papers_jax.main --config configs/bert/finetune_numbers.py --workdir runs/bert_numbers_scratch   # baseline

Task: a question "How many red apples?" and an English sentence of data/translation.py that holds two or
three written-out numbers ("Three teachers say that we sell nine thousand one hundred and nineteen red
apples."); the answer is the span of the number that counts what the question names. [CLS] question [SEP]
sentence [SEP], at most 64 tokens; 3,530 training questions (3 too long are dropped), 176 validation
(data/text_tasks.py). Model: configs/bert/python_docs.py's (hidden 128, 4 layers, 4 heads, FFN 512, its WordPiece 4,096 vocabulary) with
a start and an end score per token (one linear layer, HF's qa_outputs). init_from loads the encoder of a
pre-training checkpoint and skips its pooler and MLM / NSP heads; without init_from the same model starts
from random weights. Evaluation: eval/exact_match and eval/f1 of the best span in the sentence (start ≤ end,
at most 30 tokens), as SQuAD scores (F1 here over word pieces). The paper's numbers are on SQuAD v1.1
(BERT_BASE dev exact match 80.8, F1 88.5), not comparable. The README gives this demo's measured numbers and
the trivial baseline (always the first number).

The paper's SQuAD recipe: Adam without bias correction (bert_adam), weight decay 0.01, lr 5e-5, batch 32,
3 epochs (the reference code's README example runs 2, as here), linear warm-up over the first 10% then
linear decay to 0, dropout 0.1, gradient clipping at 1.0. Departures from the paper:
  - lr 1e-4 (2 epochs, 220 steps; `:epochs=N` changes it): a 128-wide model briefly pre-trained;
  - sentences instead of paragraphs, no doc-stride windows (every example fits 64 tokens);
  - a model of 1.33M parameters (BERT_BASE: 110M) pre-trained on 412k characters of other text;
  - one run per setting.
"""

from papers_jax.core.config import base_config, parse_arg
from papers_jax.data import text_tasks
from papers_jax.tasks import text_finetune


def get_config(arg=None):
  args = parse_arg(arg, smoke=False, epochs=2)
  c = base_config()
  c.task = "text_finetune"
  c.finetune = text_finetune.default_config(objective="span", vocab_size=4096, max_seq_len=64, max_answer_len=30)
  c.model = dict(name="bert-base-uncased", vocab_size=0, hidden_size=128, num_layers=4, num_heads=4,
                 intermediate_size=512, max_position_embeddings=128, dropout_rate=0.1, attention_dropout_rate=0.1)
  c.data.name = "number_questions"
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.init_skip = text_finetune.INIT_SKIP["span"]
  c.batch_size = 32
  c.num_steps = args.epochs * len(text_tasks.number_questions("train")) // c.batch_size
  c.optimizer.update(name="bert_adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, clip_grad_norm=1.0,
                     wd_exclude=(r"(^|/)bias$", r"(^|/)scale$"))
  c.schedule.update(name="linear", warmup_steps=c.num_steps // 10)
  c.log_every = 50
  c.eval_every = 0
  c.checkpoint_every = c.num_steps
  if args.smoke:
    text_finetune.smoke(c)
  return c.lock()
