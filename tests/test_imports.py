"""What a training process imports: no PyTorch-side package at run time (torch, timm, transformers and diffusers are
the test / convert extra), and no heavy module that only one family needs at call time. Every process pays for what
`papers_jax.models` imports: scipy.signal at import time once cost each process 1.2 s of start-up (docs/testing.md)."""

import subprocess
import sys

from conftest import ROOT

NOT_AT_IMPORT = ("torch", "timm", "transformers", "diffusers", "tensorflow", "scipy.signal", "sklearn", "skimage")


def test_the_trainer_and_every_model_and_task_import_without_torch_or_heavy_extras():
  code = ("import sys, papers_jax.main, papers_jax.models, papers_jax.tasks, papers_jax.core.loop; "
          f"print(','.join(m for m in {NOT_AT_IMPORT!r} if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
