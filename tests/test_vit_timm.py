"""ViT against timm: parameter counts, logits parity, weight conversion and the converter CLI."""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
  pytest.skip("timm is not installed", allow_module_level=True)

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import safetensors.numpy  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from papers_jax import convert, models  # noqa: E402
from papers_jax.convert.torch_compat import import_timm  # noqa: E402
from papers_jax.errors import CheckpointError  # noqa: E402

from timm_parity import FixedKeyRngs, abstract, num_params  # noqa: E402,F401

timm = import_timm()
pytestmark = pytest.mark.torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4


def random_timm(name, seed=0, **kwargs):
  """A timm model in eval mode with random values in EVERY tensor: N(0, 0.02), LayerNorm scales 1 + N(0, 0.02).

  timm's own init leaves biases at 0 and LayerNorms at (1, 0), so a converter that dropped them
  would still match it. Built on the meta device: timm's init would be overwritten anyway.
  """
  with torch.device("meta"):
    model = timm.create_model(name, pretrained=False, **kwargs)
  assert not list(model.buffers())
  model = model.to_empty(device="cpu").eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in model.named_parameters():
      base = 1.0 if "norm" in key and key.endswith(".weight") else 0.0
      p.copy_(base + 0.02 * torch.randn(p.shape, generator=generator))
  return model


def numpy_state_dict(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def images(size, seed=0):
  return np.random.RandomState(seed).randn(2, size, size, 3).astype(np.float32)


def timm_logits(model, x):
  with torch.no_grad():
    return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


@nnx.jit
def _logits(model, x):
  return model(x)


def our_logits(model, x):
  with jax.default_matmul_precision("highest"):
    return np.asarray(_logits(model, x))


def modified(model, path, fn):
  """A copy of `model` whose param at '/'-joined `path` is fn(value)."""
  model = nnx.clone(model)
  *parents, leaf = path.split("/")
  node = model
  for k in parents:
    node = node[int(k)] if k.isdigit() else getattr(node, k)
  var = getattr(node, leaf)
  var[...] = fn(np.asarray(var[...]))
  return model


def load_ours(name, state_dict, **overrides):
  model = abstract(name, **overrides)
  report = convert.load_torch_weights(model, state_dict, "timm")
  model.eval()
  return model, report


# --------------------------------------------------------------------------- param counts


@pytest.mark.parametrize("name", models.list_models("vit_*"))
def test_param_count_matches_timm(name):
  assert name in timm.list_models(name), f"{name} is not a timm model"
  with torch.device("meta"):
    ref = timm.create_model(name, pretrained=False)
  ours = abstract(name)  # registered defaults, head included, must equal timm's
  assert models.model_config(name).get("num_classes", 1000) == ref.num_classes
  assert num_params(ours) == sum(p.numel() for p in ref.parameters())


# ------------------------------------------------------------------------- logits parity


@pytest.fixture(scope="module")
def tiny():
  """A randomised timm vit_tiny_patch16_224 (1000 classes), its numpy state dict and our converted copy."""
  ref = random_timm("vit_tiny_patch16_224")
  sd = numpy_state_dict(ref)
  ours, report = load_ours("vit_tiny_patch16_224", sd)
  return ref, sd, ours, report


def test_tiny_default_head_logits(tiny):
  ref, _, ours, report = tiny
  assert not (report.missing or report.unexpected or report.mismatched or report.resized)
  assert len(report.loaded) == len(report.ours) == 152
  x = images(224)
  want, got = timm_logits(ref, x), our_logits(ours, x)
  assert got.shape == (2, 1000)
  diff = np.abs(got - want).max()
  print(f"vit_tiny_patch16_224 max-abs {diff:.2e}")
  assert diff < TOL
  # The test sees dropped tensors: resetting any one of these to timm's init moves the logits far beyond TOL.
  for path in ("cls_token", "blocks/0/norm1/bias", "blocks/5/attn/qkv/bias", "blocks/11/mlp/fc2/bias", "norm/scale"):
    reset = np.ones_like if path.endswith("scale") else np.zeros_like
    assert np.abs(our_logits(modified(ours, path, reset), x) - want).max() > 100 * TOL, path


@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_patch16_224", dict(global_pool="avg", num_classes=10)),  # fc_norm instead of norm
    ("vit_tiny_patch16_384", dict(num_classes=10)),
])
def test_logits_match_timm(name, kwargs):
  ref = random_timm(name, seed=1, **kwargs)
  ours, report = load_ours(name, numpy_state_dict(ref), **kwargs)
  assert not (report.missing or report.unexpected or report.mismatched)
  if kwargs.get("global_pool") == "avg":
    assert ours.norm is None and ours.fc_norm is not None
    assert "fc_norm/bias" in report.loaded
  x = images(ours.patch_embed.img_size[0], seed=1)
  diff = np.abs(our_logits(ours, x) - timm_logits(ref, x)).max()
  print(f"{name} {kwargs} max-abs {diff:.2e}")
  assert diff < TOL


