"""Converts a PyTorch checkpoint into a params checkpoint for `config.init_from`.

  python tools/convert_weights.py --source timm --model vit_base_patch16_224 \
      --checkpoint vit_base_patch16_224.safetensors --out ckpt/vit_b16 [--img-size 384] [--num-classes 10]
  python tools/convert_weights.py --source timm --model swin_base_patch4_window7_224 \
      --checkpoint swin_base_patch4_window7_224.safetensors --out ckpt/swin_b_384 --img-size 384 --window-size 12
  python tools/convert_weights.py --source hf --model mae_vit_base_patch16 \
      --checkpoint vit-mae-base/model.safetensors --out ckpt/mae_b16

`--random-timm` (instead of `--checkpoint`) converts a randomly initialised timm model, for tests
without downloads. With another `--num-classes` than the checkpoint's, the head keeps its init.
"""

import argparse
import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.errors import UserError  # noqa: E402


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--source", default="timm", help="where the weights come from (a registered key map)")
  parser.add_argument("--model", required=True, help="registered model name, e.g. vit_base_patch16_224")
  parser.add_argument("--checkpoint", help=".safetensors or .pth/.pt/.bin state dict")
  parser.add_argument("--random-timm", action="store_true",
                      help="convert a randomly initialised timm model of the same name instead of a file")
  parser.add_argument("--out", required=True, help="output directory (an orbax checkpoint; must not exist)")
  parser.add_argument("--img-size", type=int, help="image size of our model (position embeddings are resampled)")
  parser.add_argument("--window-size", type=int,
                      help="Swin window of our model (relative-position bias tables are resampled)")
  parser.add_argument("--num-classes", type=int, help="classes of our model (default: the checkpoint's)")
  parser.add_argument("--seed", type=int, default=0, help="seed of any freshly initialised params")
  args = parser.parse_args(argv)
  if bool(args.checkpoint) == args.random_timm:
    parser.error("pass exactly one of --checkpoint and --random-timm")
  return args


def convert(args) -> str:
  """Does the conversion; returns the report."""
  from flax import nnx

  from papers_jax import convert, models

  if args.source not in convert.sources():
    raise UserError(f"unknown --source {args.source!r}; known: {', '.join(convert.sources())}")
  models.model_config(args.model)  # a ConfigError for an unknown name, before anything is read
  if args.random_timm:
    if args.source != "timm":
      raise UserError("--random-timm needs --source timm")
    from papers_jax.convert.torch_compat import import_timm
    timm = import_timm()
    import torch
    torch.manual_seed(args.seed)
    state_dict = timm.create_model(args.model, pretrained=False).state_dict()
  else:
    state_dict = convert.load_state_dict(args.checkpoint)

  overrides = {}
  if args.img_size:
    overrides["img_size"] = args.img_size
  if args.window_size:
    overrides["window_size"] = args.window_size
  cls = models.registry.model_class(args.model)
  has_head = "num_classes" in inspect.signature(cls.__init__).parameters  # MAE's pre-training model has none
  if not has_head and args.num_classes is not None:
    raise UserError(f"{args.model} has no classifier head; drop --num-classes")
  ckpt_classes = convert.checkpoint_num_classes(state_dict, args.source, cls.__name__) if has_head else 0
  num_classes = ckpt_classes if args.num_classes is None else args.num_classes
  new_head = num_classes != ckpt_classes
  if has_head:
    overrides["num_classes"] = num_classes
  build = lambda: models.create(args.model, rngs=args.seed, **overrides)  # noqa: E731
  # Without a new head every param comes from the checkpoint: skip the (large) random init.
  model = build() if new_head else nnx.eval_shape(build)
  report = convert.load_torch_weights(model, state_dict, args.source,
                                      allow_missing=("^head/",) if new_head else ())
  convert.save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), args.out)
  note = f"\nthe head ({ckpt_classes} → {num_classes} classes) keeps its init" if new_head else ""
  return f"{report}{note}\nwrote {os.path.abspath(args.out)}"


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    print(convert(args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
