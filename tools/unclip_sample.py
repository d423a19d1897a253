"""unCLIP's two commands on finished runs of configs/unclip/scenes.py: text to image, and image variations.

  PYTHONPATH=. python tools/unclip_sample.py text2image --prior runs/unclip_prior --decoder runs/unclip_decoder \
      --out runs/unclip_text2image [--num 64] [--caption "from left to right: a red circle and a blue 7."]
  PYTHONPATH=. python tools/unclip_sample.py variations --decoder runs/unclip_decoder --out runs/unclip_variations

text2image: captions (the first caption of the first `--num` test scenes, or `--caption`, repeatable) → the frozen
CLIP's text embedding and token encodings → the prior (the better of `prior_candidates` draws by dot product with
the text embedding) → the decoder (guided by the embedding and the caption) → images, saved as a PNG grid with
the captions in captions.txt. With test-scene captions it measures the CLIP score (100 × cosine of the frozen
CLIP's image and text embeddings; images upsampled ×2 to the CLIP's 64×64) of the generated images against their
captions, next to the real matching images (full size, and pooled to the decoder's 32×32 and back), real images of
other scenes (each caption against the next scene's image) and the decoder on the real image's embedding (the
prior bypassed). Writes metrics.json.

variations: each of the first `--num` test images → its CLIP image embedding → the decoder with `--per_image`
seeds and no caption (guided by the embedding alone), saved as rows [image | variations]; the CLIP score of the
variations against the source image's first caption is measured too.
Both read the weight EMA of each run's last checkpoint (`--weights raw`: the raw weights), and the frozen CLIP the runs
were trained on; `--guidance` overrides the decoder's guidance scale.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_net(run_dir: str, weights: str = "ema"):
  """(task, the stage's network with the weight EMA (or the raw weights) of the run's last checkpoint, the
  checkpoint) of a configs/unclip run."""
  import jax
  import ml_collections
  import numpy as np
  from flax import nnx

  from papers_jax import convert
  from papers_jax.core import config as config_lib
  from papers_jax.tasks.clip import finished_clip_run
  from papers_jax.tasks.unclip import UnCLIPTask, default_config

  with open(os.path.join(run_dir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f)["config"])
  # A run from before a key of `unclip` existed: the key's default (what the run trained with).
  config.unclip = default_config(**config.unclip.to_dict())
  config_lib.resolve_image_preprocessing(config)
  task = UnCLIPTask(config)
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  checkpoint = finished_clip_run(run_dir, "run", kind="unCLIP stage", hint="train it with configs/unclip/scenes.py")
  extra = convert._restore_params_numpy(os.path.abspath(checkpoint), "extra", required=False) or {}
  if weights == "ema" and "ema_params" in extra:
    flat = convert._flatten(extra["ema_params"])
    loaded = convert._map_with_path(lambda path, t: np.asarray(flat[path], t.dtype), nnx.to_pure_dict(params))
  else:
    loaded, _ = convert.init_params_from_checkpoint(checkpoint, nnx.to_pure_dict(params), skip=())
  nnx.replace_by_pure_dict(params, jax.tree.map(np.asarray, loaded))
  return task, nnx.merge(graphdef, params, rest).net, checkpoint


def _scenes(task, n: int):
  from papers_jax.data import captions as captions_lib
  src = captions_lib.image_text_source(task.config.data, task.config.data.eval_split, "")
  n = min(n, len(src))
  return [src[i] for i in range(n)]


def _save_grid(rows, path, caption, cell=64):
  import numpy as np

  from papers_jax.evaluators import reconstruction as vis
  return vis.save_png(vis.grid_image([np.asarray(r, np.float32) / 255.0 for r in rows], cell=cell, caption=caption),
                      path)


def text2image(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from papers_jax.tasks import unclip as lib

  prior_task, prior, prior_ckpt = load_net(args.prior, args.weights)
  dec_task, decoder, dec_ckpt = load_net(args.decoder, args.weights)
  if args.guidance is not None:
    dec_task.u.unlock().decoder_guidance = args.guidance
  if os.path.abspath(prior_task.u.clip_run) != os.path.abspath(dec_task.u.clip_run):
    raise SystemExit(f"the prior ({prior_task.u.clip_run}) and the decoder ({dec_task.u.clip_run}) read "
                     "different CLIPs")
  clip = dec_task.frozen_clip
  scenes = None
  if args.caption:
    captions = list(args.caption)
  else:
    scenes = _scenes(dec_task, args.num)
    captions = [s["texts"][0] for s in scenes]
  tokens = np.asarray(dec_task.tokenizer(captions), np.int32)
  size = int(dec_task.config.data.image_size)
  small = int(dec_task.u.decoder_size)

  @jax.jit
  def generate(prior, decoder, clip, tokens, key):
    text, encodings, mask = lib.text_features(clip, tokens)
    text = lib.l2_normalize(text)
    z = prior_task.sample_prior(prior, text, encodings, mask, jax.random.fold_in(key, 0),
                                guidance=float(prior_task.u.prior_guidance),
                                candidates=int(prior_task.u.prior_candidates))
    images = dec_task.sample_decoder(decoder, z, tokens, dec_task.caption_mask(clip, tokens),
                                     jax.random.fold_in(key, 1), guidance=float(dec_task.u.decoder_guidance))
    return lib.upsample_to_uint8(images, size), z

  @jax.jit
  def decode_real(decoder, clip, images, tokens, key):
    out = dec_task.sample_decoder(decoder, dec_task.image_embedding(clip, images), tokens,
                                  dec_task.caption_mask(clip, tokens), key, guidance=float(dec_task.u.decoder_guidance))
    return lib.upsample_to_uint8(out, size)

  score = jax.jit(lambda clip, x, t: dec_task.clip_score(clip, x, t))
  start = time.time()
  key = jax.random.key(args.seed)
  generated, z = [], []
  for s in range(0, len(tokens), args.batch):
    g, e = generate(prior, decoder, clip, tokens[s:s + args.batch], jax.random.fold_in(key, s))
    generated.append(np.asarray(g))
    z.append(np.asarray(e))
  generated, z = np.concatenate(generated), np.concatenate(z)
  os.makedirs(args.out, exist_ok=True)
  out = {"prior_checkpoint": os.path.abspath(prior_ckpt), "decoder_checkpoint": os.path.abspath(dec_ckpt),
         "clip_run": os.path.abspath(dec_task.u.clip_run) if dec_task.u.clip_run else "(random)",
         "captions": len(captions), "seed": args.seed, "weights": args.weights,
         "decoder_guidance": float(dec_task.u.decoder_guidance),
         "clip_score_generated": float(np.mean(score(clip, jnp.asarray(generated, jnp.float32), tokens)))}
  if scenes is not None:
    real = np.stack([s["image"] for s in scenes]).astype(np.uint8)
    pooled = np.asarray(lib.upsample_to_uint8(lib.downsample(jnp.asarray(real), small), size))
    via_real = np.concatenate([np.asarray(decode_real(decoder, clip, real[s:s + args.batch], tokens[s:s + args.batch],
                                                      jax.random.fold_in(key, 10_000 + s)))
                               for s in range(0, len(real), args.batch)])
    cos = lambda x: float(np.mean(score(clip, jnp.asarray(x, jnp.float32), tokens)))  # noqa: E731
    out.update(clip_score_real=cos(real), clip_score_real_pooled=cos(pooled),
               clip_score_random_real=cos(np.roll(real, 1, axis=0)),
               clip_score_random_real_pooled=cos(np.roll(pooled, 1, axis=0)),
               clip_score_decoder_on_real_embedding=cos(via_real))
    rows = [np.stack([real[i], generated[i], via_real[i]]) for i in range(min(args.grid, len(real)))]
    _save_grid(rows, os.path.join(args.out, "text2image.png"),
               "unCLIP text to image: real scene | prior+decoder from its caption | decoder on the real embedding")
  else:
    rows = [generated[i:i + 1] for i in range(min(args.grid, len(generated)))]
    _save_grid(rows, os.path.join(args.out, "text2image.png"), "unCLIP text to image")
  with open(os.path.join(args.out, "captions.txt"), "w") as f:
    f.write("\n".join(captions[:args.grid]) + "\n")
  out["wall_time_s"] = round(time.time() - start, 1)
  return out


def variations(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from papers_jax.tasks import unclip as lib

  task, decoder, ckpt = load_net(args.decoder, args.weights)
  if args.guidance is not None:
    task.u.unlock().decoder_guidance = args.guidance
  clip = task.frozen_clip
  scenes = _scenes(task, args.num)
  real = np.stack([s["image"] for s in scenes]).astype(np.uint8)
  tokens = np.asarray(task.tokenizer([s["texts"][0] for s in scenes]), np.int32)
  size = int(task.config.data.image_size)

  @jax.jit
  def vary(decoder, clip, images, tokens, key):
    out = task.sample_decoder(decoder, task.image_embedding(clip, images), tokens, jnp.zeros(tokens.shape, bool),
                              key, guidance=float(task.u.decoder_guidance))  # no caption: the embedding alone
    return lib.upsample_to_uint8(out, size)

  score = jax.jit(lambda clip, x, t: task.clip_score(clip, x, t))
  start = time.time()
  samples = np.stack([np.asarray(vary(decoder, clip, real, tokens, jax.random.key(args.seed + k)))
                      for k in range(args.per_image)], axis=1)  # (N, K, S, S, 3)
  os.makedirs(args.out, exist_ok=True)
  _save_grid([np.concatenate([real[i:i + 1], samples[i]]) for i in range(len(real))],
             os.path.join(args.out, "variations.png"), "unCLIP image variations: image | decoder seeds")
  flat = samples.reshape((-1,) + samples.shape[2:]).astype(np.float32)
  return {"decoder_checkpoint": os.path.abspath(ckpt), "weights": args.weights,
          "guidance": float(task.u.decoder_guidance), "images": len(real), "per_image": args.per_image,
          "clip_score_variations": float(np.mean(score(clip, jnp.asarray(flat), np.repeat(tokens, args.per_image, 0)))),
          "clip_score_real": float(np.mean(score(clip, jnp.asarray(real, jnp.float32), tokens))),
          "clip_score_random_real": float(np.mean(score(clip, jnp.asarray(np.roll(real, 1, 0), jnp.float32), tokens))),
          "wall_time_s": round(time.time() - start, 1)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  t2i = sub.add_parser("text2image")
  t2i.add_argument("--prior", required=True)
  t2i.add_argument("--decoder", required=True)
  t2i.add_argument("--caption", action="append", default=[])
  t2i.add_argument("--num", type=int, default=64)
  t2i.add_argument("--grid", type=int, default=16)
  var = sub.add_parser("variations")
  var.add_argument("--decoder", required=True)
  var.add_argument("--num", type=int, default=8)
  var.add_argument("--per_image", type=int, default=4)
  for p in (t2i, var):
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--guidance", type=float, default=None, help="the decoder's guidance scale (default: the run's)")
  args = parser.parse_args(argv)
  out = text2image(args) if args.command == "text2image" else variations(args)
  with open(os.path.join(args.out, "metrics.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  main()
