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


def _load_model(config, checkpoint: str, build_model):
  """The config's model (abstract, then filled) with the params of `checkpoint`."""
  import jax
  from flax import nnx

  from papers_jax import convert

  abstract = nnx.eval_shape(lambda: build_model(nnx.Rngs(params=0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  template = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), nnx.to_pure_dict(params))
  loaded, _ = convert.init_params_from_checkpoint(checkpoint, template, skip=())
  nnx.replace_by_pure_dict(params, loaded)
  return nnx.merge(graphdef, params, rest)


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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("kind", choices=("mae", "vit"))
  parser.add_argument("--config", required=True, help="config file[:args] the checkpoint was trained with")
  parser.add_argument("--checkpoint", required=True, help="a run's checkpoints/<step>/state or a params checkpoint")
  parser.add_argument("--out", default="reconstructions.png", help="mae: the PNG to write")
  parser.add_argument("--out-dir", default="vit_analysis", help="vit: the folder for its three PNGs")
  parser.add_argument("--mode", default="visible", choices=("visible", "normalized", "target"))
  parser.add_argument("--examples", type=int, default=None, help="images to use (mae: 8, vit: 360)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the masks")
  args = parser.parse_args(argv)
  try:
    if args.examples is None:
      args.examples = 8 if args.kind == "mae" else 360
    print(mae(args) if args.kind == "mae" else vit(args))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
