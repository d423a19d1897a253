"""BLIP's two options for training from random weights on the scenes (models/blip.py, docs/blip.md): the
cross-attention's query and key kernels at their own std, and ITC on the mean of the tokens. Cheap: one tiny
model, no compile."""

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
  for layer in model.text.layers:
    q, kv = np.asarray(layer.cross_attn.q.kernel[...]), np.asarray(layer.cross_attn.kv.kernel[...])
    assert 0.38 < q.std() < 0.5 and 0.38 < kv[:, 0].std() < 0.5
    assert kv[:, 1].std() < 0.05 and np.asarray(layer.cross_attn.proj.kernel[...]).std() < 0.05  # values, output
    assert np.asarray(layer.self_attn.qkv.kernel[...]).std() < 0.05
  default = blip.BLIP(**TINY, rngs=nnx.Rngs(0))
  assert np.asarray(default.text.layers[0].cross_attn.q.kernel[...]).std() < 0.05
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


def test_scenes_config_uses_both_options():
  from conftest import load_config
  config = load_config("blip/scenes_pretrain.py")
  assert config.model.cross_attention_qk_std == 0.125 and config.model.itc_pool == "mean"
