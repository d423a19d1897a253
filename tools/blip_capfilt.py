"""One BLIP CapFilt round (Li et al., 2022, §3.3) on a pre-training run's checkpoint, then the second
pre-training of a new model on the bootstrapped captions, from one command:

  PYTHONPATH=. python tools/blip_capfilt.py --config configs/blip/scenes_pretrain.py \\
      --checkpoint runs/blip_pretrain --out runs/blip_pretrain/capfilt.json --workdir runs/blip_capfilt

The captioner (the run's decoder) writes one caption per training image by nucleus sampling (blip.top_p 0.9);
the filter (its ITM head) keeps each original and synthetic caption whose match probability exceeds
--threshold (0.5: "predicted as matched"); the kept captions of every training scene go to --out (JSON). The
filter also scores one corrupted caption per scene (another scene's caption that does not hold for it), which
never enters the file: with vqa_scenes.caption_holds as the truth, the counts give the filter's precision and
recall. See tasks/blip.py `capfilt`. With --workdir, a new model is then pre-trained from random weights on
the kept captions (configs/blip/scenes_capfilt.py, as many steps as the first run unless --steps), and the
evaluations of both runs are printed side by side. Without it, only the round runs.
"""

import argparse
import json
import os
import sys

COMPARED = ("caption_bleu4", "caption_cider", "itc_i2t_r1", "itc_t2i_r1", "itm_itc_i2t_r1", "itm_itc_t2i_r1",
            "itm_i2t_r1", "itm_t2i_r1", "itm_accuracy", "itc_top1", "lm_accuracy")


def _eval_metrics(summary: dict) -> dict:
  return {k: summary.get(f"eval/{k}") for k in COMPARED}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="the pre-training run's config")
  parser.add_argument("--checkpoint", required=True, help="the run's workdir or a checkpoints/<step> directory")
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--set", action="append", default=[], help="config override key=value")
  parser.add_argument("--out", required=True, help="the JSON file of kept captions")
  parser.add_argument("--threshold", type=float, default=0.5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--scenes", type=int, default=0, help="only the first N training scenes (measures the "
                      "filter; its file cannot feed a second pre-training)")
  parser.add_argument("--workdir", default="", help="the second pre-training's workdir (none: only the round)")
  parser.add_argument("--second_config", default="configs/blip/scenes_capfilt.py", help="its arguments, if any, come "
                      "before the captions and steps that the tool adds")
  parser.add_argument("--steps", type=int, default=None, help="the second pre-training's steps (the first run's)")
  args = parser.parse_args(argv)
  from papers_jax import cli
  from papers_jax.core import config as config_lib
  from papers_jax.core import loop
  from papers_jax.errors import UserError
  from papers_jax.tasks import blip
  try:
    if args.workdir and args.scenes:
      raise UserError("--scenes makes a partial round; a second pre-training (--workdir) needs every scene")
    if args.workdir and os.path.exists(os.path.join(args.workdir, "summary.json")):
      raise UserError(f"{args.workdir} holds a finished run; give a new --workdir")
    trainer, what = cli._restored_trainer(args)
    if not isinstance(trainer.task, blip.BLIPTask) or not trainer.task.pretrain:
      raise UserError(f"{args.config} is not a BLIP pre-training config (task blip, objective pretrain)")
    first_steps = int(trainer.config.num_steps)
    result = blip.capfilt(trainer.task, trainer, args.out, threshold=args.threshold, seed=args.seed,
                          scenes=args.scenes)
    print(json.dumps({"checkpoint": what, "out": args.out, **result}), flush=True)
    if args.workdir:
      if not result["scenes_kept"]:
        raise UserError(f"the filter kept no caption at --threshold {args.threshold}; nothing to pre-train on")
      del trainer
      steps = args.steps or first_steps
      spec = args.second_config + ("," if ":" in args.second_config else ":")
      second = loop.train(config_lib.load(f"{spec}captions={os.path.abspath(args.out)},steps={steps}"), args.workdir)
      run_dir = os.path.abspath(args.checkpoint)
      first_summary = os.path.join(run_dir, "summary.json")
      first = json.load(open(first_summary)) if os.path.isfile(first_summary) else {}
      result["comparison"] = {"first": _eval_metrics(first), "bootstrapped": _eval_metrics(second)}
      print(json.dumps({"workdir": args.workdir, **result["comparison"]}), flush=True)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  return result


if __name__ == "__main__":
  main()
