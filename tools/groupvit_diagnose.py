"""Does a GroupViT run on the scenes segment? Which part fails: the groups, their labels, or the threshold?

  PYTHONPATH=. python tools/groupvit_diagnose.py --run runs/groupvit_scenes [--step 800] [--scenes 200]
  PYTHONPATH=. python tools/groupvit_diagnose.py --run runs/groupvit_1stage --config configs/groupvit/scenes.py:stages=1

Loads the run's checkpoint (params and BatchNorm statistics) with configs/groupvit/scenes.py and, on the first
`--scenes` test scenes (colour labels: background + 4 colours), prints the colour mIoU of:
  - the task's rule (soft grouping, the threshold chosen on training scenes), as eval/seg_colour_miou;
  - hard grouping: each pixel takes its most likely final segment (the assignments' argmax through the stages);
  - the grouping with oracle labels: each pixel's hard segment (final, and of the first grouping block)
    labelled with that segment's majority true colour (background included) in its own scene: how far the
    groups follow the objects (the bound for 8×8-patch labels is about 0.5);
  - image swap: each scene's prediction scored against the next scene's labels (a model that ignores the image
    scores the same as on its own scene);
where the rules' errors are (background called an object, objects called background or the wrong colour),
how often a pixel falls in the segment that it takes in most scenes (grouping by position), and, per scene,
whether the segments' best colour similarities say which colours the scene holds (AUROC).
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def auroc(scores, labels) -> float:
  order = np.argsort(scores)
  ranks = np.empty(len(scores))
  ranks[order] = np.arange(1, len(scores) + 1)
  pos = labels.astype(bool)
  return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--run", required=True)
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--scenes", type=int, default=200)
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "groupvit", "scenes.py"),
                      help="the run's config, with its arguments (configs/groupvit/scenes.py:stages=1)")
  args = parser.parse_args()
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from papers_jax.convert import init_model_state_from_checkpoint, init_params_from_checkpoint
  from papers_jax.core import config as config_lib
  from papers_jax.core.state import merge_model
  from papers_jax.data import vqa_scenes
  from papers_jax.tasks import get_task
  from papers_jax.tasks.classification import normalize_images
  from papers_jax.tasks.groupvit import miou, threshold_predictions

  ckpt_dir = os.path.join(args.run, "checkpoints")
  step = args.step or max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  path = os.path.join(ckpt_dir, str(step), "state")
  task = get_task(config_lib.load(args.config))
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  params, _ = init_params_from_checkpoint(path, nnx.to_pure_dict(params), skip=())
  rest, _ = init_model_state_from_checkpoint(path, nnx.to_pure_dict(rest))
  model = merge_model(graphdef, params, rest)
  encode_text = jax.jit(lambda t: model.encode_text(t, train=False))
  colour_rows, kind_rows = task.class_features(encode_text)
  rows = np.concatenate([colour_rows, kind_rows])
  nc = len(colour_rows)

  @jax.jit
  def forward(images):
    x = normalize_images(images, task.mean, task.std)
    tokens, assignments = model.forward_groups(x, train=False)
    b, g, d = tokens.shape
    seg = model.visual_projection(tokens.reshape(b * g, d)).reshape(b, g, -1)
    seg = seg / jnp.linalg.norm(seg, axis=-1, keepdims=True)
    text = jnp.asarray(rows) / jnp.linalg.norm(rows, axis=-1, keepdims=True)
    soft = model.pixel_grouping(assignments, *images.shape[1:3])
    hard = [jax.nn.one_hot(a.argmax(1), a.shape[1], axis=1) for a in assignments]
    first = model.pixel_grouping(hard[:1], *images.shape[1:3]).argmax(-1)  # the first grouping block's segments
    hard = model.pixel_grouping(hard, *images.shape[1:3]).argmax(-1)  # (B, H, W) final segment index
    return seg @ text.T, soft, hard, first

  def run(images):
    outs = [forward(images[s:s + 50]) for s in range(0, len(images), 50)]
    return [np.concatenate([np.asarray(o[i]) for o in outs]) for i in range(4)]

  images_tr, colours_tr, _ = vqa_scenes.semantic_labels("train", int(task.gv.calibration_scenes))
  seg_tr, soft_tr, hard_tr, _ = run(images_tr)
  images, colours, kinds = vqa_scenes.semantic_labels("test", args.scenes)
  seg, soft, hard, first = run(images)

  def best_threshold(sims):
    candidates = np.quantile(sims.max(-1), np.linspace(0.0, 0.99, 100))
    return candidates[int(np.argmax([miou(threshold_predictions(sims, c), colours_tr, nc + 1)
                                      for c in candidates]))]

  soft_sims = lambda s, g: np.einsum("bhwg,bgk->bhwk", g, s[..., :nc])  # noqa: E731
  hard_sims = lambda s, h: np.take_along_axis(s[..., :nc], h.reshape(len(h), -1, 1), 1).reshape(  # noqa: E731
      h.shape + (nc,))
  t_soft = best_threshold(soft_sims(seg_tr, soft_tr))
  t_hard = best_threshold(hard_sims(seg_tr, hard_tr))
  pred_soft = threshold_predictions(soft_sims(seg, soft), t_soft)
  pred_hard = threshold_predictions(hard_sims(seg, hard), t_hard)
  def oracle_labels(segments):
    out = np.zeros_like(colours)
    for i in range(len(images)):
      for g in np.unique(segments[i]):
        where = segments[i] == g
        out[i][where] = np.bincount(colours[i][where], minlength=nc + 1).argmax()
    return out
  bright = images.max(-1) > 100
  majority = 1 + int(np.argmax(np.bincount(colours_tr[colours_tr > 0] - 1, minlength=nc)))
  print(f"step {step}, {len(images)} test scenes, colour mIoU (background + {nc} colours):")
  for name, pred in (("all background", np.zeros_like(colours)), ("bright pixels as the majority colour",
                                                                   np.where(bright, majority, 0)),
                     (f"soft grouping, threshold {t_soft:.3f} (the task's rule)", pred_soft),
                     (f"hard grouping, threshold {t_hard:.3f}", pred_hard),
                     ("hard grouping, oracle segment labels", oracle_labels(hard)),
                     ("first grouping block's segments, oracle labels", oracle_labels(first)),
                     ("bright pixels, oracle colour", np.where(bright, colours, 0))):
    print(f"  {name:55s} {miou(pred, colours, nc + 1):.3f}")
  print(f"  {'image swap: soft rule against the next scene':55s} "
        f"{miou(pred_soft, np.roll(colours, 1, axis=0), nc + 1):.3f}")
  print(f"  {'image swap: hard rule against the next scene':55s} "
        f"{miou(pred_hard, np.roll(colours, 1, axis=0), nc + 1):.3f}")
  fg = colours > 0
  for name, pred in (("soft rule", pred_soft), ("hard rule", pred_hard)):
    print(f"{name}: background pixels given a colour {np.mean(pred[~fg] > 0):.3f}; object pixels called background "
          f"{np.mean(pred[fg] == 0):.3f}, given a wrong colour {np.mean((pred[fg] > 0) & (pred[fg] != colours[fg])):.3f}")
  used = np.array([len(np.unique(h)) for h in hard])
  print(f"segments used per scene (hard): mean {used.mean():.2f} of {seg.shape[1]}; objects per scene "
        f"{np.mean([len(np.unique(k)) - 1 for k in kinds]):.2f}")
  mode = np.apply_along_axis(lambda v: np.bincount(v).argmax(), 0, hard.reshape(len(hard), -1))
  same = np.mean(hard.reshape(len(hard), -1) == mode)
  print(f"pixels in the segment that the same pixel takes in most scenes: {same:.3f} (1.0: by position alone)")
  purity = [np.mean([np.bincount(fg[i][hard[i] == g]).max() / (hard[i] == g).sum() for g in np.unique(hard[i])])
            for i in range(len(images))]
  print(f"object/background purity of the hard segments: {np.mean(purity):.3f} (all one segment: "
        f"{np.mean([max(f.mean(), 1 - f.mean()) for f in fg]):.3f})")
  present = np.array([[np.any(c == k + 1) for k in range(nc)] for c in colours])
  best = seg[..., :nc].max(1)
  print("per colour, AUROC of the best segment similarity for 'the scene holds this colour':",
        " ".join(f"{c} {auroc(best[:, k], present[:, k]):.3f}" for k, c in enumerate(vqa_scenes.COLOURS)))
  print("per colour, AUROC of the segments' mean similarity:",
        " ".join(f"{c} {auroc(seg[..., k].mean(1), present[:, k]):.3f}" for k, c in enumerate(vqa_scenes.COLOURS)))


if __name__ == "__main__":
  main()
