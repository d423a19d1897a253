"""Preprocessing defaults on registered model names (timm's pretrained_cfg): every image model has them,
they are the source checkpoints' (timm, HF), runs default to them and `predict --model` uses them."""

import importlib.util
import json

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from papers_jax import cli, convert, models
from papers_jax.core import config as config_lib
from papers_jax.data import preprocess
from papers_jax.errors import ConfigError
from papers_jax.models import registry
from papers_jax.models.pretrained import CHECKPOINTS
from papers_jax.models.vit import VisionTransformer


def _image_models():
  """Names whose constructor takes an image size: the image models."""
  return [n for n in models.list_models() if "img_size" in registry._parameters(registry.model_class(n))[0]]


def test_every_image_model_has_preprocessing_and_text_models_none():
  image = _image_models()
  assert len(image) > 50
  for name in models.list_models():
    p = models.preprocessing(name)
    if name not in image:
      assert p is None, name
      continue
    assert p is not None, name
    img_size = models.model_config(name).get("img_size", registry._parameters(registry.model_class(name))[0]
                                             ["img_size"].default)
    assert p.img_size == img_size or img_size is None, name  # None: any size (ResNet)
    # One value for every channel (a two-stream temporal net's 2L flow channels), or one per colour channel.
    assert len(p.mean) == len(p.std) in (1, 3) and 0 < p.crop_pct <= 1 and p.interpolation in preprocess.INTERPOLATIONS
  with pytest.raises(ConfigError, match="unknown model name"):
    models.preprocessing("vit_nonexistent")


def _torch_libraries():
  pytest.importorskip("torch")
  if importlib.util.find_spec("timm") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip("timm / transformers are not installed")
  from papers_jax.convert.torch_compat import import_timm
  return import_timm()


def _assert_same(p, size, mean, std, crop_pct, interpolation, what):
  assert (p.img_size, p.crop_pct, p.interpolation) == (size, crop_pct, interpolation), what
  np.testing.assert_allclose(p.mean, mean, rtol=0, atol=1e-9, err_msg=what)
  np.testing.assert_allclose(p.std, std, rtol=0, atol=1e-9, err_msg=what)


@pytest.mark.torch
def test_timm_names_equal_timm_pretrained_cfg():
  """Each timm name's defaults are timm's pretrained_cfg of the checkpoint `pretrained=True` loads (its
  default tag when it has none); the MAE names' are timm's of the same released encoders."""
  timm = _torch_libraries()
  from timm.models import get_pretrained_cfg
  checked = 0
  for name in _image_models():
    if name.startswith("mae_vit_"):  # the released MAE encoders, as timm ships them
      width, patch = name.split("_")[2], name.split("_")[3]
      tag = f"vit_{width}_{patch}_224.mae"
    elif timm.is_model(name):
      source, repo = CHECKPOINTS.get(name, (None, ""))[:2]
      tag = repo.split("/", 1)[1] if source == "timm" else name
    else:
      continue
    cfg = get_pretrained_cfg(tag)
    assert cfg.input_size[1] == cfg.input_size[2]
    _assert_same(models.preprocessing(name), cfg.input_size[1], cfg.mean, cfg.std, cfg.crop_pct, cfg.interpolation,
                 tag)
    checked += 1
  assert checked >= 45


@pytest.mark.torch
def test_clip_names_equal_hf_clip_processor():
  """OpenAI's preprocessing, as HF's CLIPImageProcessor does it: shorter side to 224 (bicubic), 224 crop."""
  _torch_libraries()
  from transformers import CLIPImageProcessor
  hf = CLIPImageProcessor()
  assert hf.do_center_crop and hf.crop_size["height"] == hf.crop_size["width"]
  crop_pct = hf.crop_size["height"] / hf.size["shortest_edge"]
  interpolation = {Image.BICUBIC: "bicubic", Image.BILINEAR: "bilinear"}[hf.resample]
  for name in models.list_models("clip_*"):
    _assert_same(models.preprocessing(name), hf.crop_size["height"], hf.image_mean, hf.image_std, crop_pct,
                 interpolation, name)


