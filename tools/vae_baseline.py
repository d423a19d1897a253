"""The trivial baseline of a Bernoulli VAE config: independent per-pixel Bernoullis with the training means.

  PYTHONPATH=. python tools/vae_baseline.py --config configs/vae/digits.py

Reads the config's train and eval splits through the VAE task's own preprocessing and binarisation, fits
p_i = mean of pixel i over the training images (clipped to [1/(2N), 1 − 1/(2N)] so that no test pixel costs
an infinite NLL), and prints the test NLL in nats per image and bits per dimension: the number a VAE's
test NLL (eval/nll_iwae, eval/bpd) must beat.
"""

import argparse
import json
import math

import numpy as np

from papers_jax.core import config as config_lib
from papers_jax.data.sources import get_source
from papers_jax.tasks.vae import VAETask


def binary_images(task, source) -> np.ndarray:
  fn = task.preprocess(train=False)
  images = np.stack([fn(dict(source[i]), None)["image"] for i in range(len(source))]).astype(np.float32)
  return (images / 255.0 > float(task.vae.binarize_threshold)).astype(np.float64).reshape(len(images), -1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  args = parser.parse_args()
  config = config_lib.load(args.config)
  task = VAETask(config)
  if task.likelihood != "bernoulli":
    raise SystemExit("this baseline is for Bernoulli (binarised) configs")
  train = binary_images(task, get_source(config.data, config.data.train_split))
  test = binary_images(task, get_source(config.data, config.data.eval_split))
  eps = 1.0 / (2 * len(train))
  p = np.clip(train.mean(0), eps, 1 - eps)
  nll = -(test * np.log(p) + (1 - test) * np.log(1 - p)).sum(1).mean()
  dims = test.shape[1]
  print(json.dumps({"baseline": "independent Bernoulli per pixel (training means)", "test_images": len(test),
                    "nll_nats": float(nll), "bpd": float(nll / (dims * math.log(2)))}))


if __name__ == "__main__":
  main()
