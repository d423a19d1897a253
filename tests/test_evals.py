"""Named evaluations (`config.evals`, core/evals.py) and the training loop's transfer guard."""

import glob
import json
import os
import struct

import jax
import numpy as np
import pytest

from conftest import load_config
from papers_jax.core import loop
from papers_jax.errors import ConfigError

STEPS = 6


def two_evals_config(**overrides):
  """The ViT digits smoke run, 6 steps, with the unnamed test evaluation only at the end and two named
  ones: the train split's task evaluation every 2 steps, a k-NN of the test split every 3."""
  config = load_config("vit/digits.py", "smoke").unlock()
  config.num_steps, config.log_every, config.checkpoint_every, config.eval_every = STEPS, 2, 4, 0
  config.async_checkpoint = False
  config.evals.train = dict(type="task", split="train", every=2)
  config.evals.knn = dict(type="knn", split="test", every=3, k=(5,), max_train=64, batch=64)
  return _with(config.lock(), **overrides)


def eval_steps(rows, prefix):
  """The steps of the rows holding a metric of the evaluation with this prefix ("eval/" or "eval/<name>/")."""
  own = lambda k: k.startswith(prefix) and (prefix != "eval/" or "/" not in k[len(prefix):])  # noqa: E731
  return [r["step"] for r in rows if any(own(k) for k in r)]


def read_rows(workdir):
  return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def tensorboard_tags(workdir):
  """{tag: [steps]} of the scalars in a run's TensorBoard event files (TFRecord framing)."""
  from tensorboardX.proto import event_pb2
  tags = {}
  for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents*")):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  return tags


def _with(config, **flat):
  config = config.copy_and_resolve_references()
  config.unlock()
  for key, value in flat.items():
    node = config
    *parents, leaf = key.split(".")
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config.lock()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("evals"))
  summary = loop.train(two_evals_config(), workdir)
  return workdir, summary


def test_named_evals_log_under_their_names_at_their_steps(uninterrupted):
  workdir, summary = uninterrupted
  rows = read_rows(workdir)
  assert eval_steps(rows, "eval/train/") == [2, 4, 6]
  assert eval_steps(rows, "eval/knn/") == [3, 6]
  assert eval_steps(rows, "eval/") == [6]  # data.eval_split's, eval_every=0: after the last step only
  last = {k: v for r in rows if r["step"] == STEPS for k, v in r.items()}
  assert last["eval/train/count"] == 1437 and last["eval/count"] == 360  # the digits' train and test splits
  assert 0 <= last["eval/knn/knn_top1_k5"] <= 1 and "eval/knn/count" not in last
  for key in ("eval/train/accuracy", "eval/train/loss", "eval/knn/knn_top1_k5", "eval/accuracy", "eval/loss"):
    assert json.load(open(os.path.join(workdir, "summary.json")))[key] == summary[key] == last[key], key
  tags = tensorboard_tags(workdir)
  assert tags["eval/train/accuracy"] == [2, 4, 6] and tags["eval/knn/knn_top1_k5"] == [3, 6]
  assert tags["eval/accuracy"] == [6]


def test_preemption_then_resume_neither_loses_nor_repeats_an_eval(uninterrupted, tmp_path):
  """SIGTERM at step 4 (due: eval/train) stops with the checkpoint of step 4 and skips that evaluation;
  the resumed run evaluates it first, and step 3's k-NN, logged before the stop, is not repeated."""
  reference, _ = uninterrupted
  workdir = str(tmp_path / "run")
  config = two_evals_config()
  stopped = loop.train(_with(config, **{"debug.sigterm_at_step": 4}), workdir)
  assert stopped["preempted_at"] == 4
  assert eval_steps(read_rows(workdir), "eval/train/") == [2]
  loop.train(config, workdir)
  rows, expected = read_rows(workdir), read_rows(reference)
  for prefix in ("eval/train/", "eval/knn/", "eval/"):
    assert eval_steps(rows, prefix) == eval_steps(expected, prefix), prefix
  evals = lambda rs: {(r["step"], k): v for r in rs for k, v in r.items() if k.startswith("eval/")}  # noqa: E731
  got, want = evals(rows), evals(expected)
  assert got.keys() == want.keys()
  np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)], rtol=1e-5)


@pytest.mark.parametrize("entry, message", [
    (dict(type="fewshot", split="test"), r"evals.bad.type='fewshot'; choose one of"),
    (dict(type="task"), r"evals.bad.split=None"),
    (dict(type="task", split=""), r"evals.bad.split=''"),
    (dict(type="task", split="test", every=-1), r"evals.bad.every=-1"),
    (dict(type="task", split="test", every=2.5), r"evals.bad.every=2.5"),
    (dict(type="task", split="test", k=(5,)), r"evals.bad has \['k'\], which a 'task' evaluation does not take"),
    (dict(type="knn", split="test", k=(0,)), r"evals.bad.k="),
    (dict(type="knn", split="test", temperature=0.0), r"evals.bad.temperature=0.0"),
])
def test_a_bad_entry_is_a_config_error(entry, message):
  config = load_config("vit/digits.py", "smoke").unlock()
  config.evals.bad = entry
  with pytest.raises(ConfigError, match=message):
    loop.check_config(config.lock())


def test_a_bad_name_or_a_task_without_features_is_a_config_error():
  config = load_config("vit/digits.py", "smoke").unlock()
  config.evals["Bad-Name"] = dict(type="task", split="test")
  with pytest.raises(ConfigError, match="name evaluations with lower-case"):
    loop.check_config(config.lock())
  from papers_jax.core import evals as evals_lib
  config = load_config("vit/digits.py", "smoke").unlock()
  config.evals.probe = dict(type="linear_probe", split="test")
  with pytest.raises(ConfigError, match="needs image features, which task='classification'"):
    evals_lib.from_config(config.lock(), object())  # a task without `features` (the text tasks)


def test_a_split_the_data_lacks_stops_before_anything_is_written(tmp_path):
  config = load_config("vit/digits.py", "smoke").unlock()
  config.evals.val = dict(type="task", split="validation")  # digits has train and test
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=r"evals.val: the split 'validation' cannot be read"):
    loop.train(config.lock(), str(workdir))
  assert not workdir.exists()


# ------------------------------------------------------------------ transfer guard
def test_an_implicit_transfer_in_the_steady_state_raises(tmp_path, monkeypatch):
  """A loop that forgot to put the batch on the devices (numpy into the jitted step) is an error under
  the guard; without it the run would go on, copying the batch implicitly at every step."""
  real = loop.sharding.global_batch
  calls = []

  def forgotten_put(local, mesh, rules=None):
    calls.append(len(calls))
    if len(calls) == 1:  # the first step compiles against real arrays; the second forgets the put
      return real(local, mesh, rules) if rules is not None else real(local, mesh)
    return dict(local)

  monkeypatch.setattr(loop.sharding, "global_batch", forgotten_put)
  config = _with(load_config("vit/digits.py", "smoke"), num_steps=3, log_every=1, checkpoint_every=3)
  with pytest.raises(jax.errors.JaxRuntimeError, match="Disallowed host-to-device transfer"):
    loop.train(config, str(tmp_path / "run"))