def test_runs_default_to_the_model_names_preprocessing():
  config = config_lib.load("configs/swin/imagenet.py:smoke").unlock()
  assert config.data.mean is None  # left to the model name
  p = models.preprocessing(config.model.name)
  assert config_lib.image_preprocessing(config) == (p.mean, p.std, 0.875)  # the config's crop_pct wins
  config.data.crop_pct = None
  config.data.mean = (0.25, 0.5, 0.75)
  assert config_lib.image_preprocessing(config) == ((0.25, 0.5, 0.75), p.std, p.crop_pct)
  config_lib.resolve_image_preprocessing(config)
  assert (config.data.mean, config.data.std, config.data.crop_pct) == ((0.25, 0.5, 0.75), p.std, p.crop_pct)
  # One-channel images cannot take a three-channel default: the config must say.
  config = config_lib.load("configs/vit/digits.py:smoke").unlock()
  config.data.mean = None
  with pytest.raises(ConfigError, match="in_chans=1"):
    config_lib.image_preprocessing(config)


@pytest.fixture
def tiny_name():
  """A tiny registered ViT whose preprocessing differs from every default in each field."""
  name = "test_tiny_vit_preprocessing"
  p = models.Preprocessing(16, (0.2, 0.4, 0.6), (0.3, 0.2, 0.1), crop_pct=0.5, interpolation="bilinear")
  registry.register(name, VisionTransformer, img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                    num_classes=5, preprocessing=p)
  yield name, p
  registry._REGISTRY.pop(name)
  registry._PREPROCESSING.pop(name)


def test_predict_with_a_model_name_preprocesses_as_the_name_says(tiny_name, tmp_path, capsys):
  name, p = tiny_name
  model = models.create(name, rngs=nnx.Rngs(params=3))
  params = nnx.state(model, nnx.Param)
  head = params["head"]["kernel"]
  head[...] = np.random.RandomState(0).randn(*head[...].shape).astype(np.float32)  # not the zero init
  convert.save_params(nnx.to_pure_dict(params), str(tmp_path / "params"))
  rng = np.random.RandomState(1)
  paths = []
  for i in range(3):
    paths.append(str(tmp_path / f"photo{i}.png"))
    Image.fromarray(rng.randint(0, 256, (40, 56, 3), np.uint8)).save(paths[-1])
  assert cli.main(["predict", "--model", name, "--checkpoint", str(tmp_path / "params"), *paths, "--top-k", "5"]) == 0
  out = json.loads(capsys.readouterr().out)
  nnx.update(model, params)

  def probabilities(size, crop_pct, interpolation, mean, std):
    images = np.stack([preprocess.resize_shorter_then_center_crop(np.asarray(Image.open(path)), size, crop_pct,
                                                                  interpolation) for path in paths])
    x = (images.astype(np.float32) / 255 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    logits = np.asarray(model(x, train=False), np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  expected = probabilities(p.img_size, p.crop_pct, p.interpolation, p.mean, p.std)
  got = np.zeros_like(expected)
  for row, o in zip(got, out):
    for t in o["top"]:
      row[t["index"]] = t["probability"]
  np.testing.assert_allclose(got, expected, atol=1e-5)
  # Any other crop, interpolation or normalisation gives other probabilities: the test sees each field.
  for other in ((16, 0.875, "bilinear", p.mean, p.std), (16, 0.5, "bicubic", p.mean, p.std),
                (16, 0.5, "bilinear", (0.5,) * 3, p.std), (16, 0.5, "bilinear", p.mean, (0.5,) * 3)):
    assert np.abs(probabilities(*other) - expected).max() > 1e-4, other
  assert cli.main(["predict", "--model", "gpt2", "--checkpoint", str(tmp_path / "params"), *paths]) == 2
  assert "not an image model" in capsys.readouterr().err
