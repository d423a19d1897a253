"""The `papers-jax` command: train, evaluate, predict, export, list models.

  papers-jax train --config configs/vit/digits.py --workdir runs/vit_digits [--config.key=value ...]
  papers-jax eval --config configs/vit/digits.py --checkpoint runs/vit_digits [--step N] [--set key=value]
  papers-jax predict --config configs/vit/digits.py --checkpoint runs/vit_digits digit.png [--top-k 5]
  papers-jax predict --model vit_base_patch16_224 --checkpoint vit_b16.safetensors photo.jpg
  papers-jax predict --config configs/gpt/python_docs.py --checkpoint runs/gpt_docs --text "The list" [--max-new-tokens 40]
  papers-jax export --config configs/vit/digits.py --checkpoint runs/vit_digits --format stablehlo --out vit.stablehlo
  papers-jax export --model vit_base_patch16_224 --checkpoint ckpt/vit_b16 --format timm --out vit.safetensors
  papers-jax export --config configs/vit/digits.py --checkpoint runs/vit_digits --format timm --ema --out e.safetensors
  papers-jax list-models [PATTERN]

`--checkpoint` is a run's workdir (its newest checkpoint, or `--step`), a run's
`checkpoints/<step>` directory, or a params checkpoint (`tools/convert_weights.py`, or
`checkpoints/<step>/state`); a params checkpoint restores params only (BatchNorm statistics keep
their init). `predict --model NAME` classifies with a registered model and a timm / HF file or params
checkpoint, and preprocesses the images as the name says (`models.preprocessing`: input size,
crop_pct, interpolation, mean, std). `train` is `python -m papers_jax.main`; with no command,
`papers-jax --config ...` trains.
Exit codes: 0 done, 2 a problem the message names.
"""

import argparse
import json
import os
import sys

COMMANDS = ("train", "eval", "predict", "export", "list-models")


def _load_config(spec: str, overrides: list[str]):
  from papers_jax.core import config as config_lib
  config = config_lib.load(spec).unlock()
  config.init_from = ""  # the checkpoint given to the command supplies the weights
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise config_lib.ConfigError(f"--set {item!r}: give key=value")
    current = config
    try:
      for name in key.split(".")[:-1]:
        current = current[name]
      old = current[key.split(".")[-1]]
    except (KeyError, TypeError):
      raise config_lib.ConfigError(f"--set {item!r}: the config has no field {key!r}") from None
    value = text if isinstance(old, str) else _override_value(item, text)
    config_lib.set_path(config, key, tuple(value) if isinstance(old, tuple) else value)
  return config.lock()


def _override_value(item: str, text: str):
  """A --set value as JSON, or as a Python literal (True, None, (1, 2)) as configs spell them."""
  import ast
  from papers_jax.core import config as config_lib
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    pass
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise config_lib.ConfigError(f"--set {item!r}: {text!r} is neither JSON nor a Python literal "
                                 "(strings need no quotes only where the field is a string)") from None


def _restored_trainer(args):
  """A Trainer (validated, not run) whose state is the checkpoint's."""
  from papers_jax.core import checkpoint as ckpt_lib
  from papers_jax.core import config as config_lib
  from papers_jax.core import loop
  from papers_jax.core.state import abstract_state
  from papers_jax.errors import CheckpointError
  config = _load_config(args.config, args.set)
  path = os.path.abspath(args.checkpoint)
  run_dir = path if os.path.isdir(os.path.join(path, "checkpoints")) else None
  step_dir = os.path.basename(path).isdigit() and os.path.isdir(os.path.join(path, "state"))
  if not (run_dir or step_dir) and config_lib.keeps_weight_average(config):  # no weight EMA in a params file
    config = config.unlock()
    config.ema_decay, config.weight_average = 0.0, "ema"
    config = config.lock()
  trainer = loop.Trainer(config, path)
  if run_dir or step_dir:
    directory = os.path.join(path, "checkpoints") if run_dir else os.path.dirname(path)
    checkpointer = ckpt_lib.Checkpointer(directory, async_save=False)
    try:
      steps = checkpointer.all_steps()
      step = args.step if args.step is not None else (int(os.path.basename(path)) if step_dir else
                                                       (steps[-1] if steps else None))
      if step is None or step not in steps:
        raise CheckpointError(f"no checkpoint of step {step} in {directory} (it has {steps})")
      trainer.state, _ = checkpointer.restore(step, abstract_state(trainer.shardings, trainer.state))
    finally:
      checkpointer.manager.close()
    return trainer, f"{directory} step {step}"
  from papers_jax.convert import init_params_from_checkpoint
  params, _ = init_params_from_checkpoint(path, trainer.state.params, skip=())
  trainer.state = trainer.state.replace(params=params)
  return trainer, f"params of {path}"


