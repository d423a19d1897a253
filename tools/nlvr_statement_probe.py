"""Does a BEiT-3 NLVR run read the colour its statement names, or only how colourful the images are?

  PYTHONPATH=. python tools/nlvr_statement_probe.py --run runs/beit3/nlvr_one_hop_from_captioning

Loads the run's last checkpoint with its config (<run>/config.json) and answers every test pair twice: with
its own statement, and with the statement's colour replaced by the next one of data/vqa_scenes.py's colours
(red → green → blue → yellow → red; same template and wording). Prints the accuracy of each against the
truth of the statement it was given, and the swapped answers' agreement with the original labels. A model that
reads the named colour follows the swap (its accuracy on swapped statements stays up, and its answers stop
agreeing with the original labels); one that does not answers the same either way.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--run", required=True, help="an NLVR run's workdir (configs/beit3/nlvr*.py)")
  args = parser.parse_args()
  import jax
  import ml_collections
  from flax import nnx
  from papers_jax.convert import init_params_from_checkpoint
  from papers_jax.core.state import merge_model
  from papers_jax.data import nlvr_scenes
  from papers_jax.tasks import get_task
  with open(os.path.join(args.run, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f)["config"])
  config.init_from = ""
  task = get_task(config)
  step = max(int(os.path.basename(p)) for p in glob.glob(os.path.join(args.run, "checkpoints", "*"))
             if os.path.basename(p).isdigit())
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, _ = init_params_from_checkpoint(os.path.join(args.run, "checkpoints", str(step), "state"),
                                          nnx.to_pure_dict(params), skip=())
  model = merge_model(graphdef, params, nnx.to_pure_dict(rest))
  predict = jax.jit(lambda b: task._nlvr_logits(model, b).argmax(-1))

  source = task.source(config.data.eval_split)
  counts = nlvr_scenes.scene_counts(config.data.eval_split)
  fn = task.preprocess(train=False)
  colours = nlvr_scenes.COLOURS[1:]
  results = {}
  for name in ("own", "swapped"):
    answers, truths = [], []
    for start in range(0, len(source), 100):
      batch = []
      for i in range(start, min(start + 100, len(source))):
        ex = dict(source[i])
        t, s, w = int(source.template[i]), int(source.subject[i]), int(source.wording[i])
        if name == "swapped":
          colour, kind = nlvr_scenes.SUBJECTS[s]
          if colour:
            s = nlvr_scenes.SUBJECTS.index((colours[(colours.index(colour) + 1) % len(colours)], kind))
          ex["statement"] = nlvr_scenes.statement(t, s, w)
        truths.append(bool(nlvr_scenes.truth(t, counts[source.left[i], s], counts[source.right[i], s])))
        batch.append(fn(ex, None))
      batch = {k: np.stack([e[k] for e in batch]) for k in ("image", "input_ids", "text_mask")}
      answers.append(np.asarray(predict(batch)))
    answers, truths = np.concatenate(answers).astype(bool), np.asarray(truths)
    results[name] = answers
    print(f"{name} statements: accuracy against their truth {np.mean(answers == truths):.3f}; "
          f"agreement with the original labels {np.mean(answers == source.label.astype(bool)):.3f}")
  print(f"answers changed by the swap: {np.mean(results['own'] != results['swapped']):.3f}; step {step}")


if __name__ == "__main__":
  main()
