"""MAE: the reconstruction objective against numpy, the masking's statistics, the encoder as a ViT,
and parity with HF transformers' `ViTMAEForPreTraining` (parameter counts, per-example loss,
reconstructions, the converter)."""

import importlib.util
import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from papers_jax import convert, models
from papers_jax.errors import CheckpointError, ConfigError
from papers_jax.models.mae import num_kept, random_masking
from papers_jax.objectives import reconstruction as rec

TOL = 1e-4
SMALL = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=2,
             decoder_num_heads=4)


class FixedKeyRngs:
  """Stands in for nnx.Rngs in shape-only builds (see tests/test_vit_timm.py: keeps eval_shape linear)."""

  def params(self):
    return jax.random.key(0)


def num_params(model) -> int:
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(name, **overrides):
  return nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))


def filled(model, seed=0):
  """`model` with every param drawn in numpy: N(0, 0.05), LayerNorm scales 1 + N(0, 0.05).

  Random init on device compiles one program per shape (tens of seconds on 2 CPU cores); this is instant.
  """
  rng = np.random.RandomState(seed)

  def fill(path, v):
    base = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
    return jnp.asarray(base + 0.05 * rng.randn(*v.shape), v.dtype)

  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
  nnx.update(model, state)
  stats = nnx.state(model, nnx.BatchStat)  # running mean 0, running var 1
  stat = lambda p, v: (jnp.ones if getattr(p[-1], "key", None) == "var" else jnp.zeros)(v.shape, v.dtype)  # noqa: E731
  nnx.replace_by_pure_dict(stats, jax.tree_util.tree_map_with_path(stat, nnx.to_pure_dict(stats)))
  nnx.update(model, stats)
  return model


def small_mae(seed=0, **overrides):
  return filled(abstract("mae_vit_base_patch16", **{**SMALL, **overrides}), seed)


# ------------------------------------------------------------------------ objective (numpy)


