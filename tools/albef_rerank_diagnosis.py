"""Why ALBEF's ITM re-ranking helps image→text and hurts text→image on the scenes (docs/vision_language.md).

  PYTHONPATH=. python tools/albef_rerank_diagnosis.py --checkpoint runs/albef_pretrain/checkpoints/700/state

On the retrieval set of the task's evaluation (the first `albef.retrieval_images` test scenes and all of their
captions) it scores every (caption, image) pair with ITM, not only the ITC top k, and prints:
  1. R@1 both ways by ITC, by ITM over all pairs, and by the ITC top k re-ranked by ITM for several k;
  2. the two-way split of the ITM match logit grid into caption effect a(t), image effect b(i) and
     interaction c(t, i), as tools/albef_itm_overfit.py; and R@1 re-ranked by ITM less the main effect that
     the direction's ranking keeps (text→image: s − b(i); image→text: s − a(t));
  3. hubness: how many distinct images are some caption's top 1, and the share of captions that go to the 5
     most frequent ones, by ITC and by the re-ranking;
  4. what the main effects follow: the correlation of b(i) with how many captions have image i in their ITC
     top k (how often it is drawn as a hard negative in training), and of a(t) with how many images have t in
     theirs;
  5. within each query's ITC top k, how often a true item is ranked above a false one (an AUC) by ITC and by ITM;
  6. R@1 where a text→image hit is any image the caption holds for (`vqa_scenes.caption_holds`), not only
     its own scene, and per caption template.
The score is the official one: the ITM head's match logit.
"""

import argparse
import collections
import json

import jax
import numpy as np
from flax import nnx

from papers_jax.convert import init_params_from_checkpoint
from papers_jax.core.config import load
from papers_jax.data import vqa_scenes
from papers_jax.evaluators import retrieval
from papers_jax.tasks.albef import ALBEFTask
from papers_jax.tasks.classification import normalize_images


def main_effects(s):
  """(caption effect a (T,), image effect b (I,), interaction c (T, I), shares) of a (T, I) grid."""
  mean = s.mean()
  a, b = s.mean(1) - mean, s.mean(0) - mean
  c = s - mean - a[:, None] - b[None, :]
  total = ((s - mean) ** 2).sum()
  shares = (s.shape[1] * (a ** 2).sum() / total, s.shape[0] * (b ** 2).sum() / total, (c ** 2).sum() / total)
  return a, b, c, shares


def r1(i2t, t2i, image_ids, text_ids):
  out = retrieval.recall_from_scores(i2t, image_ids, text_ids, ks=(1, 5), t2i_scores=t2i)
  return {k: round(100 * v, 1) for k, v in out.items()}


def topk_auc(scores, candidates, truth):
  """Mean over queries with both a true and a false candidate of P(score(true) > score(false)) within the
  candidates; scores (Q, N), candidates (Q, k) indices, truth (Q, N) bool."""
  aucs = []
  for q in range(len(scores)):
    cand = candidates[q]
    pos, neg = scores[q, cand][truth[q, cand]], scores[q, cand][~truth[q, cand]]
    if len(pos) and len(neg):
      aucs.append(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))
  return round(100 * float(np.mean(aucs)), 1), len(aucs)


def hubness(t2i):
  top = np.argmax(t2i, axis=1)
  counts = np.bincount(top, minlength=t2i.shape[1])
  return {"distinct_top1_images": int((counts > 0).sum()),
          "top5_images_share_%": round(100 * np.sort(counts)[::-1][:5].sum() / len(top), 1),
          "max_captions_on_one_image": int(counts.max())}


