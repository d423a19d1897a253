"""The BEiT-3 demo in one command: visual tokenizer → masked data modelling → NLVR2-style fine-tuning and
captioning.

  PYTHONPATH=. python tools/beit3_demo.py [--workdir runs/beit3] [--scratch]

Runs, each in its own workdir under --workdir (a stage whose summary.json exists is not run again):
  tokenizer  configs/beit3/tokenizer.py        the VQ-VAE that gives each 16×16 patch its visual token
  pretrain   configs/beit3/scenes_pretrain.py  MIM + MLM + pair masked modelling, with that tokenizer
  captioning configs/beit3/scenes_captioning.py  init_from the pre-training run's last checkpoint
  nlvr       configs/beit3/nlvr.py (or --nlvr_config)  init_from the pre-training run's last checkpoint, or
             with --nlvr_init=captioning the captioning run's (workdir <nlvr config>_from_captioning)
  nlvr_scratch (with --scratch)                the same fine-tuning from random weights
then prints the NLVR test accuracy beside the baselines that never look at the images (the majority
label, the majority label of each exact statement and of each meaning; the same model with blank images is
in the run's eval/accuracy_blank_images), the captioning BLEU-4 and CIDEr-D beside the nearest
training image's caption and the most frequent caption, and writes them to <workdir>/results.json.
`--stages` picks the fine-tunings (default "nlvr,captioning").
`--args` passes extra config overrides (e.g. `--args=--config.num_steps=10`) to every stage.
"""

import argparse
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def last_checkpoint(workdir: str) -> str:
  steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "*"))
                 if os.path.basename(p).isdigit())
  if not steps:
    raise SystemExit(f"no checkpoint in {workdir}")
  return os.path.join(workdir, "checkpoints", str(steps[-1]), "state")


def run(config: str, workdir: str, *overrides: str) -> dict:
  summary = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary):
    cmd = [sys.executable, "-m", "papers_jax.main", "--config", os.path.join(ROOT, "configs", "beit3", config),
           "--workdir", workdir, *overrides]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=os.environ | {"PYTHONPATH": ROOT})
  with open(summary) as f:
    return json.load(f)