def np_patchify(images, p):
  b, h, w, c = images.shape
  out = np.zeros((b, (h // p) * (w // p), p * p * c), images.dtype)
  for n, (i, j) in enumerate(itertools.product(range(h // p), range(w // p))):
    out[:, n] = images[:, i * p:(i + 1) * p, j * p:(j + 1) * p, :].reshape(b, -1)  # (row, col, channel)
  return out


def test_patchify_matches_numpy_and_inverts():
  images = np.random.RandomState(0).randn(2, 12, 8, 3).astype(np.float32)
  patches = rec.patchify(jnp.asarray(images), 4)
  np.testing.assert_array_equal(patches, np_patchify(images, 4))
  np.testing.assert_array_equal(rec.unpatchify(patches, 4, (3, 2), 3), images)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_mae_loss_matches_numpy(norm_pix_loss):
  rng = np.random.RandomState(1)
  images = rng.rand(3, 8, 8, 2).astype(np.float32)
  pred = rng.randn(3, 4, 32).astype(np.float32)
  mask = np.array([[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]], np.float32)
  target = np_patchify(images.astype(np.float64), 4)
  if norm_pix_loss:  # the reference code: unbiased variance, eps 1e-6 inside the square root
    target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
  expected = ((pred - target) ** 2).mean(-1)
  expected = (expected * mask).sum(-1) / mask.sum(-1)
  got = rec.mae_loss(jnp.asarray(pred), jnp.asarray(images), jnp.asarray(mask), 4, norm_pix_loss=norm_pix_loss)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_loss_counts_only_masked_patches():
  rng = np.random.RandomState(2)
  images = jnp.asarray(rng.rand(2, 8, 8, 1).astype(np.float32))
  pred = jnp.asarray(rng.randn(2, 4, 16).astype(np.float32))
  mask = jnp.array([[1, 0, 0, 1], [0, 0, 1, 0]], jnp.float32)
  loss = lambda p: rec.mae_loss(p, images, mask, 4, norm_pix_loss=True).sum()  # noqa: E731
  # Anything predicted for a visible patch changes neither the loss nor gets a gradient ...
  visible = (1 - mask)[..., None]
  np.testing.assert_array_equal(loss(pred + 100.0 * visible), loss(pred))
  grad = jax.grad(loss)(pred)
  assert not np.any(np.asarray(grad) * np.asarray(visible))
  # ... while every masked patch does.
  assert np.all(np.abs(np.asarray(grad)).sum(-1)[np.asarray(mask) == 1] > 0)


# ------------------------------------------------------------------------------- masking


def test_random_masking_with_explicit_order():
  x = jnp.arange(2 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 1)
  ids = jnp.array([[3, 0, 5, 1, 2, 4], [5, 4, 3, 2, 1, 0]])
  kept, mask, restore = random_masking(x, 2, ids_shuffle=ids)
  np.testing.assert_array_equal(kept[..., 0], [[3, 0], [11, 10]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(jnp.take_along_axis(ids, restore, 1), np.tile(np.arange(6), (2, 1)))
  # HF's `noise` argument: the order is its argsort.
  noise = jnp.array([[0.4, 0.1, 0.9, 0.0, 0.5, 0.3], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
  _, mask_n, _ = random_masking(x, 2, noise=noise)
  np.testing.assert_array_equal(mask_n, [[1, 0, 1, 0, 1, 1], [0, 0, 1, 1, 1, 1]])
  assert num_kept(196, 0.75) == 49 and num_kept(196, 0.9) == 19
  with pytest.raises(ConfigError):
    num_kept(16, 0.99)


def test_masking_is_uniform_and_independent_per_example():
  """6 patches, 3 visible: all C(6,3) = 20 visible sets equally likely, and the sets of two
  examples in the same batch independent (chi-square over the 20 × 20 joint table)."""
  n, keep, batch = 6, 3, 24_000
  _, mask, _ = jax.jit(lambda key: random_masking(jnp.zeros((batch, n, 1)), keep, rng=key))(jax.random.key(0))
  visible = 1 - np.asarray(mask, np.int64)
  assert np.all(visible.sum(1) == keep)
  subset = visible @ (2 ** np.arange(n))  # the visible set as a bitmask
  codes = {c: i for i, c in enumerate(sorted(sum(2 ** np.array(s)) for s in itertools.combinations(range(n), keep)))}
  idx = np.array([codes[c] for c in subset])
  counts = np.bincount(idx, minlength=20)
  assert stats.chisquare(counts).pvalue > 1e-3, counts
  position_freq = visible.mean(0)  # each patch visible with probability keep / n
  np.testing.assert_allclose(position_freq, keep / n, atol=0.02)
  joint = np.zeros((20, 20))
  np.add.at(joint, (idx[0::2], idx[1::2]), 1)
  assert stats.chi2_contingency(joint).pvalue > 1e-3
  # Neighbours in the batch are not shifted copies of each other either.
  assert (idx[1:] == idx[:-1]).mean() < 0.1


def test_model_masks_each_example_independently():
  model = small_mae()
  images = jnp.broadcast_to(jnp.asarray(np.random.RandomState(0).randn(1, 32, 32, 3), jnp.float32), (8, 32, 32, 3))
  pred, mask = nnx.jit(lambda m, x, key: m(x, rng=key))(model, images, jax.random.key(3))
  assert pred.shape == (8, 16, 192) and pred.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(mask).sum(1), 16 - 4)  # 75% of 16 patches removed
  assert len({tuple(m) for m in np.asarray(mask)}) > 1  # same image, different masks


def test_encoder_with_mask_tokens_sees_every_token_but_no_removed_pixel():
  """The paper's "encoder w/ [M]" ablation (Table 1c): 1 + N encoder tokens, the removed patches'
  pixels replaced by one learned token, the same loss shapes as the default model."""
  model = models.create("mae_vit_base_patch16", **SMALL, encoder_mask_token=True, rngs=nnx.Rngs(0))
  order = jnp.asarray(np.stack([np.random.RandomState(s).permutation(16) for s in range(2)]))
  images = jnp.asarray(np.random.RandomState(0).randn(2, 32, 32, 3), jnp.float32)
  latent, mask, _ = model.forward_encoder(images, ids_shuffle=order)
  assert latent.shape == (2, 17, 64)
  # Change every removed patch's pixels: nothing the model outputs may move.
  removed = np.repeat(np.repeat(np.asarray(mask).reshape(2, 4, 4), 8, 1), 8, 2)[..., None] > 0
  changed = jnp.where(removed, images + 3.0, images)
  pred, _ = model(images, ids_shuffle=order)
  pred_changed, _ = model(changed, ids_shuffle=order)
  np.testing.assert_array_equal(np.asarray(pred), np.asarray(pred_changed))
  # A visible patch's pixels do move the output.
  pred_visible, _ = model(jnp.where(removed, images, images + 3.0), ids_shuffle=order)
  assert np.abs(np.asarray(pred_visible) - np.asarray(pred)).max() > 1e-3
  default = models.create("mae_vit_base_patch16", **SMALL, rngs=nnx.Rngs(0))
  assert num_params(model) - num_params(default) == 64 - 32  # the encoder's token replaces the decoder's


# --------------------------------------------------------------------- the encoder as a ViT


def test_encoder_params_load_into_a_vit(tmp_path):
  mae = small_mae(seed=1)
  convert.save_params(nnx.to_pure_dict(nnx.state(mae, nnx.Param)), str(tmp_path / "mae"))
  vit_kwargs = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10,
                    pos_embed_init="sincos")
  # The learned pos_embed of `pos_embed_init="sincos"` starts at the fixed table MAE was trained with.
  # (Only that param is computed on device: the jitted init of the others is dead code.)
  pos_init = jax.jit(lambda: models.create("vit_base_patch16_224", rngs=FixedKeyRngs(), **vit_kwargs).pos_embed[...])()
  np.testing.assert_array_equal(np.asarray(pos_init), mae.pos_embed())
  vit = filled(abstract("vit_base_patch16_224", **vit_kwargs), seed=2)
  vit.pos_embed[...] = pos_init
  params = nnx.to_pure_dict(nnx.state(vit, nnx.Param))
  with pytest.raises(CheckpointError, match="decoder_blocks"):  # the decoder must be skipped explicitly
    convert.init_params_from_checkpoint(str(tmp_path / "mae"), params)
  skip = (r"^head/", r"^pos_embed$", r"^decoder_", r"^mask_token$")
  loaded, report = convert.init_params_from_checkpoint(str(tmp_path / "mae"), params, skip=skip)
  assert "missing  pos_embed" in report and "missing  head/kernel" in report
  nnx.update(vit, _as_state(vit, loaded))
  x = jnp.asarray(np.random.RandomState(0).randn(2, 32, 32, 3), jnp.float32)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(vit.forward_features(x), mae.forward_features(x), atol=1e-5)


def _as_state(model, pure):
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, pure)
  return state


# ------------------------------------------------------------------------------ HF parity

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
  torch = None
else:
  from papers_jax.convert.torch_compat import import_timm
  import_timm()  # the torchvision shim, before transformers
  import torch
  from transformers import ViTMAEConfig, ViTMAEForPreTraining
  from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and transformers")

OFFICIAL = {  # HF `parameters()` (counting both fixed sin-cos tables), = the reference code's count
    "mae_vit_base_patch16": 111_907_840, "mae_vit_large_patch16": 329_541_888, "mae_vit_huge_patch14": 657_074_508,
}


def hf_config(name=None, **kwargs):
  if name is not None:
    cfg = models.model_config(name)
    kwargs = dict(hidden_size=cfg["embed_dim"], num_hidden_layers=cfg["depth"], num_attention_heads=cfg["num_heads"],
                  intermediate_size=4 * cfg["embed_dim"], patch_size=cfg["patch_size"], image_size=cfg["img_size"],
                  decoder_hidden_size=cfg["decoder_embed_dim"], decoder_num_hidden_layers=cfg["decoder_depth"],
                  decoder_num_attention_heads=cfg["decoder_num_heads"],
                  decoder_intermediate_size=4 * cfg["decoder_embed_dim"], **kwargs)
  return ViTMAEConfig(layer_norm_eps=1e-6, **kwargs)  # the reference code's LayerNorm eps


def hf_sincos(grid: int, dim: int):
  """HF's table as its own `initialize_weights` lays it out (the two halves swapped)."""
  table = build_2d_sinusoidal_position_embedding(grid, grid, dim, cls_token=True)
  return torch.cat([table[:, dim // 2:], table[:, :dim // 2]], -1)[None]


def random_hf(cfg, seed=0):
  """A ViTMAEForPreTraining with random values in every tensor (LayerNorm scales 1 + noise) except the
  fixed sin-cos tables, which get their true values (transformers 5's random init leaves them at 0)."""
  with torch.device("meta"):
    model = ViTMAEForPreTraining(cfg)
  model = model.to_empty(device="cpu").eval()
  grid = cfg.image_size // cfg.patch_size
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      if key.endswith(("position_embeddings", "decoder_pos_embed")):
        p.copy_(hf_sincos(grid, p.shape[-1]))
        continue
      base = 1.0 if "norm" in key and key.endswith(".weight") else 0.0
      p.copy_(base + 0.05 * torch.randn(p.shape, generator=generator))
  return model


def numpy_sd(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def load_ours(sd, name="mae_vit_base_patch16", **overrides):
  model = nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs(), **overrides))
  report = convert.load_torch_weights(model, sd, source="hf")
  return model, report


@nnx.jit
def _forward(model, x, noise):
  return model(x, noise=noise)


def compare(ref, ours, x, noise, norm_pix_loss, p):
  """Max abs differences of (reconstructions, per-example losses); masks must be equal."""
  ref.config.norm_pix_loss = norm_pix_loss
  to_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
  with torch.no_grad():
    out = ref(to_torch(x.transpose(0, 3, 1, 2)), noise=to_torch(noise))
    # HF's loss is a batch mean; one example at a time gives its per-example loss.
    per_example = [float(ref(to_torch(x[i:i + 1].transpose(0, 3, 1, 2)), noise=to_torch(noise[i:i + 1])).loss)
                   for i in range(len(x))]
  with jax.default_matmul_precision("highest"):
    pred, mask = _forward(ours, x, noise)
    loss = rec.mae_loss(pred, x, mask, p, norm_pix_loss=norm_pix_loss)
  np.testing.assert_array_equal(np.asarray(mask), out.mask.numpy())
  assert abs(float(loss.mean()) - float(out.loss)) < TOL
  return np.abs(np.asarray(pred) - out.logits.numpy()).max(), np.abs(np.asarray(loss) - per_example).max()


@pytest.fixture(scope="module")
def small_pair():
  cfg = hf_config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                  decoder_hidden_size=32, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
                  decoder_intermediate_size=128, image_size=32, patch_size=8, mask_ratio=0.75)
  ref = random_hf(cfg)
  sd = numpy_sd(ref)
  ours, report = load_ours(sd, **SMALL)
  return ref, sd, ours, report


@needs_torch
@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_small_matches_hf(small_pair, norm_pix_loss):
  ref, _, ours, report = small_pair
  assert not (report.missing or report.unexpected or report.mismatched)
  assert len(report.loaded) == len(report.ours) == 60
  rng = np.random.RandomState(0)
  x, noise = rng.randn(3, 32, 32, 3).astype(np.float32), rng.rand(3, 16).astype(np.float32)
  pred_diff, loss_diff = compare(ref, ours, x, noise, norm_pix_loss, 8)
  print(f"small MAE norm_pix_loss={norm_pix_loss}: reconstruction max-abs {pred_diff:.2e}, "
        f"per-example loss max-abs {loss_diff:.2e}")
  assert pred_diff < TOL and loss_diff < TOL


@needs_torch
def test_converter_sees_every_tensor(small_pair):
  """Resetting a converted non-matrix tensor to HF's init value moves the output 10x beyond TOL (parity is ~1e-6)."""
  ref, sd, _, _ = small_pair
  rng = np.random.RandomState(1)
  x, noise = rng.randn(2, 32, 32, 3).astype(np.float32), rng.rand(2, 16).astype(np.float32)
  for key in ("vit.embeddings.cls_token", "vit.layers.1.attention.v_proj.bias", "vit.layers.0.layernorm_after.bias",
              "vit.layernorm.weight", "decoder.mask_token", "decoder.decoder_layers.1.mlp.fc2.bias",
              "decoder.decoder_norm.bias", "decoder.decoder_pred.bias"):
    changed = dict(sd, **{key: np.ones_like(sd[key]) if key.endswith("norm.weight") else np.zeros_like(sd[key])})
    ours, _ = load_ours(changed, **SMALL)
    with jax.default_matmul_precision("highest"):
      pred, _ = _forward(ours, x, noise)
    with torch.no_grad():
      want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), noise=torch.from_numpy(noise)).logits.numpy()
    assert np.abs(np.asarray(pred) - want).max() > 10 * TOL, key


@needs_torch
def test_converter_reads_the_hub_layout_and_checks_the_tables(small_pair):
  _, sd, ours, _ = small_pair
  old = {}
  for key, value in sd.items():  # the key names of the checkpoints on the hub (transformers 4)
    key = key.replace("vit.layers.", "vit.encoder.layer.")
    for new, hub in (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                     ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                     ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")):
      key = key.replace(new, hub)
    old[key] = value
  hub_model, report = load_ours(old, **SMALL)
  assert len(report.loaded) == 60 and not report.unexpected
  jax.tree.map(np.testing.assert_array_equal, nnx.state(hub_model, nnx.Param), nnx.state(ours, nnx.Param))
  # A fixed table we do not compute (e.g. the zeros of transformers 5's random init) is refused.
  with pytest.raises(CheckpointError, match="decoder.decoder_pos_embed"):
    load_ours(dict(sd, **{"decoder.decoder_pos_embed": np.zeros_like(sd["decoder.decoder_pos_embed"])}), **SMALL)
  # Strict as for timm: a missing q projection leaves k and v unfused and reported.
  broken = dict(sd)
  del broken["vit.layers.0.attention.q_proj.weight"]
  with pytest.raises(CheckpointError, match="vit.layers.0.attention.k_proj.weight"):
    load_ours(broken, **SMALL)


@needs_torch
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_param_counts_match_hf(name):
  ours = num_params(nnx.eval_shape(lambda: models.create(name, rngs=FixedKeyRngs())))
  with torch.device("meta"):
    ref = ViTMAEForPreTraining(hf_config(name))
  fixed = ref.vit.embeddings.position_embeddings.numel() + ref.decoder.decoder_pos_embed.numel()
  total = sum(p.numel() for p in ref.parameters())
  print(f"{name}: ours {ours:,} (trainable) + fixed tables {fixed:,} = HF {total:,}")
  assert total == OFFICIAL[name]
  assert ours + fixed == total
  assert ours == sum(p.numel() for p in ref.parameters() if p.requires_grad)


@needs_torch
@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="set PAPERS_JAX_FULL_PARITY=1 (a minute)")
def test_base_matches_hf(tmp_path):
  """MAE-B at full size through the command-line converter; the small model above covers the same
  code in the default suite."""
  ref = random_hf(hf_config("mae_vit_base_patch16"), seed=2)
  sd = numpy_sd(ref)
  ours, report = load_ours(sd)
  assert len(report.loaded) == len(report.ours) and not report.unexpected
  # The command-line converter writes the same params from a .safetensors file.
  import orbax.checkpoint as ocp
  from conftest import ROOT
  from safetensors.numpy import save_file
  save_file(sd, str(tmp_path / "model.safetensors"))
  spec = importlib.util.spec_from_file_location("convert_weights", ROOT + "/tools/convert_weights.py")
  cli = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cli)
  assert cli.main(["--source", "hf", "--model", "mae_vit_base_patch16", "--checkpoint",
                   str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "ckpt")]) == 0
  written = convert._flatten(ocp.StandardCheckpointer().restore(str(tmp_path / "ckpt"))["params"])
  expected = convert._flatten(nnx.to_pure_dict(nnx.state(ours, nnx.Param)))
  assert sorted(written) == sorted(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(np.asarray(written[key]), np.asarray(value), err_msg=key)
  rng = np.random.RandomState(2)
  x, noise = rng.randn(2, 224, 224, 3).astype(np.float32), rng.rand(2, 196).astype(np.float32)
  pred_diff, loss_diff = compare(ref, ours, x, noise, True, 16)
  print(f"mae_vit_base_patch16: reconstruction max-abs {pred_diff:.2e}, per-example loss max-abs {loss_diff:.2e}")
  assert pred_diff < TOL and loss_diff < TOL


# ---------------------------------------------------------------------------- evaluators


def np_knn_predict(train_x, train_y, test_x, k, temperature, num_classes):
  train_x = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
  preds = []
  for q in test_x:
    sim = train_x @ q
    top = np.argsort(-sim, kind="stable")[:k]
    scores = np.zeros(num_classes)
    for i in top:
      scores[train_y[i]] += np.exp(sim[i] / temperature)
    preds.append(scores.argmax())
  return np.array(preds)


def test_knn_vote_matches_numpy():
  from papers_jax.evaluators import knn
  rng = np.random.RandomState(0)
  centres = rng.randn(5, 16)
  train_y, test_y = rng.randint(0, 5, 300), rng.randint(0, 5, 70)
  train_x = centres[train_y] + 1.5 * rng.randn(300, 16)
  test_x = centres[test_y] + 1.5 * rng.randn(70, 16)
  for k, t in ((20, 0.07), (200, 0.07), (7, 0.5)):
    scores = np.asarray(knn.knn_scores(train_x, train_y, test_x, k=k, num_classes=5, temperature=t))
    np.testing.assert_array_equal(scores.argmax(-1), np_knn_predict(train_x, train_y, test_x, k, t, 5))
  acc = knn.knn_accuracy(train_x, train_y, test_x, test_y, ks=(20, 200), chunk=32)
  expected = (np_knn_predict(train_x, train_y, test_x, 20, 0.07, 5) == test_y).mean()
  assert acc["knn_top1_k20"] == pytest.approx(expected) and set(acc) == {"knn_top1_k20", "knn_top1_k200"}
  # The weights: one test point, three neighbours → exp(cos / T) summed per class.
  scores = knn.knn_scores(np.array([[1.0, 0], [0, 1.0], [1.0, 1.0]]), np.array([0, 1, 1]), np.array([[2.0, 0]]),
                          k=3, num_classes=2, temperature=0.5)
  np.testing.assert_allclose(scores, [[np.exp(2.0), np.exp(0.0) + np.exp(np.sqrt(0.5) / 0.5)]], rtol=1e-5)


def test_linear_probe_separates_separable_features():
  from papers_jax.evaluators import linear_probe
  rng = np.random.RandomState(0)
  y = rng.randint(0, 3, 200)
  x = np.eye(3)[y] * 5 + rng.randn(200, 3) * 0.5 + 100  # offset and scale removed by the standardisation
  out = linear_probe.fit_and_evaluate(x[:150], y[:150], x[150:], y[150:], steps=200)
  assert out["linear_probe_top1"] > 0.95


def test_mixup_and_cutmix_match_numpy():
  from papers_jax.objectives import classification as cls
  rng = np.random.RandomState(0)
  x = rng.rand(4, 10, 8, 3).astype(np.float32)
  t = np.eye(5, dtype=np.float32)[[0, 3, 1, 4]]
  lam = 0.3
  mixed, mt = cls.mix_batch(jnp.asarray(x), jnp.asarray(t), jnp.float32(lam))
  np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], rtol=1e-6)
  np.testing.assert_allclose(mt, lam * t + (1 - lam) * t[::-1], rtol=1e-6)
  # timm's rand_bbox: side fraction sqrt(1 - lam), centre (cy, cx), clipped; lam corrected to the area.
  box, lam_box = cls.cutmix_box(jnp.float32(0.36), jnp.int32(8), jnp.int32(1), 10, 8)
  cut_h, cut_w = int(10 * 0.8), int(8 * 0.8)
  y0, y1, x0, x1 = max(8 - cut_h // 2, 0), min(8 + cut_h // 2, 10), max(1 - cut_w // 2, 0), min(1 + cut_w // 2, 8)
  assert tuple(int(b) for b in box) == (y0, y1, x0, x1)
  assert float(lam_box) == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 80)
  cut, ct = cls.mix_batch(jnp.asarray(x), jnp.asarray(t), lam_box, box)
  expected = x.copy()
  expected[:, y0:y1, x0:x1] = x[::-1, y0:y1, x0:x1]
  np.testing.assert_array_equal(cut, expected)
  np.testing.assert_allclose(ct.sum(-1), 1.0, rtol=1e-6)
  out_x, out_t = cls.mixup_cutmix(jax.random.key(0), jnp.asarray(x), jnp.asarray(t))
  assert out_x.shape == x.shape and np.allclose(np.asarray(out_t).sum(-1), 1.0)


def test_frozen_blocks_and_probe_head():
  """Linear probing: no gradient reaches the encoder; BatchNorm (no affine) normalises with batch stats."""
  kwargs = dict(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3,
                head_norm="batchnorm", head_init_std=0.01)
  model = filled(abstract("vit_base_patch16_224", frozen_blocks=2, **kwargs))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.asarray(np.random.RandomState(0).randn(8, 16, 16, 3), jnp.float32)

  def loss(params, rest):
    return nnx.merge(graphdef, params, rest, copy=True)(x, train=True).sum()

  grads = nnx.to_pure_dict(jax.grad(loss)(params, rest))
  flat = convert._flatten(grads)
  assert all(not np.any(np.asarray(v)) for k, v in flat.items() if not k.startswith("head/")), \
      [k for k, v in flat.items() if np.any(np.asarray(v))]
  assert np.any(np.asarray(flat["head/kernel"]))
  feats = model.forward_head(model.forward_features(x), pre_logits=True)
  normed = model.head_norm(feats, use_running_average=False)
  np.testing.assert_allclose(np.asarray(normed).mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(normed).std(0), 1, atol=1e-3)


# -------------------------------------------------------------------------- visualisation


def test_default_picture_does_not_use_the_removed_patches_statistics():
  """With norm_pix_loss the default view de-normalises with visible-patch statistics only: changing the
  pixels of removed patches changes the 'original' row but not the reconstruction; the leaky
  'target' view does change."""
  from papers_jax.evaluators import reconstruction as vis
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (2, 8, 8, 1)).astype(np.uint8)
  mask = np.array([[1, 0, 1, 0], [0, 1, 1, 1]], np.float32)
  pred = rng.randn(2, 4, 16).astype(np.float32)
  changed = images.copy()
  changed[0, :4, :4] = 255 - changed[0, :4, :4]  # patch 0 of image 0: removed
  kw = dict(patch_size=4, mean=(0.5,), std=(0.5,), norm_pix_loss=True)
  for mode, leaks in (("visible", False), ("normalized", False), ("target", True)):
    a, b = vis.panels(images, pred, mask, mode=mode, **kw), vis.panels(changed, pred, mask, mode=mode, **kw)
    assert not np.allclose(a[0], b[0])  # the original row shows the change
    np.testing.assert_array_equal(a[1], b[1])  # the masked input hides it
    assert np.allclose(a[2], b[2]) != leaks, mode
  picture, caption = vis.render(images, pred, mask, **kw)
  assert picture.dtype == np.uint8 and picture.ndim == 3 and "VISIBLE" in caption


def test_visualize_tool_writes_a_png(tmp_path, monkeypatch):
  from conftest import ROOT, load_config
  spec = importlib.util.spec_from_file_location("tools_visualize", f"{ROOT}/tools/visualize.py")
  tools_visualize = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tools_visualize)
  monkeypatch.chdir(ROOT)
  from papers_jax.tasks.mae import MAETask
  config = load_config("mae/digits.py", "stage=pretrain,smoke")
  model = filled(nnx.eval_shape(lambda: MAETask(config).build_model(FixedKeyRngs())))
  convert.save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), str(tmp_path / "ckpt"))
  out = str(tmp_path / "r.png")
  assert tools_visualize.main(["mae", "--config", "configs/mae/digits.py:stage=pretrain,smoke",
                               "--checkpoint", str(tmp_path / "ckpt"), "--out", out, "--examples", "3"]) == 0
  from PIL import Image
  assert Image.open(out).size[0] > 3 * 16


