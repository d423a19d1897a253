"""Is a split of data/nlvr_scenes.py solvable by a generic learner that sees perfectly?

  PYTHONPATH=. python tools/nlvr_scenes_oracle.py [--subjects colours] [--held_out combinations] [--templates one_hop]

Instead of images, each example gets the exact object counts: for every subject of the set, how many the
left and the right scene have (capped at 4). With the statement's template, subject and wording one-hot, an
MLP (scikit-learn, 64-64 hidden units) trains on the training pairs and is scored on the test pairs. It must
learn to pick the named subject's counts and apply the template to them; where it does not get the unseen
test statements right even with perfect perception, the split asks for a kind of generalisation (new
template × subject combinations) that a generic learner does not make from these few statements.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def features(split: str, subjects: str, held_out: str, templates: str, blind: bool = False):
  from papers_jax.data import nlvr_scenes
  left, right, template, subject, wording, label = nlvr_scenes.examples(split, subjects, held_out, templates)
  ids = nlvr_scenes._subject_ids(subjects)
  counts = np.minimum(nlvr_scenes.scene_counts(split)[:, ids], 4)
  one_hot = [np.eye(len(nlvr_scenes.TEMPLATES))[template], np.eye(len(nlvr_scenes.SUBJECTS))[subject][:, ids],
             np.eye(3)[wording]]
  if blind:  # the template only: which subject the statement names is hidden
    one_hot = one_hot[:1]
  return np.concatenate(one_hot + [counts[left], counts[right]], axis=1).astype(np.float32), label


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--subjects", default="colours")
  parser.add_argument("--held_out", default="combinations")
  parser.add_argument("--templates", default="pair")
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--blind", action="store_true", help="hide the statement's subject (and wording): a baseline "
                      "that sees every count perfectly but not which one the statement asks about")
  args = parser.parse_args()
  from sklearn.neural_network import MLPClassifier
  train, test = (features(s, args.subjects, args.held_out, args.templates, args.blind) for s in ("train", "test"))
  for seed in range(args.seeds):
    mlp = MLPClassifier((64, 64), max_iter=200, random_state=seed).fit(*train)
    print(f"subjects={args.subjects} held_out={args.held_out} templates={args.templates} blind={args.blind} "
          f"seed {seed}: "
          f"train accuracy {mlp.score(*train):.3f}, test accuracy {mlp.score(*test):.3f}", flush=True)


if __name__ == "__main__":
  main()
