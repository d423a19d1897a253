"""Pictures from a checkpoint.

  python tools/visualize.py mae --config configs/mae/digits.py:stage=pretrain \
      --checkpoint runs/mae_digits/pretrain/checkpoints/800/state --out recon.png [--mode visible] [--examples 8]

mae: the first `--examples` images of the config's eval split, their masked versions and the
reconstructions (evaluators/reconstruction.py). With norm_pix_loss the default `--mode visible`
de-normalises the predicted patches with the visible patches' statistics; `normalized` shows the
normalised target and prediction; `target` uses each removed patch's own statistics, which leaks
information the model never saw (the picture's caption says so). `--checkpoint` is a run's
`checkpoints/<step>/state` directory or any params checkpoint of the same model.

  python tools/visualize.py vit --config configs/vit/digits.py \
      --checkpoint runs/vit_digits/checkpoints/450/state --out-dir docs/vit_digits

vit: the paper's Fig. 7 for a trained ViT classifier (evaluators/vit_analysis.py), three PNGs in
`--out-dir`: embedding_filters.png (principal components of the patch-embedding filters),
position_similarity.png (cosine similarity of the position embeddings) and attention_distance.png
(mean attention distance of every head against depth, over the first `--examples` images of the
config's eval split, read from the model's named intermediates with `return_attention=True`).

  python tools/visualize.py {cam,gradcam,guided,rollout,attention} --config configs/vit/digits.py \
      --checkpoint runs/vit_digits/checkpoints/450/state --out attention.png [--layer block02/+mlp] [--examples 8]

Saliency overlays of the first `--examples` eval images (evaluators/interpret.py), one row per image:
cam (the class activation map of the predicted class; GAP + linear heads only), gradcam (Grad-CAM at
`--layer`, any named feature of the model's forward_intermediates), guided (guided backprop and guided
Grad-CAM), rollout (ViT attention rollout of the [CLS] token) and attention (the last block's [CLS]
attention per head, as DINO draws it, next to the rollout; also prints the mean attention distance per
layer and head).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from papers_jax.core import config as config_lib  # noqa: E402
from papers_jax.errors import UserError  # noqa: E402


def checkpoint_label(path: str) -> str:
  """'runs/x/checkpoints/800/state' → 'step 800'; any other path → its last component."""
  parts = os.path.normpath(path).split(os.sep)
  if len(parts) >= 2 and parts[-1] == "state" and parts[-2].isdigit():
    return f"step {parts[-2]}"
  return parts[-1]


def mae(args) -> str:
  import jax
  import numpy as np
  from flax import nnx

  from papers_jax import convert, models
  from papers_jax.data.sources import get_source
  from papers_jax.evaluators import reconstruction as vis
  from papers_jax.tasks.classification import normalize_images
  from papers_jax.tasks.mae import MAETask

  config = config_lib.load(args.config)
  if config.task != "mae":
    raise UserError(f"{args.config} is a {config.task!r} config; `visualize.py mae` needs an MAE pre-training config")
  task = MAETask(config)
  abstract = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  template = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(params))
  loaded, _ = convert.init_params_from_checkpoint(args.checkpoint, template, skip=())
  nnx.replace_by_pure_dict(params, loaded)
  model = nnx.merge(graphdef, params, rest)

  split = config.data.eval_split or config.data.train_split
  source = get_source(config.data, split)
  fn = task.preprocess(train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(min(args.examples, len(source)))])
  pred, mask = jax.jit(lambda m, x, k: m(normalize_images(x, task.mean, task.std), rng=k, train=False))(
      model, images, jax.random.key(args.seed))
  ratio = (models.model_config(config.model.name) | dict(config.model)).get("mask_ratio", 0.75)
  picture, caption = vis.render(images, np.asarray(pred), np.asarray(mask), patch_size=model.patch_size,
                                mean=task.mean, std=task.std, norm_pix_loss=bool(config.mae.norm_pix_loss),
                                mode=args.mode,
                                title=f"{checkpoint_label(args.checkpoint)}, mask ratio {ratio}: ")
  vis.save_png(picture, args.out)
  return f"wrote {os.path.abspath(args.out)} ({split} split)\n{caption}"


def load_model(config, checkpoint: str, build_model):
  """The config's model (abstract, then filled) with the params of `checkpoint` and, where it has
  them, its BatchNorm running statistics; in evaluation mode."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from papers_jax import convert

  abstract = nnx.eval_shape(lambda: build_model(nnx.Rngs(params=0)))
  graphdef, params, stats, rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
  template = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(params))
  loaded, _ = convert.init_params_from_checkpoint(checkpoint, template, skip=())
  nnx.replace_by_pure_dict(params, loaded)
  if stats:
    # A BatchNorm model's evaluation needs the running statistics the run kept (loaded by path).
    initial = jax.tree_util.tree_map_with_path(  # BatchNorm's init (mean 0, var 1) where it has none
        lambda path, v: (jnp.ones if "var" in jax.tree_util.keystr(path) else jnp.zeros)(v.shape, v.dtype),
        nnx.to_pure_dict(stats))
    loaded_stats, _ = convert.init_model_state_from_checkpoint(checkpoint, initial)
    nnx.replace_by_pure_dict(stats, loaded_stats)
  model = nnx.merge(graphdef, params, stats, rest)
  model.eval()
  return model


