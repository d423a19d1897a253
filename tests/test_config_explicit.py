"""No silent defaults: every shipped config states its optimizer's clipping, weight-decay exclusions
and schedule itself, and its docstring lists its departures from the paper.

Each config is loaded with `base_config()` replaced by one whose clipping, exclusions and schedule
are sentinels, so a setting that a config inherits instead of setting shows up as the sentinel.
"""

import ast
import glob
import os

import pytest

from conftest import ROOT
from papers_jax.core import config as config_lib
from papers_jax.errors import ConfigError

CONFIGS = sorted(os.path.relpath(p, os.path.join(ROOT, "configs"))
                 for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if not os.path.relpath(p, os.path.join(ROOT, "configs")).startswith("sweeps" + os.sep))  # sweep files
INHERITED = "<inherited from base_config>"


def sentinel_base_config(original):
  def base_config():
    c = original()
    c.optimizer.clip_grad_norm = -1.0
    c.optimizer.wd_exclude = (INHERITED,)
    c.schedule.name = INHERITED
    return c
  return base_config


def inherited(config) -> list:
  return [name for name, value in [("optimizer.clip_grad_norm", config.optimizer.clip_grad_norm < 0),
                                   ("optimizer.wd_exclude", INHERITED in tuple(config.optimizer.wd_exclude)),
                                   ("schedule.name", config.schedule.name == INHERITED)] if value]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_sets_clipping_weight_decay_exclusions_and_schedule_itself(name, monkeypatch):
  """The default experiment and each of its `smoke` / `digits` variants that the config takes."""
  monkeypatch.setattr(config_lib, "base_config", sentinel_base_config(config_lib.base_config))
  path = os.path.join(ROOT, "configs", name)
  found = {}
  for arg in (None, "smoke", "digits"):
    try:
      config = config_lib.load(path + (f":{arg}" if arg else ""))
    except ConfigError as e:
      if arg and "unknown config argument" in str(e):
        continue
      raise
    if missing := inherited(config):
      found[f"configs/{name}:{arg or ''}"] = missing
  assert not found, f"set these in the config itself (and state them in its docstring): {found}"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_docstring_lists_departures_from_the_paper(name):
  doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, "configs", name)).read())) or ""
  assert "Departures from the paper" in doc, f"configs/{name}: its docstring needs a 'Departures from the paper' list"


def test_base_config_does_not_clip():
  assert config_lib.base_config().optimizer.clip_grad_norm == 0.0
