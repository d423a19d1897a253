"""Image↔text retrieval recall@K (the standard Flickr30k / MS-COCO protocol, CLIP §3.1.5 / Table 13).

Every image is a query against all texts (image→text) and every text against all images
(text→image), ranked by cosine similarity. A query scores a hit at K when a matching item is among
its K best; recall@K is the fraction of hits. Matches are given by ids: an image and a text match
when `image_ids[i] == text_ids[j]` — the image's index for captioned data (COCO: five captions per
image, any of them counts for image→text), or the class for captions made from class names.
Ties rank the lower index first. Similarities are computed in row chunks, so large galleries fit.
"""

import numpy as np

from papers_jax.evaluators.zero_shot import l2_normalize


def _hits(queries, gallery, query_ids, gallery_ids, ks, chunk: int) -> dict[int, float]:
  kmax = min(max(ks), len(gallery))
  hits = {k: 0 for k in ks}
  for start in range(0, len(queries), chunk):
    sims = queries[start:start + chunk] @ gallery.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :kmax]
    match = gallery_ids[top] == query_ids[start:start + chunk, None]
    for k in ks:
      hits[k] += int(np.any(match[:, :k], axis=1).sum())
  return {k: hits[k] / len(queries) for k in ks}


def recall_at_k(image_features, text_features, image_ids, text_ids, ks=(1, 5, 10), *,
                chunk: int = 1024) -> dict[str, float]:
  """{"i2t_rK": ..., "t2i_rK": ...}: recall@K for every K in `ks` (i2t_r1 is image→text recall@1)."""
  images, texts = l2_normalize(image_features), l2_normalize(text_features)
  image_ids, text_ids = np.asarray(image_ids), np.asarray(text_ids)
  if len(images) != len(image_ids) or len(texts) != len(text_ids):
    raise ValueError("one id per image and one per text are needed")
  i2t = _hits(images, texts, image_ids, text_ids, ks, chunk)
  t2i = _hits(texts, images, text_ids, image_ids, ks, chunk)
  return {**{f"i2t_r{k}": v for k, v in i2t.items()}, **{f"t2i_r{k}": v for k, v in t2i.items()}}
