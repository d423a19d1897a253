"""Mutation check: plants known bugs in a temporary copy of the repository and reports which tests
catch each one. A mutation no test catches is a hole in the suite.

    PYTHONPATH=$PWD .venv/bin/python tools/mutation_check.py            # every mutation
    PYTHONPATH=$PWD .venv/bin/python tools/mutation_check.py --list     # the table
    PYTHONPATH=$PWD .venv/bin/python tools/mutation_check.py infonce_stop_gradient mae_shared_permutation

Each mutation replaces one exact piece of source text, which must occur exactly once in its file:
when the code changes and the text no longer matches, the script stops with an error naming the
mutation (update its `old` / `new` in MUTATIONS below). The repository (tests and configs
included, the working tree as it is now) is copied to a temporary directory once; each mutation
edits its file there, runs its few tests with `python -m pytest -p no:xdist`, and puts the file
back. Before the mutations, the same test selection runs on the unmutated copy and must pass
(`--no-baseline` skips this), so a failure below is the mutation's doing.

Exit status: 0 when every mutation is caught, 1 when one is not, 2 on a stale mutation or a red
baseline.
"""

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {".git", ".venv", "runs", ".jax_cache", ".pytest_cache", "__pycache__", ".mypy_cache", ".ruff_cache"}


@dataclasses.dataclass(frozen=True)
class Mutation:
  name: str
  path: str  # relative to the repository root
  old: str  # exact source text, occurring exactly once in `path`
  new: str
  tests: tuple[str, ...]  # pytest node ids expected to catch it
  why: str = ""


SSL_OBJ = "tests/test_ssl_objectives.py"
STOP_GRAD_TEST = SSL_OBJ + "::test_targets_get_no_gradient_and_the_online_inputs_do"