def test_224_checkpoint_at_another_resolution(tiny):
  ref224, sd, _, _ = tiny
  img_size, grid = 160, 10
  ours, report = load_ours("vit_tiny_patch16_224", sd, img_size=img_size)
  assert report.resized == ["pos_embed"] and not report.mismatched
  assert "resized  pos_embed (1, 197, 192) -> (1, 101, 192)" in str(report)
  with torch.device("meta"):
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size)
  sd_t = dict(ref224.state_dict())
  sd_t["pos_embed"] = timm.layers.resample_abs_pos_embed(sd_t["pos_embed"], (grid, grid), num_prefix_tokens=1)
  ref.load_state_dict(sd_t, assign=True)
  x = images(img_size, seed=2)
  diff = np.abs(our_logits(ours, x) - timm_logits(ref.eval(), x)).max()
  print(f"vit_tiny_patch16_224 @ {img_size} max-abs {diff:.2e}")
  assert diff < TOL


# ----------------------------------------------------------------------------- strictness


def _load_error(sd, **kwargs) -> str:
  with pytest.raises(CheckpointError) as e:
    convert.load_torch_weights(abstract("vit_tiny_patch16_224"), sd, "timm", **kwargs)
  return str(e.value)


def test_strict_unexpected_key(tiny):
  sd = dict(tiny[1], **{"foo.bar": np.zeros(10, np.float32)})
  assert "unexpected  foo.bar (10,)" in _load_error(sd)
  report = convert.load_torch_weights(abstract("vit_tiny_patch16_224"), sd, "timm", allow_unexpected=(r"^foo\.",))
  assert report.unexpected == ["foo.bar"] and len(report.loaded) == 152


def test_strict_missing_key(tiny):
  sd = dict(tiny[1])
  del sd["blocks.3.attn.qkv.weight"]
  message = _load_error(sd)
  assert "missing  blocks/3/attn/qkv/kernel (192, 3, 3, 64)" in message
  assert "blocks/4" not in message


def test_strict_wrong_shape(tiny):
  sd = dict(tiny[1], **{"head.weight": np.zeros((5, 192), np.float32), "head.bias": np.zeros(5, np.float32)})
  message = _load_error(sd)
  assert "shape  head/kernel ours (192, 1000) theirs (192, 5)" in message
  assert "shape  head/bias ours (1000,) theirs (5,)" in message
  # An abstract model cannot leave params at init, even when they are allowed to be missing.
  assert "abstractly" in _load_error(sd, allow_missing=("^head/",))


