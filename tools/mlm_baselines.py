"""Word-frequency baselines for a masked-LM config's held-out masked positions.

  python tools/mlm_baselines.py [--config configs/bert/python_docs.py]

Builds the config's tokenizer and pretraining pairs exactly as training does, then scores two models
that know only token frequencies of the train split's masked labels: always predicting the most
frequent one (accuracy), and the add-one-smoothed unigram distribution (NLL per masked token, the
unit of the run's eval/loss). A masked LM has learned something beyond frequencies only when it
beats both on the same positions.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def masked_labels(source) -> np.ndarray:
  rows = (source[i] for i in range(len(source)))
  return np.concatenate([r["masked_labels"][r["masked_weights"] > 0] for r in rows])


def main(argv=None):
  from papers_jax import tasks
  from papers_jax.core import config as config_lib
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs/bert/python_docs.py"))
  args = parser.parse_args(argv)
  config = config_lib.load(args.config)
  if config.get("task") != "lm" or config.lm.objective != "bert":
    parser.error(f"{args.config} is not a masked-LM config (task 'lm', lm.objective 'bert')")
  task = tasks.get_task(config)
  train = masked_labels(task.source(config.data.train_split))
  held_out = masked_labels(task.source(config.data.eval_split))
  counts = np.bincount(train, minlength=task.tokenizer.vocab_size) + 1.0
  probs = counts / counts.sum()
  result = {"masked_positions": int(len(held_out)),
            "majority_token_accuracy": float(np.mean(held_out == np.argmax(counts))),
            "unigram_nll": float(-np.mean(np.log(probs[held_out])))}
  for key, value in result.items():
    print(f"{key:>24}: {value}")
  return result


if __name__ == "__main__":
  main()
