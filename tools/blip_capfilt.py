"""One BLIP CapFilt round (Li et al., 2022, §3.3) on a pre-training run's checkpoint.

  PYTHONPATH=. python tools/blip_capfilt.py --config configs/blip/scenes_pretrain.py \
      --checkpoint runs/blip_pretrain --out runs/blip_pretrain/capfilt.json
  python -m papers_jax.main --config configs/blip/scenes_capfilt.py:captions=runs/blip_pretrain/capfilt.json \
      --workdir runs/blip_capfilt

The captioner (the run's decoder) writes one caption per training image by nucleus sampling (blip.top_p 0.9);
the filter (its ITM head) keeps each original and synthetic caption whose match probability exceeds
--threshold (0.5: "predicted as matched"); the kept captions of every training scene go to --out (JSON), with
the counts, which are also printed. See tasks/blip.py `capfilt`.
"""

import argparse
import json
import sys


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="the pre-training run's config")
  parser.add_argument("--checkpoint", required=True, help="the run's workdir or a checkpoints/<step> directory")
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--set", action="append", default=[], help="config override key=value")
  parser.add_argument("--out", required=True, help="the JSON file of kept captions")
  parser.add_argument("--threshold", type=float, default=0.5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  from papers_jax import cli
  from papers_jax.errors import UserError
  from papers_jax.tasks import blip
  try:
    trainer, what = cli._restored_trainer(args)
    if not isinstance(trainer.task, blip.BLIPTask) or not trainer.task.pretrain:
      raise UserError(f"{args.config} is not a BLIP pre-training config (task blip, objective pretrain)")
    counts = blip.capfilt(trainer.task, trainer, args.out, threshold=args.threshold, seed=args.seed)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps({"checkpoint": what, "out": args.out, **counts}))
  return counts


if __name__ == "__main__":
  main()
