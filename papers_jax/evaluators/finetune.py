"""Fine-tuning evaluation: the classification task started from a pre-trained checkpoint.

There is nothing to re-implement: `run(config, workdir, init_from=...)` trains `config` (a
classification config such as configs/mae/finetune.py) from the params checkpoint `init_from`
(a run's `checkpoints/<step>/state`, or tools/convert_weights.py output) and returns the summary
with `eval/accuracy`. Params that the checkpoint lacks or whose shape changed keep their init
when they match `config.init_skip` (the head, fc_norm, ...); checkpoint entries matching it that
the model lacks (an MAE decoder) are ignored.
"""


def run(config, workdir: str, *, init_from: str | None = None, devices=None) -> dict:
  from papers_jax.core import loop
  if init_from is not None:
    config = config.copy_and_resolve_references()  # the caller's config stays as it was
    config.unlock()
    config.init_from = init_from
    config.lock()
  return loop.train(config, workdir, devices=devices)
