"""The CLIP family on the generated scenes: CLIP's image-text scenes data path and single-object
zero-shot (configs/clip/scenes.py)."""

import numpy as np

from conftest import load_config
from papers_jax.data import vqa_scenes
from papers_jax.evaluators import zero_shot
from papers_jax.tasks.clip import CLIPTask


def test_clip_reads_the_scenes_captions_and_scores_single_objects():
  """The clip task reads data.name="vqa_scenes" as image-text data with a word-level tokenizer of its
  texts, and the single-object zero-shot scores each object's colour and kind: with image features
  that are all one vector, every object gets the same prompt, so each score is that class's frequency."""
  task = CLIPTask(load_config("clip/scenes.py", "smoke"))
  example = task.source("train")[3]
  assert example["texts"] == vqa_scenes.scenes("train")[3]["captions"] and task.image_text
  assert task.tokenizer.vocab_size == 59 and task.class_names is None
  prompts = [t.format(f"{c} {k}") for t in task.clip.eval_templates for c in vqa_scenes.COLOURS
             for k in vqa_scenes.KINDS]
  assert not task.tokenizer.unknown_words(prompts + list(example["texts"]))
  tokens = task.preprocess(train=True)(example, np.random.default_rng(0))["tokens"]
  assert tokens.shape == (24,) and tokens.max() == task.tokenizer.eot_id

  images, colours, kinds = vqa_scenes.single_objects("test", 64)
  assert len(images) == sum(len(s["objects"]) for s in vqa_scenes.scenes("test")[:64])
  # One object per image: its pixels brighter than the noise are the only ones.
  assert np.all((images.max(-1) > 60).sum((1, 2)) > 20)
  rng = np.random.default_rng(0)
  text_table = rng.normal(size=(task.tokenizer.vocab_size, 8))
  encode_text = lambda t: text_table[t].sum(1)  # noqa: E731  (distinct rows per prompt)
  encode_image = lambda x: np.ones((len(x), 8))  # noqa: E731
  out = task._scene_objects_zero_shot(encode_image, encode_text, step=0)
  names = [f"{c} {k}" for c in vqa_scenes.COLOURS for k in vqa_scenes.KINDS]
  weights = zero_shot.classifier_weights(encode_text, task.tokenizer, names, task.clip.eval_templates)
  pick = int(np.argmax(weights.sum(1)))  # the prompt row closest to the all-ones image feature
  assert out["object_colour_top1"] == np.mean(colours == pick // 13)
  assert out["object_kind_top1"] == np.mean(kinds == pick % 13)
  assert out["object_top1"] == np.mean((colours == pick // 13) & (kinds == pick % 13))
