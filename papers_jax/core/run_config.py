"""The config record of a workdir: config.json, its history, and what a resume may change.

Every start writes `config.json` (the config and the environment of that run); the one it replaces
is kept as `config.<n>.json` (n = 1, 2, ... in the order of the runs), so a workdir holds the record
of every run that wrote to it.

A resume continues the data order and the schedule where the checkpoint left them, so the keys
that decide those must not change silently. Resuming with another value of one of RESUME_KEYS
stops the run (ConfigError) unless the key is named in `allow_config_change`, which is recorded in
the new config.json with the rest. Other keys (mesh, logging, checkpointing, eval, optimizer
settings) may change freely; a change of the model or optimizer *structure* is caught by the
checkpoint's own shape check (core/checkpoint.py).
"""

import json
import logging
import os
import re
import shutil

from papers_jax.errors import ConfigError

log = logging.getLogger(__name__)

# Keys (or whole sections) that change the order of the examples or what a step means.
RESUME_KEYS = ("seed", "batch_size", "grad_accum_steps", "num_steps", "num_epochs", "data", "schedule")


def _is_resume_key(key: str) -> bool:
  """RESUME_KEYS, and each optimizer phase's schedule (`phases.<name>.schedule...`, core/optim.py)."""
  return _covers(RESUME_KEYS, key) or bool(re.match(r"phases\.[^.]+\.schedule(\.|$)", key))


def as_json(config) -> dict:
  """The config as config.json holds it (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict(), default=str))


def flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out |= flatten(v, f"{prefix}{k}.")
    else:
      out[f"{prefix}{k}"] = v
  return out


def _covers(names, key: str) -> bool:
  return any(key == n or key.startswith(n + ".") for n in names)


def allowed_changes(config) -> tuple[str, ...]:
  """The names in `allow_config_change`; each must name a key or a section of the config."""
  names = tuple(n.strip() for n in str(config.get("allow_config_change", "") or "").split(",") if n.strip())
  keys = flatten(as_json(config))
  unknown = [n for n in names if not any(k == n or k.startswith(n + ".") for k in keys)]
  if unknown:
    raise ConfigError(f"allow_config_change names {unknown}, which are not config keys; give comma-separated "
                      "keys such as batch_size,data.data_dir.")
  return names


def _history(workdir: str) -> list[tuple[int, str]]:
  found = []
  for name in os.listdir(workdir) if os.path.isdir(workdir) else ():
    m = re.fullmatch(r"config\.(\d+)\.json", name)
    if m:
      found.append((int(m.group(1)), os.path.join(workdir, name)))
  return sorted(found)


def previous_config(workdir: str) -> tuple[dict | None, str | None]:
  """(config dict, path) of the last run recorded in the workdir, or (None, None)."""
  candidates = [os.path.join(workdir, "config.json")] + [p for _, p in reversed(_history(workdir))]
  for path in candidates:
    try:
      with open(path) as f:
        return json.load(f)["config"], path
    except FileNotFoundError:
      continue
    except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable: try the one before
      log.warning("cannot read %s (%s); using the run record before it", path, e)
  return None, None


def check_resume(config, workdir: str, step: int) -> None:
  """Stops a resume at `step` whose RESUME_KEYS differ from the last run's, unless allowed."""
  allowed = allowed_changes(config)
  old, path = previous_config(workdir)
  if old is None:
    log.warning("resuming from step %d of %s, which has no config.json: whether %s match the run that wrote it "
                "cannot be checked", step, workdir, ", ".join(RESUME_KEYS))
    return
  old, new = flatten(old), flatten(as_json(config))
  changed = [(k, old[k], new[k]) for k in sorted(new)
             if _is_resume_key(k) and k in old and old[k] != new[k] and not _covers(allowed, k)]
  if not changed:
    return
  listed = ", ".join(f"{k} {old_v!r} → {new_v!r}" for k, old_v, new_v in changed)
  names = ",".join(sorted({k for k, _, _ in changed} | set(allowed)))
  raise ConfigError(
      f"resuming from step {step} in {workdir} with settings that change the data order or the meaning of a step: "
      f"{listed} (the earlier run's values are in {path}). Rerun with the earlier values, use a new --workdir, or "
      f"accept the change with --config.allow_config_change={names} (it is recorded in config.json).")


def write(workdir: str, record: dict, write_json) -> None:
  """Writes config.json, keeping the one it replaces as config.<n>.json (never a moment without one)."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    history = _history(workdir)
    n = history[-1][0] + 1 if history else 1
    shutil.copyfile(path, os.path.join(workdir, f"config.{n}.json"))
  write_json(path, record)
