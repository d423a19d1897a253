"""Sharding rules from the config, and the start-up report of large parameters left replicated."""

import logging
import math

import pytest

from conftest import load_config
from papers_jax.core import config as config_lib
from papers_jax.core import loop, sharding
from papers_jax.errors import ConfigError


def _config(**overrides):
  config = load_config("vit/digits.py", "smoke").unlock()
  for key, value in overrides.items():
    config_lib.set_path(config, key, value)
  return config.lock()


def test_the_config_table_is_the_default_rules_and_parses_back():
  table = config_lib.base_config().sharding_rules
  assert dict(sharding.rules_from_config(table)) == dict(sharding.DEFAULT_RULES)
  rules = dict(sharding.rules_from_config(dict(table) | {"mlp": "fsdp,tensor", "embed": ""}))
  assert rules["mlp"] == ("fsdp", "tensor") and rules["embed"] is None
  with pytest.raises(ConfigError, match="sharding_rules.mlp"):
    sharding.rules_from_config(dict(table) | {"mlp": "model"})
  with pytest.raises(ConfigError, match="no rule for"):
    sharding.rules_from_config({k: v for k, v in table.items() if k != "embed"})


def test_a_config_override_changes_the_parameter_shardings(caplog):
  mesh = {"mesh.data": 2, "mesh.fsdp": 4}
  default = loop.Trainer(_config(**mesh), "/nonexistent-workdir-unused")
  changed = loop.Trainer(_config(**mesh, **{"sharding_rules.embed": "", "sharding_rules.mlp": "fsdp"}),
                         "/nonexistent-workdir-unused")
  fc1 = lambda t: t.shardings.params["blocks"][0]["mlp"]["fc1"]["kernel"].spec  # noqa: E731  (embed, mlp)
  assert tuple(fc1(default)) == ("fsdp", None)
  assert tuple(fc1(changed)) == (None, "fsdp")


def test_large_parameters_left_replicated_are_reported_at_start_up(caplog):
  # embed_dim 36 does not divide over fsdp=8: every (embed, ...) kernel stays replicated along it.
  config = _config(**{"mesh.data": 1, "mesh.fsdp": 8, "model.embed_dim": 36, "model.num_heads": 4,
                      "replicated_report_min_size": 1000})
  with caplog.at_level(logging.WARNING, logger="papers_jax.core.loop"):
    trainer = loop.Trainer(config, "/nonexistent-workdir-unused")
  rows = {(r["param"], r["dim"]) for r in trainer.replicated}
  assert ("blocks/0/mlp/fc1/kernel", 0) in rows  # (36, 72): 36 % 8 != 0
  assert all(r["shape"][r["dim"]] % 8 for r in trainer.replicated)
  assert all(r["mesh_axes"] == "fsdp" for r in trainer.replicated)
  assert "blocks/0/mlp/fc1/kernel (36, 72): dim 0 (embed, size 36) is not divisible" in caplog.text
  # Small parameters are below the threshold, and a mesh that divides everything reports nothing.
  assert all(math.prod(r["shape"]) >= 1000 for r in trainer.replicated)
  assert loop.Trainer(_config(**{"mesh.data": 1, "mesh.fsdp": 8, "replicated_report_min_size": 1000}),
                      "/nonexistent-workdir-unused").replicated == []