# The eight mutations of the test review (issue 35), then one per documented stop-gradient.
MUTATIONS = (
    Mutation(
        "clip_loss_transpose", "papers_jax/objectives/contrastive.py",
        "_cross_entropy(logits.T, labels).mean())",
        "_cross_entropy(logits, labels).mean())",
        (SSL_OBJ + "::test_objective_equals_numpy_reference[clip]", "tests/test_clip.py::test_clip_loss_matches_numpy"),
        "the text→image half of CLIP's loss reads the image→text logits"),
    Mutation(
        "infonce_stop_gradient", "papers_jax/objectives/contrastive.py",
        "jax.lax.stop_gradient(l2_normalize(k)), jax.lax.stop_gradient(l2_normalize(queue))",
        "l2_normalize(k), jax.lax.stop_gradient(l2_normalize(queue))",
        (STOP_GRAD_TEST + "[moco_info_nce_keys_and_queue]",),
        "MoCo's keys get a gradient"),
    Mutation(
        "infonce_temperature", "papers_jax/objectives/contrastive.py",
        "logits = jnp.concatenate([positive, negatives], axis=1) / temperature",
        "logits = jnp.concatenate([positive, negatives], axis=1)",
        (SSL_OBJ + "::test_objective_equals_numpy_reference[moco_v1_info_nce]",),
        "InfoNCE ignores its temperature"),
    Mutation(
        "mae_shared_permutation", "papers_jax/models/mae.py",
        "ids_shuffle = jax.vmap(lambda key: jax.random.permutation(key, n))(jax.random.split(rng, b))",
        "ids_shuffle = jnp.tile(jax.random.permutation(rng, n), (b, 1))",
        ("tests/test_mae.py::test_masking_is_uniform_and_independent_per_example",
         "tests/test_mae.py::test_model_masks_each_example_independently"),
        "every example of a batch gets the same mask"),
    Mutation(
        "swin_region_offset", "papers_jax/models/swin.py",
        "labels[size - shift:] = 2",
        "labels[size - shift - 1:] = 2",
        ("tests/test_swin_timm.py::test_mask_and_index_match_timm_buffers",
         "tests/test_swin_timm.py::test_attention_reachability_brute_force"),
        "the shifted-window mask's last region starts one row early"),
    Mutation(
        "restored_optimizer_state", "papers_jax/core/loop.py",
        "    self.state, meta = restored\n",
        "    self.state, meta = restored[0].replace(opt_state=self.state.opt_state), restored[1]\n",
        ("tests/test_run.py::test_sigkill_then_resume_matches_uninterrupted",
         "tests/test_reliability.py::test_kill_9_in_every_phase_then_resume_equals_an_uninterrupted_run"),
        "a resumed run restarts the optimizer's moments instead of restoring them"),
    Mutation(
        "bert_mlm_labels", "papers_jax/data/mlm.py",
        "chosen, tokens[chosen], 1.0",
        "chosen, inputs[chosen], 1.0",
        ("tests/test_lm_objectives.py::test_mlm_masking_is_15_percent_and_80_10_10_within_sampling_error",
         "tests/test_text_data.py::test_bert_examples_structure"),
        "BERT predicts the corrupted input token instead of the original"),
    Mutation(
        "bert_80_10_10", "papers_jax/data/mlm.py",
        "replace_random = (draw >= mask_frac) & (draw < mask_frac + random_frac)",
        "replace_random = draw >= mask_frac",
        ("tests/test_lm_objectives.py::test_mlm_masking_is_15_percent_and_80_10_10_within_sampling_error",),
        "80/20/0 instead of 80/10/10"),
    # Every other stop-gradient an objective promises.
    Mutation(
        "moco_v3_stop_gradient", "papers_jax/objectives/contrastive.py",
        "k1, k2 = jax.lax.stop_gradient(k1), jax.lax.stop_gradient(k2)",
        "k1, k2 = k1, k2",
        (STOP_GRAD_TEST + "[moco_v3_momentum_keys]",)),
    Mutation(
        "byol_stop_gradient", "papers_jax/objectives/self_distill.py",
        "z1_target, z2_target = jax.lax.stop_gradient(z1_target), jax.lax.stop_gradient(z2_target)",
        "z1_target, z2_target = z1_target, z2_target",
        (STOP_GRAD_TEST + "[byol_targets]",)),
    Mutation(
        "simsiam_stop_gradient", "papers_jax/objectives/self_distill.py",
        "l2_normalize(jax.lax.stop_gradient(z))",
        "l2_normalize(z)",
        (STOP_GRAD_TEST + "[simsiam_projections]",)),
    Mutation(
        "swav_codes_stop_gradient", "papers_jax/objectives/self_distill.py",
        "q = jnp.exp(jax.lax.stop_gradient(scores).astype(jnp.float32) / epsilon).T",
        "q = jnp.exp(scores.astype(jnp.float32) / epsilon).T",
        (STOP_GRAD_TEST + "[swav_sinkhorn_codes]", SSL_OBJ + "::test_swav_gradient_treats_the_codes_as_constants")),
    Mutation(
        "dino_teacher_stop_gradient", "papers_jax/objectives/self_distill.py",
        "targets = jax.nn.softmax((jax.lax.stop_gradient(teacher).astype(jnp.float32) - center)",
        "targets = jax.nn.softmax((teacher.astype(jnp.float32) - center)",
        (STOP_GRAD_TEST + "[dino_teacher]",)),
    Mutation(
        "mae_target_stop_gradient", "papers_jax/objectives/reconstruction.py",
        "return masked_mse(pred, jax.lax.stop_gradient(target), mask)",
        "return masked_mse(pred, target, mask)",
        (STOP_GRAD_TEST + "[mae_pixel_targets]", STOP_GRAD_TEST + "[mae_normalized_targets]")),
    Mutation(
        "memory_bank_stop_gradient", "papers_jax/objectives/contrastive.py",
        "  bank = jax.lax.stop_gradient(bank)\n",
        "",
        (STOP_GRAD_TEST + "[instdisc_bank]",)),
)