def template(text: str) -> str:
  if text.startswith("from left"):
    return "left-to-right listing"
  if text.startswith("from top"):
    return "top-to-bottom listing"
  if text.startswith("there are"):
    return "count"
  return "relation"


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default="", help="a scenes_pretrain / scenes_retrieval run's state ('': random)")
  parser.add_argument("--config", default="configs/albef/scenes_pretrain.py")
  parser.add_argument("--ks", default="1,2,4,8,16,32,64", help="re-ranking depths")
  parser.add_argument("--k", type=int, default=16, help="the depth of sections 2-5 (the config's rerank_k)")
  parser.add_argument("--out", default="", help="also write the numbers here (JSON)")
  args = parser.parse_args()

  config = load(args.config)
  task = ALBEFTask(config)
  model = task.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if args.checkpoint:
    loaded, _ = init_params_from_checkpoint(args.checkpoint, nnx.to_pure_dict(params), skip=())
    nnx.replace_by_pure_dict(params, loaded)
  source = task.source(config.data.eval_split)
  images, texts, image_ids, text_ids = task.retrieval_set(source)
  ids, mask = task.encode_texts(texts)
  num_texts, num_images = len(texts), len(images)

  @jax.jit
  def encode(params, images, ids, mask):
    m = nnx.merge(graphdef, params, rest)
    return m.encode_image(normalize_images(images, task.mean, task.std)), m.encode_text(ids, mask)

  @jax.jit
  def itm_column(params, text_embeds, mask, image_embeds):  # every caption with one image
    m = nnx.merge(graphdef, params, rest)
    image = jax.numpy.broadcast_to(image_embeds[None], (len(text_embeds),) + image_embeds.shape)
    return m.itm_logits(m.fuse(text_embeds, mask, image), mask)[:, 1]

  (image_embeds, image_feat), (text_embeds, text_feat) = encode(params, images, ids, mask)
  itc = np.asarray(image_feat @ text_feat.T, np.float64)  # (I, T)
  itm = np.stack([np.asarray(itm_column(params, text_embeds, mask, image_embeds[i])) for i in range(num_images)],
                 axis=1).astype(np.float64)  # (T, I)
  out = {"images": num_images, "texts": num_texts, "checkpoint": args.checkpoint}

  # 1. R@1 by depth.
  def rerank(k, score=itm):
    return retrieval.rerank_with_itm(itc, lambda t, i: score[t, i], k)

  out["itc"] = r1(itc, itc.T, image_ids, text_ids)
  out["itm_all_pairs"] = r1(itm.T, itm, image_ids, text_ids)
  out["rerank_by_k"] = {k: r1(*rerank(k), image_ids, text_ids) for k in map(int, args.ks.split(","))}

  # 2. Main effects.
  a, b, c, shares = main_effects(itm)
  out["itm_shares_%"] = dict(zip(("caption", "image", "interaction"), (round(100 * x, 1) for x in shares)))
  i2t_k, _ = rerank(args.k, itm - a[:, None])
  _, t2i_k = rerank(args.k, itm - b[None, :])
  out[f"rerank_k{args.k}_less_main_effect"] = r1(i2t_k, t2i_k, image_ids, text_ids)
  i2t_c, t2i_c = rerank(args.k, c)
  out[f"rerank_k{args.k}_interaction_only"] = r1(i2t_c, t2i_c, image_ids, text_ids)

  # 3. Hubness of text→image top 1.
  i2t, t2i = rerank(args.k)
  out["hubness_itc"], out["hubness_rerank"] = hubness(itc.T), hubness(t2i)
  out["hubness_rerank_less_image_effect"] = hubness(t2i_k)

  # 4. What the main effects follow: the hard-negative draw's favourites.
  top_images = np.argsort(-itc.T, axis=1, kind="stable")[:, :args.k]   # (T, k)
  top_texts = np.argsort(-itc, axis=1, kind="stable")[:, :args.k]      # (I, k)
  image_in_topk = np.bincount(top_images.ravel(), minlength=num_images)
  text_in_topk = np.bincount(top_texts.ravel(), minlength=num_texts)
  out["corr_image_effect_vs_times_in_captions_topk"] = round(float(np.corrcoef(b, image_in_topk)[0, 1]), 3)
  out["corr_caption_effect_vs_times_in_images_topk"] = round(float(np.corrcoef(a, text_in_topk)[0, 1]), 3)
  out["corr_caption_effect_vs_caption_length"] = round(float(np.corrcoef(a, mask.sum(1))[0, 1]), 3)
  out["caption_effect_by_template"] = {}
  templates = np.asarray([template(t) for t in texts])
  for name in sorted(set(templates)):
    out["caption_effect_by_template"][name] = (round(float(a[templates == name].mean()), 3),
                                               int((templates == name).sum()))

  # 5. AUC within the ITC top k.
  truth = text_ids[:, None] == image_ids[None, :]  # (T, I)
  out[f"auc_in_itc_top{args.k}"] = {
      "t2i_itc": topk_auc(itc.T, top_images, truth), "t2i_itm": topk_auc(itm, top_images, truth),
      "t2i_itm_less_image_effect": topk_auc(itm - b[None, :], top_images, truth),
      "i2t_itc": topk_auc(itc, top_texts, truth.T), "i2t_itm": topk_auc(itm.T, top_texts, truth.T),
      "i2t_itm_less_caption_effect": topk_auc((itm - a[:, None]).T, top_texts, truth.T)}

  # 6. Text→image R@1 by caption template, own scene and any scene the caption holds for.
  scenes = source.scenes
  holds = np.asarray([[vqa_scenes.caption_holds(scenes[int(image_ids[i])]["objects"], t) for i in range(num_images)]
                      for t in texts])
  holds |= text_ids[:, None] == image_ids[None, :]  # the own scene counts (a merged fallback caption too)
  out["captions_holding_for_several_images_%"] = round(100 * float(np.mean(holds.sum(1) > 1)), 1)
  per_template = collections.defaultdict(dict)
  for name, scores in (("itc", itc.T), ("rerank", t2i), ("rerank_less_image_effect", t2i_k)):
    top = np.argmax(scores, axis=1)
    own, valid = top == text_ids, holds[np.arange(num_texts), top]
    per_template["all"][name] = (round(100 * own.mean(), 1), round(100 * valid.mean(), 1))
    for t in sorted(set(templates)):
      sel = templates == t
      per_template[t][name] = (round(100 * own[sel].mean(), 1), round(100 * valid[sel].mean(), 1))
  out["t2i_r1_own_scene_and_any_valid_by_template"] = dict(per_template)
  print(json.dumps(out, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
