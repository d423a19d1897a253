"""SimCSE as the paper runs it, on generated sentences: a pre-trained BERT first, then SimCSE; Spearman's ρ on
held-out graded pairs against the untrained encoder, the pre-trained one and bag of words.

  python tools/simcse_demo.py [--workdir runs/simcse_demo] [--docs docs] [--from-scratch]

(1) pre-trains the BERT of configs/simcse/sentence_pairs.py with masked LM on the unsupervised training
sentences (`mode=mlm`), the stand-in for the pre-trained BERT the paper starts from; (2) unsupervised SimCSE
and (3) supervised SimCSE, each started from that encoder (`init=...,init_prefix=bert/`, as the paper starts
both from BERT); (4) supervised SimCSE started from (2) (here (3) collapsed); with `--from-scratch` also
unsupervised SimCSE from random initialisation and supervised SimCSE from it, the recipe without pre-training.
Every run evaluates on the same 1,000 held-out pairs (tasks/simcse.py: eval/spearman and its baselines), and
then, as a diagnosis, on pairs in the training wordings. Writes <workdir>/results.json after every run and the
table simcse_pairs.md to the workdir, or to `--docs DIR`. Every number is measured by the command that
writes it.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG = os.path.join(ROOT, "configs", "simcse", "sentence_pairs.py")
# name → (config argument, the run it starts from or "", what it is)
RUNS = {
    "mlm": ("mode=mlm", "", "masked-LM pre-training (the pre-trained BERT)"),
    "unsup": ("mode=unsupervised,lr=3e-4", "mlm", "unsupervised SimCSE from the MLM encoder"),
    "sup": ("mode=supervised,lr=3e-4", "mlm", "supervised SimCSE from the MLM encoder"),
    "sup_after_unsup": ("mode=supervised", "unsup", "supervised SimCSE from the unsupervised one (2)"),
    "unsup_scratch": ("mode=unsupervised", "", "unsupervised SimCSE from random initialisation"),
    "sup_scratch": ("mode=supervised", "unsup_scratch", "supervised SimCSE from the one from random init"),
}


def checkpoint(workdir: str) -> str:
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  return os.path.join(workdir, "checkpoints", str(steps[-1]), "state")


def run_config(name: str, run_dir: str, steps: int):
  from papers_jax.core import config as config_lib
  arg, parent, _ = RUNS[name]
  if parent:
    arg += f",init={checkpoint(os.path.join(run_dir, parent))}" + (",init_prefix=bert/" if parent == "mlm" else "")
  config = config_lib.load(f"{CONFIG}:{arg}").unlock()
  if steps:
    config.num_steps = config.checkpoint_every = config.eval_every = steps
  return arg, config.lock()


def run(name: str, run_dir: str, steps: int) -> dict:
  from papers_jax.core import loop
  arg, config = run_config(name, run_dir, steps)
  t0 = time.time()
  summary = loop.train(config, os.path.join(run_dir, name))
  if summary["steps"] < config.num_steps:  # stopped early (SIGTERM: a preemption checkpoint): nothing to record
    sys.exit(f"{name} stopped at step {summary['steps']} of {config.num_steps}; rerun the command to resume it")
  return dict(config=arg.replace(run_dir, "<workdir>"), steps=int(config.num_steps), lr=float(config.optimizer.lr),
              wall_s=time.time() - t0, **{k[5:]: v for k, v in summary.items() if k.startswith("eval/")})


def in_training_wordings(name: str, run_dir: str, steps: int) -> dict:
  """Spearman's ρ of the finished run, the untrained encoder and bag of words on 1,000 graded pairs written in
  the training wordings (a diagnosis of the held-out wordings' share in the gap; not the benchmark)."""
  from flax import nnx

  from papers_jax.core import loop
  from papers_jax.data import sentence_pairs
  from papers_jax.tasks import simcse
  _, config = run_config(name, run_dir, steps)
  trainer = loop.Trainer(config, os.path.join(run_dir, name))
  trainer.run()  # restores the finished run's last checkpoint (no steps left)
  task = trainer.task
  rows = sentence_pairs.similarity_pairs(1000, seed=12345, templates=sentence_pairs.TRAIN_TEMPLATES)
  source = sentence_pairs.SentenceSource(rows, task.tokenizer, max_seq_len=int(task.s.max_seq_len), names=("a", "b"))
  embed = task._embed_fn(trainer.graphdef)
  untrained = nnx.split(task.build_model(nnx.Rngs(params=config.seed)), nnx.Param, ...)
  trained = task.pair_scores(embed, trainer.state.params, trainer.state.model_state, source)
  baseline = task.pair_scores(embed, nnx.to_pure_dict(untrained[1]), nnx.to_pure_dict(untrained[2]), source)
  return {"spearman": trained["cls"], "spearman_avg": trained["avg"], "spearman_untrained_cls": baseline["cls"],
          "spearman_untrained_avg": baseline["avg"], "spearman_bag_of_words": simcse.bag_of_words_spearman(rows)}


def synonym_oracle(templates=None) -> float:
  """Bag of words with each value's two wordings merged into one (the generator's synonym table, which no model
  is given): what the grade is once synonymy is known."""
  import re

  from papers_jax.data import sentence_pairs
  from papers_jax.tasks import simcse
  canonical = {f: forms[0].replace(" ", "_") for values in sentence_pairs.ATTRIBUTES.values() for forms in values
               for f in forms}
  pattern = re.compile(r"\b(" + "|".join(sorted(canonical, key=len, reverse=True)) + r")\b")
  merge = lambda text: pattern.sub(lambda m: canonical[m.group(1)], text)  # noqa: E731
  rows = sentence_pairs.similarity_pairs(1000, seed=12345, **({"templates": templates} if templates else {}))
  return simcse.bag_of_words_spearman([(merge(a), merge(b), score) for a, b, score in rows])


def table(results: dict, args, device: str) -> str:
  base = next(iter(results.values()))
  wordings = lambda r, key: f" {r['training_wordings'][key]:.1f} |" if "training_wordings" in r else " |"  # noqa: E731
  rows = [f"| bag of words (cosine of word counts) | — | **{base['spearman_bag_of_words']:.1f}** | |"
          + wordings(base, "spearman_bag_of_words"),
          f"| bag of words, each value's two synonyms merged (an oracle: the generator's table) | — | "
          f"{synonym_oracle():.1f} | | |",
          f"| untrained BERT | [CLS] | {base['spearman_untrained_cls']:.1f} | {base['spearman_untrained_avg']:.1f} |"
          + wordings(base, "spearman_untrained_cls")]
  for name, r in results.items():
    pooled = "[CLS] through the MLP" if RUNS[name][0].startswith("mode=supervised") else "[CLS]"
    rows.append(f"| {RUNS[name][2]} (`{r['config']}`, {r['steps']} steps, lr {r['lr']:g}, {r['wall_s']:.0f} s) | "
                f"{pooled} | {r['spearman']:.1f} | {r['spearman_avg']:.1f} |" + wordings(r, "spearman"))
  return "\n".join([
      "# SimCSE on generated graded pairs", "",
      f"Measured by `python tools/simcse_demo.py --workdir {args.workdir}"
      f"{' --from-scratch' if args.from_scratch else ''}{' --docs ' + args.docs if args.docs else ''}` on {device},",
      f"{time.strftime('%Y-%m-%d')}. Spearman's ρ × 100 between the cosine of two sentences' embeddings and their",
      "grade (0-4 shared attributes) on the same 1,000 held-out pairs in wordings never trained on",
      "(tasks/simcse.py). The paper's protocol: unsupervised SimCSE is tested on [CLS] without the MLP, supervised",
      "with it; the fourth column pools the mean of the last layer's token outputs. The last column is a diagnosis,",
      "not the benchmark: the same pooling on 1,000 pairs graded alike but written in the training wordings.", "",
      "| sentence embedding | pooling | ρ × 100 | ρ × 100, mean of tokens | ρ × 100, training wordings |",
      "|---|---|---|---|---|", *rows, ""])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="runs/simcse_demo")
  parser.add_argument("--from-scratch", action="store_true", help="also the runs without MLM pre-training")
  parser.add_argument("--steps", type=int, default=0, help="steps of every run (0: the config's)")
  parser.add_argument("--docs", default="")
  args = parser.parse_args()
  import jax
  run_dir = os.path.abspath(args.workdir)
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, "results.json")
  results = json.load(open(path)) if os.path.exists(path) else {}
  device = f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores, shared with other jobs)"
  for name in [n for n in RUNS if args.from_scratch or "scratch" not in n]:
    if name not in results:
      results[name] = run(name, run_dir, args.steps)
      json.dump(results, open(path, "w"), indent=2)
      print(name, results[name], flush=True)
  for name in results:
    if "training_wordings" not in results[name]:
      results[name]["training_wordings"] = in_training_wordings(name, run_dir, args.steps)
      json.dump(results, open(path, "w"), indent=2)
  text = table(results, args, device)
  out_dir = args.docs or run_dir
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "simcse_pairs.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