def masked_modelling_baselines(tokenizer_checkpoint: str) -> dict:
  """Accuracy of always predicting the most frequent training target, on the evaluation's own masks (the test
  scenes, each with its first caption, as tasks/beit3.py evaluates): per masked-modelling term."""
  import numpy as np
  from papers_jax.core import config as config_lib
  from papers_jax.tasks import get_task
  config = config_lib.load(os.path.join(ROOT, "configs", "beit3", "scenes_pretrain.py")).unlock()
  config.beit3.visual_tokenizer = tokenizer_checkpoint
  task = get_task(config)
  train_tokens = task.visual_tokens("train")
  top_code = np.bincount(train_tokens.ravel()).argmax()
  source = task.source("test")
  fn = task.preprocess(train=False)
  hits = {"mim": [0, 0], "pair_mim": [0, 0], "mlm": [0, 0], "pair_mlm": [0, 0]}
  train_fn, train_source = task.preprocess(train=True), task.source("train")
  rng = np.random.default_rng(0)
  examples = [train_fn(dict(train_source[i]), rng) for i in range(0, len(train_source), 6)]
  words = np.concatenate([e["text_labels"][e["text_weights"] > 0] for e in examples])
  top_word = np.bincount(words).argmax()
  for i in range(len(source)):
    ex = fn(dict(source[i]), None)
    for key, mask in (("mim", ex["image_mask"]), ("pair_mim", ex["pair_image_mask"])):
      hits[key][0] += int((ex["visual_tokens"][mask] == top_code).sum())
      hits[key][1] += int(mask.sum())
    for key, prefix in (("mlm", "text"), ("pair_mlm", "pair")):
      w = ex[f"{prefix}_weights"] > 0
      hits[key][0] += int((ex[f"{prefix}_labels"][w] == top_word).sum())
      hits[key][1] += int(w.sum())
  return {f"{k}_majority_accuracy": a / max(n, 1) for k, (a, n) in hits.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="runs/beit3")
  parser.add_argument("--scratch", action="store_true", help="also fine-tune from random weights")
  parser.add_argument("--args", default="", help="extra overrides for every stage, space-separated")
  parser.add_argument("--pretrain_steps", type=int, default=0, help="the pre-training config's steps (0: its default)")
  parser.add_argument("--nlvr_config", default="nlvr.py", help="nlvr.py, or nlvr_colours.py (colour statements)")
  parser.add_argument("--nlvr_steps", type=int, default=0, help="the NLVR config's steps (0: its default)")
  parser.add_argument("--captioning_steps", type=int, default=0, help="the captioning config's steps (0: its default)")
  parser.add_argument("--stages", default="nlvr,captioning", help="fine-tunings to run: nlvr, captioning or both")
  parser.add_argument("--nlvr_init", default="pretrain", choices=("pretrain", "captioning"),
                      help="the run NLVR starts from: the pre-training, or the captioning fine-tuning of it")
  args = parser.parse_args()
  extra = args.args.split()
  root = os.path.abspath(args.workdir)
  run("tokenizer.py", os.path.join(root, "tokenizer"), *extra)
  pretrain_config = "scenes_pretrain.py" + (f":steps={args.pretrain_steps}" if args.pretrain_steps else "")
  pretrain = run(pretrain_config, os.path.join(root, "pretrain"),
                 f"--config.beit3.visual_tokenizer={last_checkpoint(os.path.join(root, 'tokenizer'))}", *extra)
  results = {"pretrain": {k: v for k, v in pretrain.items() if k.startswith("eval/")}}
  stages = args.stages.split(",")
  pretrained = f"--config.init_from={last_checkpoint(os.path.join(root, 'pretrain'))}"

  def captioning():
    config = "scenes_captioning.py" + (f":steps={args.captioning_steps}" if args.captioning_steps else "")
    caption = run(config, os.path.join(root, "captioning"), pretrained, *extra)
    results["captioning"] = {k: v for k, v in caption.items() if k.startswith(("eval/caption", "eval/baseline",
                                                                                   "eval/accuracy"))}
    results["captioning_wall_time_s"] = caption.get("wall_time_s")

  def nlvr():
    stage = args.nlvr_config[:-len(".py")] + ("_from_captioning" if args.nlvr_init == "captioning" else "")
    start = pretrained if args.nlvr_init == "pretrain" else \
        f"--config.init_from={last_checkpoint(os.path.join(root, 'captioning'))}"
    nlvr_config = args.nlvr_config + (f":steps={args.nlvr_steps}" if args.nlvr_steps else "")
    summary = run(nlvr_config, os.path.join(root, stage), start, *extra)
    results["nlvr"] = {k: v for k, v in summary.items() if k.startswith("eval/accuracy")}
    results["nlvr_init"] = args.nlvr_init
    results["nlvr_wall_time_s"] = summary.get("wall_time_s")
    if args.scratch:
      scratch = run(nlvr_config, os.path.join(root, f"{args.nlvr_config[:-len('.py')]}_scratch"), *extra)
      results["nlvr_scratch"] = {k: v for k, v in scratch.items() if k.startswith("eval/accuracy")}
    from papers_jax.core import config as config_lib
    from papers_jax.data import nlvr_scenes
    data = config_lib.load(os.path.join(ROOT, "configs", "beit3", args.nlvr_config)).data
    held_out = data.get("held_out", "combinations")
    results["baselines"] = nlvr_scenes.label_baselines(data.get("subjects", "all"), held_out,
                                                       data.get("templates", "pair"))

  if args.nlvr_init == "captioning":  # NLVR starts from the captioning run, which must come first
    captioning()
    if "nlvr" in stages:
      nlvr()
  else:
    if "nlvr" in stages:
      nlvr()
    if "captioning" in stages:
      captioning()
  results["pretrain_baselines"] = masked_modelling_baselines(last_checkpoint(os.path.join(root, "tokenizer")))
  with open(os.path.join(root, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