def test_load_state_dict_files(tiny, tmp_path):
  sd = tiny[1]
  path = str(tmp_path / "w.safetensors")
  safetensors.numpy.save_file(sd, path)
  loaded = convert.load_state_dict(path)
  assert sorted(loaded) == sorted(sd) and np.array_equal(loaded["pos_embed"], sd["pos_embed"])
  path = str(tmp_path / "w.pth")
  torch.save({"model": tiny[0].state_dict(), "epoch": 3}, path)
  loaded = convert.load_state_dict(path)
  assert sorted(loaded) == sorted(sd) and np.array_equal(loaded["head.bias"].numpy(), sd["head.bias"])
  (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
  for bad in (tmp_path / "bad.safetensors", tmp_path / "none.pth", tmp_path / "w.txt"):
    with pytest.raises(CheckpointError):
      convert.load_state_dict(str(bad))


# ------------------------------------------------------------------- CLI and init_from


def _cli():
  spec = importlib.util.spec_from_file_location("convert_weights", os.path.join(ROOT, "tools", "convert_weights.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _replicated(params):
  """Params on all devices: replicated, and one kernel sharded, to check shardings survive."""
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  params = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P())), params)
  fc1 = params["blocks"][0]["mlp"]["fc1"]
  fc1["kernel"] = jax.device_put(fc1["kernel"], NamedSharding(mesh, P(None, "data")))
  return params


def _params(model):
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_cli_and_init_params_from_checkpoint(tmp_path, capsys):
  cli, out = _cli(), str(tmp_path / "ckpt")
  argv = ["--random-timm", "--model", "vit_tiny_patch16_224", "--out", out, "--img-size", "160", "--num-classes", "10"]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "resized  pos_embed (1, 197, 192) -> (1, 101, 192)" in printed and "head/kernel" in printed

  # The checkpoint holds the timm weights (seed 0) converted, the head at init.
  written = ocp.StandardCheckpointer().restore(out)["params"]
  torch.manual_seed(0)
  ref = timm.create_model("vit_tiny_patch16_224", pretrained=False)
  np.testing.assert_array_equal(np.asarray(written["blocks"]["2"]["attn"]["qkv"]["kernel"]),
                                ref.blocks[2].attn.qkv.weight.detach().numpy().T.reshape(192, 3, 3, 64))
  assert np.asarray(written["head"]["kernel"]).shape == (192, 10)

  fresh = _replicated(_params(models.create("vit_tiny_patch16_224", img_size=160, num_classes=10, rngs=1)))
  params, report = convert.init_params_from_checkpoint(out, fresh)
  assert "loaded 152/152" in report
  flat_new, flat_fresh = convert._flatten(params), convert._flatten(fresh)
  flat_written = convert._flatten(written)
  assert sorted(flat_new) == sorted(flat_written)
  for key, value in flat_new.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_written[key]), err_msg=key)
    assert value.sharding == flat_fresh[key].sharding, key
  assert isinstance(params["blocks"][0]["mlp"]["fc1"]["kernel"], jax.Array)  # int keys kept

  # Another grid and head: pos_embed resampled, head skipped (fresh init); without skip, an error.
  # Only shapes and shardings of the current params matter: the 224 / 5-class ones are made by hand.
  fresh = dict(fresh, pos_embed=jax.numpy.zeros((1, 197, 192)),
               head=dict(kernel=jax.numpy.ones((192, 5)), bias=jax.numpy.ones(5)))
  params, report = convert.init_params_from_checkpoint(out, fresh)
  assert "resized  pos_embed (1, 101, 192) -> (1, 197, 192)" in report
  assert "shape  head/kernel ours (192, 5) theirs (192, 10)" in report
  np.testing.assert_array_equal(params["head"]["kernel"], fresh["head"]["kernel"])
  assert params["pos_embed"].shape == (1, 197, 192)
  with pytest.raises(CheckpointError, match="head/kernel"):
    convert.init_params_from_checkpoint(out, fresh, skip=())

  # User errors: exit code 2 and one line; missing or non-orbax paths name the fix.
  assert cli.main(["--checkpoint", str(tmp_path / "none.safetensors"), "--model", "vit_tiny_patch16_224",
                   "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error:") and len(err.strip().splitlines()) == 1
  with pytest.raises(CheckpointError, match="convert_weights.py"):
    convert.init_params_from_checkpoint(str(tmp_path / "none"), fresh)
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "file.txt").write_text("junk")
  with pytest.raises(CheckpointError, match="convert_weights.py"):
    convert.init_params_from_checkpoint(str(tmp_path / "junk"), fresh)
