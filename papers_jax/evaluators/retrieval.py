"""Image↔text retrieval recall@K (the standard Flickr30k / MS-COCO protocol, CLIP §3.1.5 / Table 13), and
ALBEF / BLIP's re-ranking of the contrastive top-k by an image-text matching score.

Every image is a query against all texts (image→text) and every text against all images
(text→image). A query scores a hit at K when a matching item is among its K best; recall@K is the
fraction of hits. Matches are given by ids: an image and a text match when `image_ids[i] == text_ids[j]`
— the image's index for captioned data (COCO: five captions per image, any of them counts for
image→text), or the class for captions made from class names. Ties rank the lower index first.

  recall_at_k(image_features, text_features, image_ids, text_ids)  ranked by cosine similarity (CLIP),
                                            computed in row chunks so that large galleries fit;
  recall_from_scores(scores, image_ids, text_ids, t2i_scores=None)  ranked by any (images × texts) score
                                            matrix, and for text→image by `t2i_scores` (texts × images)
                                            when the two directions were scored apart (re-ranking);
  rerank_with_itm(itc_scores, itm_fn, k)    each image's top-k texts and each text's top-k images by
                                            `itc_scores` re-scored by `itm_fn(text_idx, image_idx) -> scores`
                                            (numpy arrays of pair indices → one score per pair); the other
                                            entries get `fill` (−100, the official ALBEF evaluation's);
                                            returns (i2t (images × texts), t2i (texts × images));
  chance_recall(image_ids, text_ids)        the expected recall@K of a uniformly random ranking.
Every function returns {"i2t_rK": ..., "t2i_rK": ...} (i2t_r1 is image→text recall@1) or the score pair.
"""

import numpy as np

from papers_jax.evaluators.zero_shot import l2_normalize

KS = (1, 5, 10)


def _check_ids(num_images: int, num_texts: int, image_ids, text_ids):
  image_ids, text_ids = np.asarray(image_ids), np.asarray(text_ids)
  if num_images != len(image_ids) or num_texts != len(text_ids):
    raise ValueError("one id per image and one per text are needed")
  return image_ids, text_ids


def _hits_from_rows(score_rows, query_ids, gallery_ids, ks) -> dict[int, int]:
  """Hits at each K of one chunk of queries' score rows (queries × gallery)."""
  kmax = min(max(ks), score_rows.shape[1])
  top = np.argsort(-score_rows, axis=1, kind="stable")[:, :kmax]
  match = gallery_ids[top] == query_ids[:, None]
  return {k: int(np.any(match[:, :k], axis=1).sum()) for k in ks}


def _hits(queries, gallery, query_ids, gallery_ids, ks, chunk: int) -> dict[int, float]:
  hits = {k: 0 for k in ks}
  for start in range(0, len(queries), chunk):
    rows = _hits_from_rows(queries[start:start + chunk] @ gallery.T, query_ids[start:start + chunk], gallery_ids, ks)
    hits = {k: hits[k] + rows[k] for k in ks}
  return {k: hits[k] / len(queries) for k in ks}


def _named(i2t: dict, t2i: dict) -> dict[str, float]:
  return {**{f"i2t_r{k}": v for k, v in i2t.items()}, **{f"t2i_r{k}": v for k, v in t2i.items()}}


def recall_at_k(image_features, text_features, image_ids, text_ids, ks=KS, *,
                chunk: int = 1024) -> dict[str, float]:
  """{"i2t_rK": ..., "t2i_rK": ...}: recall@K for every K in `ks` by cosine similarity."""
  images, texts = l2_normalize(image_features), l2_normalize(text_features)
  image_ids, text_ids = _check_ids(len(images), len(texts), image_ids, text_ids)
  return _named(_hits(images, texts, image_ids, text_ids, ks, chunk),
                _hits(texts, images, text_ids, image_ids, ks, chunk))


def recall_from_scores(scores, image_ids, text_ids, ks=KS, *, t2i_scores=None) -> dict[str, float]:
  """Recall@K both ways from `scores` (images × texts; higher = better); text→image ranks the rows of
  `t2i_scores` (texts × images) when given, else the columns of `scores`."""
  scores = np.asarray(scores, np.float32)
  t2i = scores.T if t2i_scores is None else np.asarray(t2i_scores, np.float32)
  if t2i.shape != scores.shape[::-1]:
    raise ValueError(f"t2i_scores must be (texts, images) = {scores.shape[::-1]}, got {t2i.shape}")
  image_ids, text_ids = _check_ids(*scores.shape, image_ids, text_ids)
  i2t_hits = _hits_from_rows(scores, image_ids, text_ids, ks)
  t2i_hits = _hits_from_rows(t2i, text_ids, image_ids, ks)
  return _named({k: v / len(image_ids) for k, v in i2t_hits.items()},
                {k: v / len(text_ids) for k, v in t2i_hits.items()})


def rerank_with_itm(itc_scores, itm_fn, k: int, *, fill: float = -100.0):
  """(i2t (images × texts), t2i (texts × images)): the top-k of each row of `itc_scores` (and of each
  column, for text→image) get `itm_fn(text_idx, image_idx)`'s scores, the rest `fill`. `itm_fn` is called
  once per direction with all the pairs (numpy int arrays of equal length)."""
  itc_scores = np.asarray(itc_scores, np.float32)
  num_images, num_texts = itc_scores.shape
  k_texts, k_images = min(k, num_texts), min(k, num_images)
  top_texts = np.argsort(-itc_scores, axis=1, kind="stable")[:, :k_texts]      # (images, k)
  top_images = np.argsort(-itc_scores.T, axis=1, kind="stable")[:, :k_images]  # (texts, k)
  i2t = np.full((num_images, num_texts), fill, np.float32)
  t2i = np.full((num_texts, num_images), fill, np.float32)
  image_rows = np.repeat(np.arange(num_images), k_texts)
  i2t[image_rows, top_texts.reshape(-1)] = np.asarray(itm_fn(top_texts.reshape(-1), image_rows), np.float32)
  text_rows = np.repeat(np.arange(num_texts), k_images)
  t2i[text_rows, top_images.reshape(-1)] = np.asarray(itm_fn(text_rows, top_images.reshape(-1)), np.float32)
  return i2t, t2i


def add_itc(i2t, t2i, itc_scores, *, fill: float = -100.0):
  """BLIP's evaluation (the official train_retrieval.py): the re-ranked pairs score ITM + the ITC similarity,
  so ITC still orders candidates where ITM cannot tell them apart; the pairs outside the top k keep `fill`."""
  itc_scores = np.asarray(itc_scores, np.float32)
  return (np.where(i2t != fill, i2t + itc_scores, fill).astype(np.float32),
          np.where(t2i != fill, t2i + itc_scores.T, fill).astype(np.float32))


def chance_recall(image_ids, text_ids, ks=KS) -> dict[str, float]:
  """The expected recall@K of a uniformly random ranking: a query with m matches among n items
  misses them all in its top K with probability C(n − m, K) / C(n, K)."""
  image_ids, text_ids = np.asarray(image_ids), np.asarray(text_ids)

  def expected(query_ids, gallery_ids):
    n, out = len(gallery_ids), {}
    matches = (gallery_ids[None, :] == query_ids[:, None]).sum(1)
    for k in ks:
      miss = np.ones(len(query_ids))
      for j in range(min(k, n)):  # Π_j (n − m − j) / (n − j)
        miss *= np.clip(n - matches - j, 0, None) / (n - j)
      out[k] = float(np.mean(1.0 - miss))
    return out

  return _named(expected(image_ids, text_ids), expected(text_ids, image_ids))