def test_linear_probe_after_eval_fits_the_frozen_class_token_features():
  """`mae.linear_probe`: eval/linear_top1 is evaluators/linear_probe on the encoder's features of the
  train split (its first knn_max_train examples: 64 in smoke), tested on the eval split (what the MAE
  size × mask-ratio sweep reports)."""
  from conftest import load_config
  from papers_jax.core import loop, sharding
  from papers_jax.evaluators import features, linear_probe
  config = load_config("mae/digits.py", "stage=pretrain,smoke").unlock()
  config.mae.update(knn=False, linear_probe=True, vis_examples=0)
  trainer = loop.Trainer(config.lock(), "/nonexistent-workdir-unused", devices=jax.devices()[:2])
  out = trainer.task.after_eval(trainer, 0, None)
  assert set(out) == {"eval/linear_top1"}
  encode = trainer.task._fn(trainer, "encode")
  apply = lambda images: encode(trainer.state.params, trainer.state.model_state, images)  # noqa: E731
  fn = trainer.task.preprocess(train=False)
  with sharding.use_mesh(trainer.mesh, trainer.rules):
    train = features.extract(apply, trainer.train_source, fn, batch_size=64, max_examples=config.mae.knn_max_train)
    test = features.extract(apply, trainer.eval_source, fn, batch_size=64)
  expected = linear_probe.fit_and_evaluate(*train, *test)["linear_probe_top1"]
  assert out["eval/linear_top1"] == pytest.approx(expected) and out["eval/linear_top1"] > 0.2  # chance: 0.1
