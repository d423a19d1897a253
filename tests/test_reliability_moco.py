"""The kill -9 matrix (tests/killmatrix.py) for a task with extra state: MoCo v2's momentum encoder
and queue. A file of its own so that `make test` (pytest -n 2 --dist loadfile) runs it beside
test_reliability.py's classification matrix."""

import os

import pytest

import killmatrix


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference_moco_v2"))
  killmatrix.run("moco_v2", workdir)
  return workdir


@pytest.mark.skipif(not os.environ.get("PAPERS_JAX_FULL_PARITY"), reason="make test-full: 45 s; the generic "
                    "kill matrix (tests/test_reliability.py) runs in make test")
def test_kill_9_in_every_phase_then_resume_equals_an_uninterrupted_run(reference, tmp_path):
  killmatrix.kill_in_every_phase("moco_v2", reference, str(tmp_path / "killed"))


@pytest.mark.skipif(not killmatrix.SOAK, reason="the seeded soak runs with PAPERS_JAX_SOAK=1")
def test_soak_random_kills(reference, tmp_path):
  killmatrix.soak("moco_v2", reference, str(tmp_path))
