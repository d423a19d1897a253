"""DETR and Deformable DETR without a pixel mask (the detection task's call): the position encoding is built
from aranges, equal to the cumsum path on an all-ones mask, and the traced forward (so its backward) holds no
cumulative sum (XLA folds a cumsum over a constant mask at compile time, which took minutes). HF parity of
the unmasked path: tests/test_detr.py and tests/test_deformable_detr.py (two-stage)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from papers_jax.models import detr as detr_lib
from test_detr import abstract


@pytest.mark.parametrize("offset", [0.0, -0.5])
def test_unmasked_position_encoding_equals_the_all_ones_mask(offset):
  want, got = jax.jit(lambda: (detr_lib.sine_position_embedding(jnp.ones((2, 5, 7), bool), 8, offset=offset),
                               detr_lib.sine_position_embedding(None, 8, offset=offset, size=(5, 7))))()
  assert got.shape == (1, 5, 7, 16)
  np.testing.assert_allclose(np.asarray(got)[0], np.asarray(want)[1], atol=1e-6, rtol=0)  # float32 rounding


TWO_STAGE = dict(two_stage=True, with_box_refine=True, two_stage_num_proposals=4)


@pytest.mark.parametrize("name,extra", [("detr_resnet50", {}), ("deformable_detr_resnet50", TWO_STAGE)])
def test_forward_without_a_pixel_mask_has_no_cumsum(name, extra):
  model = abstract(name, num_classes=3, backbone_width=8, backbone_layers=(1, 1, 1, 1), d_model=32, num_heads=4,
                   encoder_layers=1, decoder_layers=1, ffn_dim=32, num_queries=4, dropout=0.0, **extra)
  graphdef, state = nnx.split(model)
  forward = lambda state, images: nnx.merge(graphdef, state)(images, train=True)  # noqa: E731
  jaxpr = jax.make_jaxpr(forward)(state, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
  text = str(jaxpr)  # nested jaxprs (jit, custom_vjp) print inside
  assert "dot_general" in text and "cumsum" not in text
