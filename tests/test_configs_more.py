"""The other half of the shipped configs' smoke runs (tests/test_configs.py has the first half and the
checks): a file of its own, so that `make test`'s two workers share the runs."""

import pytest

from test_configs import SMOKE_THERE, run_smoke


@pytest.mark.parametrize("name", SMOKE_THERE)
def test_config_smoke_run(name, tmp_path):
  run_smoke(name, tmp_path)