def _model(trainer, ema: bool = False):
  """The restored model; `ema`: with the weight EMA (a run with config.ema_decay) as its params."""
  from papers_jax.core.state import merge_model
  from papers_jax.errors import UserError
  if ema and "ema_params" not in trainer.state.extra:
    raise UserError("--ema: this checkpoint holds no weight EMA; give a run's checkpoint trained with "
                    "config.ema_decay > 0, or leave out --ema")
  params = trainer.state.extra["ema_params"] if ema else trainer.state.params
  return merge_model(trainer.graphdef, params, trainer.state.model_state)


def evaluate(args) -> dict:
  """Every evaluation of the config (data.eval_split's and config.evals) of the checkpoint; pictures and
  TensorBoard scalars go to --out when given."""
  trainer, what = _restored_trainer(args)
  writer = None
  if args.out:
    from papers_jax.core import metrics as metrics_lib
    os.makedirs(args.out, exist_ok=True)
    writer = metrics_lib.MetricWriter(args.out, enabled=True, resume_step=None)
  try:
    metrics = trainer.evaluate(writer=writer)
  finally:
    if writer is not None:
      writer.close()
  result = {"checkpoint": what, "step": int(trainer.state.step), **metrics}
  if args.out:
    with open(os.path.join(args.out, "eval.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result


def _read_image(path: str, channels: int):
  import numpy as np
  from PIL import Image

  from papers_jax.errors import DataError
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8).reshape(
          image.size[1], image.size[0], channels)
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read image {path}: {e}") from e


def _top_k(paths, logits, top_k: int, names=None) -> list[dict]:
  import jax
  import numpy as np
  probs = np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))
  names = list(names or range(probs.shape[-1]))
  k = min(top_k, probs.shape[-1])
  return [{"input": p, "top": [{"label": str(names[i]), "index": int(i), "probability": float(row[i])}
                               for i in np.argsort(-row)[:k]]} for p, row in zip(paths, probs)]


def predict_with_name(args) -> list[dict]:
  """`predict --model NAME`: the images preprocessed as the registered name says, through its classifier."""
  import jax
  import numpy as np

  from papers_jax import models
  from papers_jax.data import preprocess
  from papers_jax.errors import UserError
  from papers_jax.tasks.classification import normalize_images
  p = models.preprocessing(args.model)
  if p is None:
    raise UserError(f"{args.model} is not an image model; predict --model classifies images")
  if not args.inputs:
    raise UserError("give one or more image files to classify")
  model = models.create(args.model, pretrained=args.checkpoint)
  channels = int(models.model_config(args.model).get("in_chans", 3))
  images = np.stack([preprocess.resize_shorter_then_center_crop(_read_image(path, channels), p.img_size, p.crop_pct,
                                                                p.interpolation) for path in args.inputs])
  logits = jax.jit(lambda x: model(normalize_images(x, p.mean, p.std), train=False))(images)
  if not hasattr(logits, "ndim") or logits.ndim != 2:
    raise UserError(f"{args.model} ({type(model).__name__}) is not a classifier; predict --model needs one")
  return _top_k(args.inputs, logits, args.top_k)


def predict(args) -> list[dict]:
  import jax
  import numpy as np

  from papers_jax.core import loop
  from papers_jax.errors import UserError
  if args.model:
    if args.config:
      raise UserError("give --config (a run's checkpoint) or --model (a registered name's weights), not both")
    return predict_with_name(args)
  if not args.config:
    raise UserError("give --config with a run's --checkpoint, or --model with a weights file")
  trainer, _ = _restored_trainer(args)
  model = _model(trainer)
  config = trainer.config
  if config.task == "classification":
    from papers_jax.tasks.classification import normalize_images
    if not args.inputs:
      raise UserError("give one or more image files to classify")
    task = trainer.task
    channels = int(config.model.get("in_chans", 3))
    fn = loop.preprocess_fn(config, task, train=False)
    images = np.stack([fn({"image": _read_image(p, channels), "label": 0}, None)["image"] for p in args.inputs])
    logits = jax.jit(lambda x: model(normalize_images(x, task.mean, task.std), train=False))(images)
    return _top_k(args.inputs, logits, args.top_k, getattr(trainer.train_source, "classes", None))
  if config.task == "lm" and hasattr(model, "generate"):
    if not args.text:
      raise UserError("give the prompt with --text")
    tokenizer = trainer.task.tokenizer
    out = []
    for prompt in args.text:
      ids = tokenizer.encode(prompt)
      new = model.generate(np.asarray([ids], np.int32), args.max_new_tokens, jax.random.key(args.seed),
                           temperature=args.temperature, top_k=args.sample_top_k)
      out.append({"input": prompt, "output": tokenizer.decode(np.asarray(new[0]).tolist())})
    return out
  raise UserError(f"predict supports image classification and GPT-style generation, not task {config.task!r} "
                  f"with {type(model).__name__}")


