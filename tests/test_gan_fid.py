"""The GAN task scores samples of a generator at another size than its own (`gan.fid_image_size`): resized as
the data pipeline resizes the real digits, so native 8×8 samples are scored exactly as the 16×16 digits are."""

import ml_collections
import numpy as np

from papers_jax.evaluators import fid as fid_lib
from papers_jax.tasks import gan as gan_lib


def test_gan_scores_8px_samples_resized_like_the_16px_digits(monkeypatch):
  config = ml_collections.ConfigDict({
      "task": "gan", "data": {"name": "digits", "image_size": 8}, "model": {"z_dim": 4},
      "gan": {"generator_loss": "non_saturating", "vis_examples": 0, "sample_seed": 0, "fid_samples": 50,
              "fid_image_size": 16}})
  task = gan_lib.GANTask(config)
  real8, _ = fid_lib.digits_images("test", 8)
  real16, _ = fid_lib.digits_images("test", 16)
  scored = []
  monkeypatch.setattr(task, "sample", lambda trainer, n: real8[:n] / 255.0)
  monkeypatch.setattr(gan_lib.fid_lib, "digits_sample_metrics",
                      lambda samples, size, seed: scored.append((samples, size)) or {"fid": 0.0})
  assert task.after_eval(None, 1, None, None, {}) == {"fid": 0.0}
  (samples, size), = scored
  assert size == 16
  np.testing.assert_array_equal(samples, real16[:50])  # the test digits as the 16×16 pipeline gives them
