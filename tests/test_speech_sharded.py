"""The speech tasks' train steps on a data × fsdp mesh of 8 devices equal one device's: a few steps through
the trainer on the bundled spoken digits, losses and updated parameters.

Default suite: Whisper's speech-to-text step (the cheapest of the three). PAPERS_JAX_FULL_PARITY=1 adds CPC
(negatives drawn inside the step) and wav2vec 2.0 pre-training (span masks, distractors and Gumbel samples
drawn inside the step); tests/test_wav2vec2.py checks the pre-training and CTC gradients at init on 8 devices.
"""

import os

import jax
import numpy as np
import pytest

from conftest import load_config
from test_core import run_steps

FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))
full_only = pytest.mark.skipif(not FULL, reason="set PAPERS_JAX_FULL_PARITY=1")

MESH = {"data": 4, "fsdp": 2, "tensor": 1}
NUM_STEPS = 2


@pytest.fixture(scope="module", autouse=True)
def spoken_cache(tmp_path_factory):
  from papers_jax.data import spoken
  old = os.environ.get("PAPERS_JAX_CACHE")
  os.environ["PAPERS_JAX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
  spoken.load.cache_clear()
  yield
  if old is None:
    os.environ.pop("PAPERS_JAX_CACHE")
  else:
    os.environ["PAPERS_JAX_CACHE"] = old
  spoken.load.cache_clear()


def smoke(path, mesh, **model):
  """The config's smoke variant on `mesh`, without dropout (its masks depend on how the bits are split)."""
  config = load_config(path, "smoke").unlock()
  config.model.update(model)
  config.mesh.update(mesh)
  config.num_steps = NUM_STEPS
  config.optimizer.lr = 3e-3
  return config.lock()


CASES = {
    "whisper": ("whisper/spoken_numbers.py", dict(dropout_rate=0.0)),
    "cpc": ("cpc/spoken_digits.py", {}),
    "wav2vec2": ("wav2vec2/spoken_digits_pretrain.py",
                 dict(hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)),
}


@pytest.mark.parametrize("name", [pytest.param("whisper", marks=full_only), pytest.param("cpc", marks=full_only),
                                  pytest.param("wav2vec2", marks=full_only)])
def test_sharded_steps_equal_single_device(name):
  path, model = CASES[name]
  one_losses, one_params, _ = run_steps(smoke(path, {"data": 1, "fsdp": 1, "tensor": 1}, **model),
                                        jax.devices()[:1], num_steps=NUM_STEPS)
  losses, params, trainer = run_steps(smoke(path, MESH, **model), jax.devices(), num_steps=NUM_STEPS)
  assert dict(trainer.mesh.shape) == MESH
  specs = [p.sharding.spec for p in jax.tree.leaves(trainer.state.params)]
  assert any("fsdp" in spec for spec in specs)  # some parameters really are split over the fsdp axis
  assert np.all(np.isfinite(losses)) and losses[-1] != losses[0]
  np.testing.assert_allclose(losses, one_losses, rtol=1e-5)
  # Adam divides by sqrt(v): near-zero gradients magnify reduction-order noise, hence the atol.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=3e-5), params, one_params)