def export_model(args) -> str:
  from papers_jax import convert, export, models
  from papers_jax.errors import UserError
  if args.format == "timm" or args.format == "hf":
    if args.config:
      trainer, _ = _restored_trainer(args)
      model = _model(trainer, args.ema)
    elif args.model:
      if args.ema:
        raise UserError("--ema needs --config and a run's --checkpoint (a params checkpoint holds no weight EMA)")
      model = models.create(args.model, pretrained=args.checkpoint)
    else:
      raise UserError("give --config (with a run's --checkpoint) or --model (with a params --checkpoint)")
    convert.save_state_dict(convert.export_state_dict(model, args.format), args.out)
    return f"wrote {args.out} ({args.format} layout)"
  trainer, _ = _restored_trainer(args)
  model = _model(trainer, args.ema)
  d = trainer.config.data
  shape = (None, d.image_size, d.image_size, int(trainer.config.model.get("in_chans", 3)))
  blob = export.stablehlo(model, shape)
  with open(args.out, "wb") as f:
    f.write(blob)
  return f"wrote {args.out}: StableHLO of the inference forward, input (batch, {shape[1]}, {shape[2]}, {shape[3]}) " \
         "float32 images normalised as the config's data.mean/std"


def _parser():
  parser = argparse.ArgumentParser(prog="papers-jax", description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.split("\n")[1:]))
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("train", help="train (python -m papers_jax.main; run `papers-jax train --help`)", add_help=False)

  def with_checkpoint(p, config_required=True):
    p.add_argument("--config", required=config_required, help="the config file[:args] the checkpoint was trained with")
    p.add_argument("--checkpoint", required=True, help="a run's workdir, checkpoints/<step>, or a params checkpoint")
    p.add_argument("--step", type=int, help="the step to restore from a run's workdir (default: the newest)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, as --config.KEY=VALUE when training (JSON for non-strings)")

  p = sub.add_parser("eval", help="evaluate a checkpoint with the task's evaluators")
  with_checkpoint(p)
  p.add_argument("--out", help="directory for eval.json and the task's pictures (default: print only)")
  p = sub.add_parser("predict", help="top-k labels of images, or text generated from a prompt")
  with_checkpoint(p, config_required=False)
  p.add_argument("--model", help="registered model name (with a timm / HF / params --checkpoint, instead of --config)")
  p.add_argument("inputs", nargs="*", help="image files (classification)")
  p.add_argument("--text", action="append", help="a prompt (language models); repeatable")
  p.add_argument("--top-k", type=int, default=5)
  p.add_argument("--max-new-tokens", type=int, default=40)
  p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  p.add_argument("--sample-top-k", type=int, default=0)
  p.add_argument("--seed", type=int, default=0)
  p = sub.add_parser("export", help="a timm/HF-layout safetensors state dict, or serialised StableHLO")
  with_checkpoint(p, config_required=False)
  p.add_argument("--model", help="registered model name (with a params --checkpoint, instead of --config)")
  p.add_argument("--format", required=True, choices=("timm", "hf", "stablehlo"))
  p.add_argument("--ema", action="store_true", help="export the weight EMA of a run trained with config.ema_decay")
  p.add_argument("--out", required=True)
  p = sub.add_parser("list-models", help="registered model names")
  p.add_argument("pattern", nargs="?", default="*")
  return parser


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
    argv = ["train", *argv]  # `papers-jax --config ...` trains, as it always did
  if argv[0] == "train":
    from papers_jax import main as train_main
    sys.argv = [f"{sys.argv[0]} train", *argv[1:]]
    train_main.run()
    return 0
  args = _parser().parse_args(argv)
  from papers_jax.errors import UserError
  try:
    if args.command == "list-models":
      from papers_jax import models
      print("\n".join(models.list_models(args.pattern)))
    elif args.command == "eval":
      print(json.dumps(evaluate(args), indent=2))
    elif args.command == "predict":
      print(json.dumps(predict(args), indent=2))
    else:
      print(export_model(args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def run():
  from papers_jax.core import platform_setup
  platform_setup.setup_entry_point()
  sys.exit(main())


if __name__ == "__main__":
  run()