_load_model = load_model


def _mosaic(tiles, cols: int, fill):
  """(n, h, w, c) tiles → one (rows·(h+1) - 1, cols·(w+1) - 1, c) image, a `fill` line between tiles."""
  import numpy as np
  n, h, w, c = tiles.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), fill, np.float64)
  for i, tile in enumerate(tiles):
    r, q = divmod(i, cols)
    out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = tile
  return out


def vit(args) -> str:
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  from papers_jax.core import loop
  from papers_jax.data.sources import get_source
  from papers_jax.evaluators import vit_analysis
  from papers_jax.models.vit import VisionTransformer
  from papers_jax.tasks.classification import ClassificationTask, normalize_images

  config = config_lib.load(args.config)
  if config.task != "classification":
    raise UserError(f"{args.config} is a {config.task!r} config; `visualize.py vit` needs a ViT classification config")
  task = ClassificationTask(config)
  model = _load_model(config, args.checkpoint, task.build_model)
  if not isinstance(model, VisionTransformer) or model.pos_embed is None:
    raise UserError(f"{config.model.name} is not a ViT with learned position embeddings; `visualize.py vit` "
                    "draws the ViT paper's analysis of those")
  os.makedirs(args.out_dir, exist_ok=True)
  name = os.path.basename(args.checkpoint.rstrip("/"))
  if name == "state":
    name = os.path.basename(os.path.dirname(args.checkpoint.rstrip("/")))
  title = f"{config.model.name} ({os.path.basename(args.config)}), step {name}"
  written = []

  def save(fig, filename):
    path = os.path.join(args.out_dir, filename)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append(os.path.abspath(path))

  # Fig. 7 left: principal components of the patch-embedding filters, each scaled to [0, 1].
  kernel = np.asarray(model.patch_embed.proj["kernel"][...])
  components, explained = vit_analysis.filter_principal_components(kernel, num=28)
  lo = components.min(axis=(1, 2, 3), keepdims=True)
  tiles = (components - lo) / np.maximum(components.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
  cols = min(7, len(tiles))
  mosaic = _mosaic(tiles, cols, fill=1.0)
  fig, ax = plt.subplots(figsize=(1.2 * cols, 1.2 * mosaic.shape[0] / mosaic.shape[1] * cols + 0.6))
  ax.imshow(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=1,
            interpolation="nearest")
  ax.axis("off")
  step = tiles.shape[1] + 1
  for i, frac in enumerate(explained):
    ax.text((i % cols) * step + tiles.shape[2] / 2 - 0.5, (i // cols) * step - 0.7, f"{i + 1}: {100 * frac:.0f}%",
            ha="center", fontsize=6)
  ax.set_title(f"Embedding filters: principal components (variance explained)\n{title}", fontsize=8, pad=12)
  save(fig, "embedding_filters.png")

  # Fig. 7 centre: cosine similarity of the position embeddings; tile (i, j) is patch (i, j)'s map.
  grid = model.patch_embed.grid_size
  similarity = vit_analysis.position_similarity(model.pos_embed[...], grid, model.num_prefix_tokens)
  mosaic = _mosaic(similarity.reshape(-1, grid[0], grid[1], 1), grid[1], fill=np.nan)[..., 0]
  fig, ax = plt.subplots(figsize=(4.6, 4.0))
  image = ax.imshow(mosaic, vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
  ax.set_xticks([(grid[1] + 1) * j + grid[1] / 2 - 0.5 for j in range(grid[1])], range(1, grid[1] + 1))
  ax.set_yticks([(grid[0] + 1) * i + grid[0] / 2 - 0.5 for i in range(grid[0])], range(1, grid[0] + 1))
  ax.set_xlabel("input patch column")
  ax.set_ylabel("input patch row")
  ax.tick_params(length=0, labelsize=7)
  for spine in ax.spines.values():
    spine.set_visible(False)
  fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
  ax.set_title(f"Position embedding similarity\n{title}", fontsize=8)
  save(fig, "position_similarity.png")

  # Fig. 7 right: mean attention distance per head against depth.
  split = config.data.eval_split or config.data.train_split
  source = get_source(config.data, split)
  fn = loop.preprocess_fn(config, task, train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(min(args.examples, len(source)))])
  model.eval()
  attention = jax.jit(lambda m, x: {k: v for k, v in m.forward_intermediates(
      normalize_images(x, task.mean, task.std), return_attention=True, train=False).items() if k.endswith("/attn")})
  depth = len(model.blocks)
  distances = np.zeros((depth, model.blocks[0].attn.num_heads))
  for start in range(0, len(images), 128):
    batch = images[start:start + 128]
    out = attention(model, batch)
    for i in range(depth):
      distances[i] += len(batch) * vit_analysis.mean_attention_distance(
          out[f"block{i:02d}/attn"], grid, model.patch_embed.patch_size, model.num_prefix_tokens)
  distances /= len(images)
  fig, ax = plt.subplots(figsize=(4.2, 3.4))
  for head in range(distances.shape[1]):
    ax.scatter(np.arange(1, depth + 1), distances[:, head], s=14, label=f"head {head + 1}")
  pairwise = vit_analysis.patch_distances(grid, model.patch_embed.patch_size)
  ax.axhline(pairwise.mean(), color="gray", linestyle="--", linewidth=0.8)
  ax.text(depth + 0.45, pairwise.mean(), "uniform\nattention", fontsize=6, color="gray", va="center")
  limit = float(pairwise.max())
  ax.set_ylim(0, limit * 1.05)
  ax.set_xlim(0.5, depth + 0.9)
  ax.set_xticks(np.arange(1, depth + 1))
  ax.set_xlabel("network depth (layer)")
  ax.set_ylabel("mean attention distance (pixels)")
  ax.legend(fontsize=6, loc="lower right")
  ax.set_title(f"{title}\n{len(images)} {split} images, {model.patch_embed.img_size[0]}px input; "
               f"y-axis up to the largest patch distance", fontsize=7)
  save(fig, "attention_distance.png")
  table = "\n".join(f"  layer {i + 1}: " + " ".join(f"{d:5.2f}" for d in distances[i]) for i in range(depth))
  return ("wrote " + ", ".join(written) + f"\nmean attention distance (pixels) per head "
          f"(uniform attention: {pairwise.mean():.2f}):\n{table}")


SALIENCY = ("cam", "gradcam", "guided", "rollout", "attention")


def default_layer(model) -> str:
  """Grad-CAM's default layer: the last stage of a hierarchical model; for token models the output of
  the second-to-last block (after the last block only the pooled token reaches a class-token head)."""
  import jax
  import jax.numpy as jnp
  embed = getattr(model, "patch_embed", None) or getattr(model, "stem", None)
  size = getattr(model, "img_size", None) or getattr(embed, "img_size", (32, 32))
  size = (size, size) if isinstance(size, int) else tuple(size)
  chans = getattr(model, "in_chans", None) or getattr(embed, "in_chans", 3)
  keys = list(jax.eval_shape(lambda x: model.forward_intermediates(x, train=False),
                             jax.ShapeDtypeStruct((1, *size, chans), jnp.float32)))
  stages = [k for k in keys if k.startswith("stage")]
  if stages:
    return stages[-1]
  blocks = [k for k in keys if k.startswith("block") and k.endswith(("/+mlp", "/+channel"))]
  if not blocks:
    raise UserError(f"{type(model).__name__} has no stage or block features; pass --layer")
  return blocks[-2] if len(blocks) > 1 and blocks[-1].endswith("/+mlp") else blocks[-1]


def saliency(args) -> str:
  """cam / gradcam / guided / rollout / attention: maps of the first --examples eval images, as PNG overlays."""
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  from papers_jax.core import loop
  from papers_jax.data.sources import get_source
  from papers_jax.evaluators import interpret
  from papers_jax.tasks.classification import ClassificationTask, normalize_images

  config = config_lib.load(args.config)
  if config.task != "classification":
    raise UserError(f"{args.config} is a {config.task!r} config; `visualize.py {args.kind}` needs a classifier's")
  task = ClassificationTask(config)
  model = load_model(config, args.checkpoint, task.build_model)
  split = config.data.eval_split or config.data.train_split
  source = get_source(config.data, split)
  fn = loop.preprocess_fn(config, task, train=False)
  n = min(args.examples, len(source))
  raw = np.stack([fn(dict(source[i]), None)["image"] for i in range(n)])
  labels = [int(source[i]["label"]) for i in range(n)]
  x = normalize_images(raw, task.mean, task.std)
  size = x.shape[1:3]
  shown = raw / 255.0 if raw.dtype.kind == "u" else raw
  shown = shown[..., 0] if shown.shape[-1] == 1 else shown
  note = ""
  logits = np.asarray(jax.jit(lambda m, x: m(x, train=False))(model, x))
  predicted = logits.argmax(-1)
  if args.kind == "cam":
    maps, _, _ = interpret.class_activation_map(model, x)
    panels = [("CAM", np.asarray(interpret.upsample(maps, size)))]
  elif args.kind == "gradcam":
    layer = args.layer or default_layer(model)
    maps, _ = jax.jit(lambda m, x: interpret.grad_cam(m, x, layer))(model, x)
    panels = [(f"Grad-CAM {layer}", np.asarray(interpret.upsample(maps, size)))]
  elif args.kind == "guided":
    layer = args.layer or default_layer(model)
    guided, _ = jax.jit(lambda m, x: interpret.guided_backprop(m, x))(model, x)
    both, _ = jax.jit(lambda m, x: interpret.guided_grad_cam(m, x, layer))(model, x)
    panels = [("guided backprop", np.abs(np.asarray(guided)).sum(-1)),
              (f"guided Grad-CAM {layer}", np.abs(np.asarray(both)).sum(-1))]
  elif args.kind == "rollout":
    rollout = jax.jit(lambda m, x: interpret.cls_maps(m, interpret.attention_rollout(interpret.attention_maps(m, x))))
    panels = [("attention rollout", np.asarray(interpret.upsample(rollout(model, x), size)))]
  else:  # attention: the last block's [CLS] attention, per head, and the mean attention distance
    attn = jax.jit(lambda m, x: interpret.attention_maps(m, x))(model, x)
    last = np.asarray(interpret.cls_maps(model, attn[-1]))  # (n, heads, gh, gw)
    rollout = interpret.cls_maps(model, interpret.attention_rollout(attn))
    panels = [("rollout", np.asarray(interpret.upsample(rollout, size)))] + [
        (f"last layer, head {h + 1}", np.asarray(interpret.upsample(last[:, h], size))) for h in range(last.shape[1])]
    grid, patch = model.patch_embed.grid_size, model.patch_embed.patch_size
    distances = [interpret.mean_attention_distance(a, grid, patch, model.num_prefix_tokens) for a in attn]
    note = "mean attention distance (pixels) per layer and head:\n" + "\n".join(
        f"  layer {i + 1}: " + " ".join(f"{d:5.2f}" for d in row) for i, row in enumerate(distances))
  cols = 1 + len(panels)
  fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.35 * n), squeeze=False)
  for i in range(n):
    axes[i, 0].imshow(shown[i], cmap="gray" if shown.ndim == 3 else None)
    axes[i, 0].set_title(f"label {labels[i]}, pred {predicted[i]}", fontsize=5)
    for j, (name, maps) in enumerate(panels):
      ax = axes[i, j + 1]
      if args.kind == "guided":
        ax.imshow(maps[i] / max(float(maps[i].max()), 1e-12), cmap="gray")
      else:
        ax.imshow(shown[i], cmap="gray" if shown.ndim == 3 else None)
        ax.imshow(maps[i], cmap="jet", alpha=0.5)
      if i == 0:
        ax.set_title(name, fontsize=5)
  for ax in axes.ravel():
    ax.axis("off")
  fig.suptitle(f"{config.model.name} ({os.path.basename(args.config)}), {checkpoint_label(args.checkpoint)}, "
               f"{split} split", fontsize=6)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=130, bbox_inches="tight")
  plt.close(fig)
  return f"wrote {os.path.abspath(args.out)}" + (f"\n{note}" if note else "")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("kind", choices=("mae", "vit") + SALIENCY)
  parser.add_argument("--config", required=True, help="config file[:args] the checkpoint was trained with")
  parser.add_argument("--checkpoint", required=True, help="a run's checkpoints/<step>/state or a params checkpoint")
  parser.add_argument("--out", default=None, help="mae (default reconstructions.png), cam, gradcam, guided, "
                      "rollout, attention (default <kind>.png): the PNG to write")
  parser.add_argument("--layer", default=None, help="gradcam / guided: the named feature (default: the last stage, "
                      "or a token model's second-to-last block output)")
  parser.add_argument("--out-dir", default="vit_analysis", help="vit: the folder for its three PNGs")
  parser.add_argument("--mode", default="visible", choices=("visible", "normalized", "target"))
  parser.add_argument("--examples", type=int, default=None, help="images to use (mae: 8, vit: 360)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the masks")
  args = parser.parse_args(argv)
  try:
    if args.examples is None:
      args.examples = 360 if args.kind == "vit" else 8
    if args.out is None:
      args.out = "reconstructions.png" if args.kind == "mae" else f"{args.kind}.png"
    print(mae(args) if args.kind == "mae" else vit(args) if args.kind == "vit" else saliency(args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
