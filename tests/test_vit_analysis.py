"""The ViT paper's Fig. 7 analysis (evaluators/vit_analysis.py) on cases with known answers, and
`tools/visualize.py vit` writing its three pictures from a checkpoint."""

import importlib.util
import os

import numpy as np
from flax import nnx

from conftest import ROOT, load_config
from papers_jax import convert
from papers_jax.evaluators import vit_analysis


def test_patch_distances_and_mean_attention_distance():
  grid, patch = (2, 3), 4
  dist = vit_analysis.patch_distances(grid, patch)
  assert dist.shape == (6, 6) and dist[0, 1] == 4 and dist[0, 3] == 4 and np.isclose(dist[0, 4], np.hypot(4, 4))
  n = 1 + 6  # a class token first
  # Each query attending only to itself: distance 0; attending to the class token only does not count.
  self_attention = np.zeros((2, 3, n, n))
  self_attention[:, :, np.arange(n), np.arange(n)] = 0.5
  self_attention[:, :, :, 0] += 0.5
  np.testing.assert_allclose(vit_analysis.mean_attention_distance(self_attention, grid, patch), 0.0)
  # Uniform attention over the patches: the mean distance between two patches.
  uniform = np.full((1, 2, n, n), 1.0 / n)
  np.testing.assert_allclose(vit_analysis.mean_attention_distance(uniform, grid, patch), [dist.mean()] * 2)
  # Head 0 looks one patch to the right (or left at the border): exactly 4 pixels.
  shifted = np.zeros((1, 1, 6, 6))
  for q in range(6):
    shifted[0, 0, q, q + 1 if q % 3 < 2 else q - 1] = 1.0
  np.testing.assert_allclose(vit_analysis.mean_attention_distance(shifted, grid, patch, num_prefix_tokens=0), [4.0])


def test_position_similarity_and_filter_components():
  rng = np.random.RandomState(0)
  pos = rng.randn(1, 1 + 6, 8)
  sim = vit_analysis.position_similarity(pos, (2, 3))
  assert sim.shape == (2, 3, 2, 3)
  flat = sim.reshape(6, 6)
  np.testing.assert_allclose(np.diag(flat), 1.0)
  np.testing.assert_allclose(flat, flat.T)
  a, b = pos[0, 6], pos[0, 1]  # patches (1, 2) and (0, 0), after the class token
  np.testing.assert_allclose(sim[1, 2, 0, 0], a @ b / np.linalg.norm(a) / np.linalg.norm(b))
  # Filters varying along one pattern (plus a little noise): the first component is that pattern.
  pattern = rng.randn(4, 4, 1)
  kernel = pattern[..., None] * rng.randn(1, 1, 1, 32) + 1e-3 * rng.randn(4, 4, 1, 32)
  components, explained = vit_analysis.filter_principal_components(kernel, num=5)
  assert components.shape == (5, 4, 4, 1) and np.all(np.diff(explained) <= 0) and explained[0] > 0.99
  np.testing.assert_allclose(abs(components[0].ravel() @ pattern.ravel()) / np.linalg.norm(pattern), 1.0, rtol=1e-4)
  gram = components.reshape(5, -1) @ components.reshape(5, -1).T
  np.testing.assert_allclose(gram, np.eye(5), atol=1e-8)


def test_visualize_vit_writes_the_three_figures(tmp_path, monkeypatch, capsys):
  spec = importlib.util.spec_from_file_location("tools_visualize", f"{ROOT}/tools/visualize.py")
  tools_visualize = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tools_visualize)
  monkeypatch.chdir(ROOT)
  from papers_jax.tasks.classification import ClassificationTask
  config = load_config("vit/digits.py", "smoke")
  model = ClassificationTask(config).build_model(nnx.Rngs(params=0))
  convert.save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), str(tmp_path / "ckpt"))
  out = tmp_path / "figures"
  assert tools_visualize.main(["vit", "--config", "configs/vit/digits.py:smoke", "--checkpoint",
                               str(tmp_path / "ckpt"), "--out-dir", str(out), "--examples", "6"]) == 0
  assert sorted(os.listdir(out)) == ["attention_distance.png", "embedding_filters.png", "position_similarity.png"]
  printed = capsys.readouterr().out
  assert "layer 2:" in printed and "layer 3:" not in printed  # the smoke ViT has two blocks
  # A non-ViT config is a user error (exit code 2), before anything is written.
  assert tools_visualize.main(["vit", "--config", "configs/mae/digits.py:stage=pretrain,smoke", "--checkpoint",
                               str(tmp_path / "ckpt"), "--out-dir", str(tmp_path / "no")]) == 2
  assert not (tmp_path / "no").exists()
