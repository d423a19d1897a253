"""The generated VQA scenes (data/vqa_scenes.py): fixed and deterministic, test scenes and captions unseen
in training, answers that follow from the layout, images that show it, and the image-free baselines."""

import numpy as np
import pytest

from papers_jax.data import tokenizers
from papers_jax.data import vqa_scenes as vs


@pytest.fixture(scope="module")
def splits():
  return vs.scenes("train"), vs.scenes("test")


def test_sizes_and_a_fixed_answer_vocabulary(splits):
  train, test = splits
  assert (len(train), len(test)) == (vs.SPLITS["train"], vs.SPLITS["test"])
  for scene in train[:500] + test:
    assert 2 <= len(scene["objects"]) <= 4 and scene["captions"]
    assert all(a in vs.ANSWERS and t in vs.QUESTION_TYPES for _, a, t in scene["questions"])
  assert len(vs.VQAScenesSource("test", "vqa")) == sum(len(s["questions"]) for s in test) == 3379


def test_test_scenes_and_captions_are_unseen_in_training(splits):
  train, test = splits
  layout = lambda s: tuple((o["kind"], o["colour"], o["x"], o["y"]) for o in s["objects"])  # noqa: E731
  assert not {layout(s) for s in test} & {layout(s) for s in train}
  assert not {c for s in test for c in s["captions"]} & {c for s in train for c in s["captions"]}
  # The digit images come from the digits' disjoint train / test splits.
  assert vs.VQAScenesSource("test").image(0).shape == (64, 64, 3)


def test_deterministic():
  a, b = vs.VQAScenesSource("test", "vqa"), vs.VQAScenesSource("test", "vqa")
  for i in (0, 17, 3000):
    x, y = a[i], b[i]
    np.testing.assert_array_equal(x["image"], y["image"])
    assert (x["question"], int(x["answer"])) == (y["question"], int(y["answer"]))
  rng = lambda: np.random.default_rng([vs.SEED, 1, 5])  # noqa: E731  (scene 5 of the test split)
  assert [o["cx"] for o in vs.sample_layout(rng(), 360)] == [o["cx"] for o in vs.scenes("test")[5]["objects"]]


def test_answers_follow_from_the_layout(splits):
  for scene in splits[1]:
    objects = scene["objects"]
    for question, answer, qtype in scene["questions"]:
      if question.startswith("how many") and qtype == "count":
        word = question.split()[2]
        n = sum(o["colour"] == word for o in objects) if word in vs.COLOURS else \
            sum(o["kind"] + "s" == word for o in objects)
        assert answer == str(n), question
      elif question.startswith("is there a"):
        colour, kind = question[len("is there a "):-1].split()
        assert (answer == "yes") == any(o["colour"] == colour and o["kind"] == kind for o in objects)
      elif question.startswith("which digit is"):
        colour = question.split()[-1][:-1]
        assert [o["kind"] for o in objects if o["colour"] == colour] == [answer]


def test_images_show_the_objects():
  source = vs.VQAScenesSource("test")
  for i in range(20):
    image = source.image(i).astype(int)
    for o in source.scenes[i]["objects"]:
      if o["kind"] in ("circle", "square"):  # the centre pixel is the object's colour
        np.testing.assert_array_equal(image[int(o["cy"]), int(o["cx"])], vs.COLOURS[o["colour"]])


def test_every_word_is_in_the_training_vocabulary(splits):
  tok = tokenizers.train_wordpiece(vs.training_texts(), 256, min_frequency=1)
  test_texts = [t for s in splits[1] for t in s["captions"] + tuple(q for q, _, _ in s["questions"])]
  unk = tok.token_to_id("[UNK]")
  assert all(unk not in ids for ids in tok.encode_batch(test_texts))
  assert tok.vocab_size < 256


def test_image_free_baselines():
  """What the demo must beat: the majority answer and the per-question prior, on the test questions."""
  b = vs.answer_baselines()
  assert b["majority_answer"] == "yes"
  assert b["majority"] == pytest.approx(0.2149, abs=1e-3)
  assert b["question_prior"] == pytest.approx(0.4359, abs=1e-3)


def test_the_detection_view_boxes_each_objects_mask_and_names_its_kind():
  import ml_collections

  from papers_jax.data.scenes import get_detection_source, pad_targets

  source = get_detection_source(ml_collections.ConfigDict({"name": "vqa_scenes"}), "test")
  assert isinstance(source, vs.DetectionScenesSource) and len(source) == 500 and source.num_classes == len(vs.KINDS)
  for i in range(20):
    example = source[i]
    for box, mask, label, phrase in zip(example["boxes"], example["instance_masks"], example["labels"],
                                        source.phrases(i)):
      rows, cols = np.nonzero(mask)
      assert list(box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
      assert phrase.endswith(" " + vs.KINDS[label])
    assert len(source.colours(i)) == len(example["labels"])
    assert pad_targets(example, 5)["box_valid"].sum() == len(example["labels"])
