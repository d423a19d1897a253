"""Paper recipes: model + objective + extra state + evaluation, selected by `config.task`."""

from papers_jax.errors import ConfigError

TASKS = ("classification",)


def get_task(config):
  if config.task == "classification":
    from papers_jax.tasks.classification import ClassificationTask
    return ClassificationTask(config)
  raise ConfigError(f"unknown task {config.task!r}; choose from {TASKS}")
