"""Image-text matching on the generated scenes (issue 29): which captions describe a scene
(`vqa_scenes.caption_holds`), ALBEF's hard negatives never drawing a caption equal to the positive's, and
re-ranking by ITM + ITC (BLIP's evaluation) falling back on ITC (docs/vision_language.md, "Why ITM did not
learn")."""

import jax
import jax.numpy as jnp
import numpy as np

from papers_jax.data import vqa_scenes
from papers_jax.objectives import albef as objective


def test_caption_holds_on_a_hand_built_scene_and_on_the_generated_ones():
  objects = [dict(kind="circle", colour="red", cx=10.0, cy=30.0), dict(kind="7", colour="blue", cx=40.0, cy=33.0)]
  holds = {
      "from left to right: a red circle and a blue 7.": True,
      "from left to right: a blue 7 and a red circle.": False,
      "from top to bottom: a red circle and a blue 7.": True,
      "there are one shape and one digit.": True,
      "there are two shapes and no digits.": False,
      "a red circle is left of a blue 7.": True,
      "a blue 7 is right of a red circle.": True,
      "a blue 7 is left of a red circle.": False,
      "a red circle is above a blue 7.": False,  # 3 px apart vertically: below MARGIN
      "a green circle is left of a blue 7.": False,
  }
  assert {c: vqa_scenes.caption_holds(objects, c) for c in holds} == holds
  scenes = vqa_scenes.scenes("train")[:300]
  assert all(vqa_scenes.caption_holds(s["objects"], c) for s in scenes for c in s["captions"])
  # A count caption fits every scene with the same counts, which is why another scene's caption can match.
  counts = [s["captions"][2] for s in scenes]
  for s, own in zip(scenes[:20], counts):
    assert [vqa_scenes.caption_holds(s["objects"], c) for c in counts] == [c == own for c in counts]


def test_hard_negatives_never_draw_an_equal_caption():
  """Texts 0 and 1 are equal and most similar to each other's images; 2 and 3 differ. Row 0 must draw 2 or 3;
  with every caption equal, each example falls back to the next one."""
  b = 4
  sim = jnp.zeros((b, b)).at[0, 1].set(10.0).at[1, 0].set(10.0)
  same = jnp.eye(b, dtype=bool).at[0, 1].set(True).at[1, 0].set(True)
  keys = jax.random.split(jax.random.key(0), 200)
  neg_text, neg_image = jax.vmap(lambda k: objective.sample_hard_negatives(k, sim, sim.T, same))(keys)
  for drawn in (neg_text, neg_image):
    drawn = np.asarray(drawn)
    assert not np.any(drawn[:, 0] == 1) and not np.any(drawn[:, 1] == 0)
    assert not np.any(drawn == np.arange(b))
  all_same = jnp.ones((b, b), bool)
  neg_text, neg_image = objective.sample_hard_negatives(jax.random.key(1), sim, sim.T, all_same)
  np.testing.assert_array_equal(neg_text, (np.arange(b) + 1) % b)
  np.testing.assert_array_equal(neg_image, (np.arange(b) + 1) % b)


def test_itm_plus_itc_reranking_falls_back_on_itc():
  """BLIP's evaluation adds the ITC similarity to the re-ranked ITM scores: with an ITM that cannot tell the
  candidates apart (a constant), the ranking is ITC's; with an informative ITM, ITM's order wins."""
  from papers_jax.evaluators import retrieval
  rng = np.random.default_rng(0)
  itc = rng.uniform(-1, 1, (6, 9)).astype(np.float32)
  image_ids, text_ids = np.arange(6), np.arange(9) % 6
  i2t, t2i = retrieval.rerank_with_itm(itc, lambda t, i: np.zeros(len(t)), k=4)
  i2t, t2i = retrieval.add_itc(i2t, t2i, itc)
  ks = (1, 2, 4)  # within the re-ranked top 4
  assert retrieval.recall_from_scores(i2t, image_ids, text_ids, ks, t2i_scores=t2i) == \
      retrieval.recall_from_scores(itc, image_ids, text_ids, ks)
  oracle = lambda t, i: 10.0 * (text_ids[t] == image_ids[i])
  i2t, t2i = retrieval.add_itc(*retrieval.rerank_with_itm(itc, oracle, k=9), itc)
  assert all(v == 1.0 for v in retrieval.recall_from_scores(i2t, image_ids, text_ids, t2i_scores=t2i).values())
