"""Every shipped config runs end to end in `smoke` mode.

Configs whose dataset must be prepared with TFDS (cifar10, imagenet2012) run on a generated image
folder standing in for it, so the test needs no download; the config, model, optimizer and
pipeline are the shipped ones.
"""

import glob
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_config
from papers_jax.core import config as config_lib, loop
from papers_jax.errors import ConfigError

CONFIGS = sorted(os.path.relpath(p, os.path.join(ROOT, "configs"))
                 for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if not os.path.relpath(p, os.path.join(ROOT, "configs")).startswith("sweeps" + os.sep))  # sweep files


def make_image_folder(root, num_classes: int, size: int, channels: int = 3, per_class: int = 2):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for label in range(num_classes):
      os.makedirs(os.path.join(root, split, f"class_{label:03d}"), exist_ok=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, f"class_{label:03d}", f"{i}.png"))
  return root


def test_every_config_is_listed():
  assert {"vit/digits.py", "vit/cifar10.py", "vit/imagenet.py"} <= set(CONFIGS)


def test_load_takes_path_and_argument_and_names_a_bad_file(tmp_path):
  config = config_lib.load(os.path.join(ROOT, "configs", "vit", "imagenet.py") + ":variant=S/16")
  assert (config.model.name, config.data.image_size) == ("vit_small_patch16_224", 224)
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load(str(tmp_path / "missing.py"))
  (tmp_path / "empty.py").write_text("x = 1\n")
  with pytest.raises(ConfigError, match="no get_config"):
    config_lib.load(str(tmp_path / "empty.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_smoke_run(name, tmp_path):
  config = load_config(name, "smoke").unlock()
  if config.data.name.startswith("tfds:"):
    config.data.name = "folder"
    config.data.data_dir = make_image_folder(str(tmp_path / "data"), num_classes=4,
                                             size=config.data.image_size + 8)
    config.data.train_split, config.data.eval_split = "train", "test"
  summary = loop.train(config.lock(), str(tmp_path / "run"))
  assert summary["steps"] == config.num_steps
  rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
  assert summary["eval/count"] > 0
