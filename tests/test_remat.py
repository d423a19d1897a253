"""Named rematerialisation policies (nn/remat.py): the same gradients, and each keeps what it names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.ad_checkpoint import print_saved_residuals

from papers_jax import models
from papers_jax.errors import ConfigError
from papers_jax.nn.remat import REMAT_POLICIES

X = np.random.RandomState(0).randn(2, 16, 16, 1).astype(np.float32)


def _vit(remat):
  return models.create("vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32,
                       depth=2, num_heads=2, remat=remat, rngs=0)


def _loss(graphdef):
  return lambda state: jnp.sum(nnx.merge(graphdef, state)(X, train=False) ** 2)


def _saved(remat, capsys) -> str:
  graphdef, state = nnx.split(_vit(remat))
  print_saved_residuals(_loss(graphdef), state)
  return capsys.readouterr().out


def _grads(remat):
  # Under jit: eagerly, every operation of the forward and backward would compile on its own.
  graphdef, state = nnx.split(_vit(remat))
  return jax.jit(jax.grad(_loss(graphdef)))(state)


@pytest.fixture(scope="module")
def grads_without_remat():
  return _grads("")


@pytest.mark.parametrize("remat", sorted(REMAT_POLICIES))
def test_every_policy_gives_the_same_gradients(remat, grads_without_remat):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), _grads(remat),
               grads_without_remat)


@pytest.mark.parametrize("remat, kept, dropped", [
    ("save_qkv_attn", {"qkv", "attn_out"}, {"mlp_hidden"}),
    ("save_mlp_hidden", {"mlp_hidden"}, {"qkv", "attn_out"}),
    ("save_qkv_attn_mlp", {"qkv", "attn_out", "mlp_hidden"}, set()),
    ("full", set(), {"qkv", "attn_out", "mlp_hidden"}),
])
def test_named_policies_keep_the_tagged_activations(remat, kept, dropped, capsys):
  saved = _saved(remat, capsys)
  for name in kept:
    assert saved.count(f"named '{name}'") == 2, (name, saved)  # one per block
  for name in dropped:
    assert f"named '{name}'" not in saved, (name, saved)


def test_an_unknown_policy_is_a_config_error():
  with pytest.raises(ConfigError, match="save_qkv_attn"):
    _vit("save_everything")
