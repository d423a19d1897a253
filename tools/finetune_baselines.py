"""Trivial baselines for the BERT fine-tuning demos, on the examples their evaluation scores.

  python tools/finetune_baselines.py

configs/bert/finetune_topics.py: always the most frequent topic of the training sentences (accuracy).
configs/bert/finetune_numbers.py: always the first number of the sentence, whatever the question
(exact match and F1 over word pieces, as the run's eval/exact_match and eval/f1).
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
  from papers_jax.core import config as config_lib
  from papers_jax.data import text_tasks
  from papers_jax.tasks import get_task

  config = config_lib.load(os.path.join(ROOT, "configs", "bert", "finetune_topics.py"))
  train, validation = (config.data.train_split, config.data.eval_split)
  labels = np.array([label for *_, label in text_tasks.python_docs_topics(train)])
  majority = np.bincount(labels).argmax()
  eval_labels = np.array([label for *_, label in text_tasks.python_docs_topics(validation)])
  print(f"topics: majority class {text_tasks.TOPICS[majority]!r}: accuracy {np.mean(eval_labels == majority):.4f} "
        f"on {len(eval_labels)} {validation} sentences")

  config = config_lib.load(os.path.join(ROOT, "configs", "bert", "finetune_numbers.py"))
  task = get_task(config)
  true = task.source(config.data.eval_split)
  first = text_tasks.SpanSource([(q, c, text_tasks.first_number_span(c)) for q, c, _ in true.examples],
                                task.tokenizer, max_seq_len=int(config.finetune.max_seq_len))
  assert len(first) == len(true)
  exact, f1 = [], []
  for i in range(len(true)):
    s, e = int(true[i]["start_position"]), int(true[i]["end_position"])
    ps, pe = int(first[i]["start_position"]), int(first[i]["end_position"])
    overlap = max(min(pe, e) - max(ps, s) + 1, 0)
    exact.append(ps == s and pe == e)
    f1.append(0.0 if not overlap else 2 * overlap / ((pe - ps + 1) + (e - s + 1)))
  print(f"numbers: first number: exact match {np.mean(exact):.4f}, F1 {np.mean(f1):.4f} on {len(true)} "
        f"{config.data.eval_split} questions")


if __name__ == "__main__":
  main()