def copy_repository(dst: str) -> None:
  def ignore(directory, names):
    return [n for n in names if n in SKIP or n.endswith(".pyc")]
  shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)
  cache = os.path.join(ROOT, ".jax_cache")
  if os.path.isdir(cache):  # compiled programs are keyed by their HLO, so a mutated one never hits a stale entry
    os.symlink(os.path.realpath(cache), os.path.join(dst, ".jax_cache"))


def check_applies(m: Mutation, source: str) -> None:
  count = source.count(m.old)
  if count != 1:
    print(f"mutation {m.name!r} is stale: its text occurs {count} times in {m.path} (expected once); "
          f"update MUTATIONS in tools/mutation_check.py.\ntext: {m.old!r}", file=sys.stderr)
    raise SystemExit(2)


def run_tests(workdir: str, tests, timeout: int) -> tuple[int, dict, str, float]:
  """(return code, {failed/errored test id: pytest's one-line reason}, output tail, seconds)."""
  cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-rfE", *tests]
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the copy's papers_jax, not this one's
  env["COLUMNS"] = "250"  # room for the failure reasons in the short summary
  start = time.time()
  try:
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return -1, {}, "timed out", time.time() - start
  out = proc.stdout + proc.stderr
  summary = re.finditer(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$", out, re.MULTILINE)
  failed = {m.group(1): m.group(2) or "" for m in summary}
  return proc.returncode, failed, "\n".join(out.strip().splitlines()[-15:]), time.time() - start


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
  parser.add_argument("--list", action="store_true", help="print the mutations and their tests, run nothing")
  parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
  args = parser.parse_args()

  by_name = {m.name: m for m in MUTATIONS}
  unknown = [n for n in args.names if n not in by_name]
  if unknown:
    raise SystemExit(f"unknown mutation(s) {unknown}; known: {list(by_name)}")
  selected = [by_name[n] for n in args.names] if args.names else list(MUTATIONS)

  for m in selected:  # every mutation must still apply before anything runs
    with open(os.path.join(ROOT, m.path)) as f:
      check_applies(m, f.read())
  if args.list:
    for m in selected:
      print(f"{m.name}: {m.path}\n  - {m.old!r}\n  + {m.new!r}\n  tests: {', '.join(m.tests)}")
    return 0

  with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
    work = os.path.join(tmp, "repo")
    copy_repository(work)
    if not args.no_baseline:
      tests = sorted({t for m in selected for t in m.tests})
      code, failed, tail, seconds = run_tests(work, tests, args.timeout)
      print(f"baseline (unmutated, {len(tests)} tests): {'pass' if code == 0 else 'FAIL'} in {seconds:.0f} s",
            flush=True)
      if code != 0:
        print(tail)
        return 2
    results = []
    for m in selected:
      path = os.path.join(work, m.path)
      with open(path) as f:
        original = f.read()
      check_applies(m, original)
      with open(path, "w") as f:
        f.write(original.replace(m.old, m.new))
      try:
        code, failed, tail, seconds = run_tests(work, m.tests, args.timeout)
      finally:
        with open(path, "w") as f:
          f.write(original)
      caught = code not in (0, -1)  # a run that timed out shows nothing: not caught
      results.append((m, caught))
      verdict = "caught" if caught else "NOT CAUGHT (timed out)" if code == -1 else "NOT CAUGHT"
      print(f"{verdict}: {m.name} ({m.path}, {seconds:.0f} s)", flush=True)
      for t in m.tests:
        reasons = [r for f, r in failed.items() if f == t or f.startswith(t + "[")]
        print(f"    {'fails ' if reasons else 'passes'}  {t}" + (f"  ({reasons[0][:160]})" if reasons else ""))
      if caught and not failed or code == -1:
        print("    " + tail.replace("\n", "\n    "))
    missed = [m.name for m, caught in results if not caught]
    print(f"\n{len(results) - len(missed)}/{len(results)} mutations caught"
          + (f"; not caught: {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
  sys.exit(main())
