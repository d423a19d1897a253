"""The one-hop statements of data/nlvr_scenes.py (`data.templates = "one_hop"`, configs/beit3/nlvr_one_hop.py).
Numpy only: no model is built here (tests/test_beit3.py traces the NLVR task, tests/test_configs.py builds the
config)."""

import numpy as np

from papers_jax.data import nlvr_scenes


def test_one_hop_statements_split_and_labels():
  """Held out by wording: train and test sentences disjoint, each test sentence's meaning trained in its two
  other wordings, all in whole words of the tokenizer; labels are each statement's truth on the scenes; the
  five-template set and the tokenizer's texts are unchanged by the new templates."""
  from papers_jax.tasks.beit3 import _scene_wordpiece
  train, test = (set(nlvr_scenes.split_statements(s, "colours", "wordings", "one_hop")) for s in ("train", "test"))
  assert len(train) == 24 and len(test) == 12 and not train & test
  assert {nlvr_scenes.TEMPLATES[t] for t, _, _ in train | test} == {"left_has", "right_has", "both"}
  for t, s, w in test:
    assert sum((t, s, v) in train for v in range(3)) == 2
  tokenizer = _scene_wordpiece(320)
  for k in train | test:
    words = nlvr_scenes.statement(*k).rstrip(".").split()
    assert [tokenizer.encode(x) for x in words] == [[tokenizer.token_to_id(x)] for x in words], k
  # The five-template set (and so the tokenizer, built on its training sentences) is what it was.
  assert len(nlvr_scenes.split_statements("train")) + len(nlvr_scenes.split_statements("test")) == 95
  assert len(nlvr_scenes.training_statements()) == 76
  source = nlvr_scenes.NLVRScenesSource("test", "colours", "wordings", "one_hop")
  assert len(source) == 1000 and 0.45 < source.label.mean() < 0.55
  counts = nlvr_scenes.scene_counts("test")
  for name, expect in (("left_has", lambda l, r: l > 0), ("right_has", lambda l, r: r > 0),
                       ("both", lambda l, r: (l > 0) & (r > 0))):
    rows = source.template == nlvr_scenes.TEMPLATES.index(name)
    assert rows.sum() > 200
    left, right = counts[source.left[rows], source.subject[rows]], counts[source.right[rows], source.subject[rows]]
    np.testing.assert_array_equal(expect(left, right), source.label[rows].astype(bool))
  assert source[0]["statement"] == nlvr_scenes.statement(int(source.template[0]), int(source.subject[0]),
                                                          int(source.wording[0]))
  assert nlvr_scenes.statement(5, nlvr_scenes.SUBJECTS.index(("red", "object")), 1) == \
      "the image to the left has a red object."
