"""BLIP's options for training from random weights on the scenes (models/blip.py, docs/blip.md): the
cross-attention's query / key and value / output kernels at their own stds, ITC on the mean of the tokens, and ITM
negatives that leave out the pairs a count or relation caption is known to match (tasks/blip.py). Cheap: tiny
models, no compile."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import blip

TINY = dict(img_size=32, patch_size=8, vision_width=48, vision_depth=1, vision_heads=4, vision_mlp_ratio=2.0,
            vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=20, embed_dim=16, dropout_rate=0.0, attention_dropout_rate=0.0)


def test_cross_attention_query_and_key_take_their_own_std_and_itc_pools_the_real_tokens():
  model = blip.BLIP(**TINY, cross_attention_qk_std=0.5, itc_pool="mean", rngs=nnx.Rngs(0))
  # truncated at ±2 std, so the sample std is about 0.88 × the std asked for
  default = blip.BLIP(**TINY, cross_attention_vo_std=0.25, rngs=nnx.Rngs(0))  # the paper's but for values, output
  for layer, layer_vo in zip(model.text.layers, default.text.layers):
    q, kv = np.asarray(layer.cross_attn.q.kernel[...]), np.asarray(layer.cross_attn.kv.kernel[...])
    assert 0.38 < q.std() < 0.5 and 0.38 < kv[:, 0].std() < 0.5
    assert kv[:, 1].std() < 0.05 and np.asarray(layer.cross_attn.proj.kernel[...]).std() < 0.05  # values, output
    assert np.asarray(layer.self_attn.qkv.kernel[...]).std() < 0.05
    kv = np.asarray(layer_vo.cross_attn.kv.kernel[...])
    assert np.asarray(layer_vo.cross_attn.q.kernel[...]).std() < 0.05 and kv[:, 0].std() < 0.05
    assert 0.19 < kv[:, 1].std() < 0.25 and 0.19 < np.asarray(layer_vo.cross_attn.proj.kernel[...]).std() < 0.25
    assert np.asarray(layer_vo.self_attn.qkv.kernel[...]).std() < 0.05
  # ITC on the mean of the tokens: what sits at padded positions does not count.
  rng = np.random.default_rng(0)
  text = jnp.asarray(rng.normal(size=(2, 6, 32)), jnp.float32)
  mask = jnp.asarray([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
  changed = text.at[0, 4:].set(100.0)
  np.testing.assert_allclose(model.text_feature(text, mask), model.text_feature(changed, mask), atol=1e-6)
  mean = np.asarray(text[0, :4]).mean(0) @ np.asarray(model.text_proj.kernel[...]) + np.asarray(
      model.text_proj.bias[...])
  np.testing.assert_allclose(model.text_feature(text, mask)[0], mean / np.linalg.norm(mean), atol=1e-5)
  image = jnp.asarray(rng.normal(size=(2, 17, 48)), jnp.float32)
  assert not np.allclose(model.image_feature(image), default.image_feature(image), atol=1e-3)
  mean = np.asarray(image[1]).mean(0) @ np.asarray(model.vision_proj.kernel[...]) + np.asarray(
      model.vision_proj.bias[...])
  np.testing.assert_allclose(model.image_feature(image)[1], mean / np.linalg.norm(mean), atol=1e-5)


def test_known_matches_equal_caption_holds_and_are_never_drawn_as_itm_negatives():
  from papers_jax.data import vqa_scenes
  from papers_jax.objectives import blip as objective
  from papers_jax.tasks import blip as task
  rng, scenes = np.random.default_rng(0), []
  for _ in range(24):  # scenes as vqa_scenes makes them, the digits' classes drawn here (no digit images)
    objects = vqa_scenes.sample_layout(rng, 1000)
    for o in objects:
      o["kind"] = str(int(rng.integers(10))) if o["digit_index"] >= 0 else o["kind"]
    scenes.append({"objects": objects, "captions": vqa_scenes.scene_captions(objects, rng)})
  captions = [c for s in scenes for c in s["captions"]]
  codes = np.asarray([task.caption_code(c) for c in captions], np.int32)
  facts = np.stack([task.scene_facts(s["objects"]) for s in scenes])
  known = np.asarray(task.known_matches({"input_ids": jnp.zeros((2, 2)), "caption_code": codes,
                                         "scene_facts": jnp.asarray(facts)}))  # (captions, scenes)
  holds = np.asarray([[vqa_scenes.caption_holds(s["objects"], c) for s in scenes] for c in captions])
  counts, relations = codes >= 20000, (codes >= 0) & (codes < 20000)
  assert counts.sum() == 24 and relations.sum() > 24 and (codes == -1).sum() == 48  # the listings stay uncoded
  np.testing.assert_array_equal(known[codes >= 0], holds[codes >= 0])
  assert not known[codes < 0].any()
  assert holds[counts].sum() > counts.sum()  # a count caption holds for more scenes than its own
  # 24 captions against their 24 scenes, every pair equally similar: no negative is a known match.
  b = 24
  batch = {"input_ids": jnp.zeros((b, 2)), "caption_code": codes[counts | relations][:b],
           "scene_facts": jnp.asarray(facts)}
  positive = np.asarray(task.known_matches(batch)) | np.eye(b, dtype=bool)
  assert positive.sum() > b
  neg_image, neg_text = objective.itm_negatives(jax.random.key(0), jnp.zeros((b, b)), jnp.zeros((b, b)),
                                                jnp.asarray(positive))
  assert not positive[np.arange(b), np.asarray(neg_image)].any()
  assert not positive[np.asarray(neg_text), np.arange(b)].any()


def test_scenes_config_uses_the_options():
  from conftest import load_config
  config = load_config("blip/scenes_pretrain.py")
  assert config.model.cross_attention_qk_std == 0.125 and config.model.cross_attention_vo_std == 0.125
  assert config.model.itc_pool == config.model.itm_pool == "mean" and config.blip.itm_known_matches
  assert config.blip.itm_weight == 3.0
