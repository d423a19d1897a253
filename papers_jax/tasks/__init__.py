"""Paper recipes: model + objective + extra state + evaluation, selected by `config.task`."""

from papers_jax.errors import ConfigError

TASKS = ("classification", "mae", "ssl", "clip", "lm", "text_finetune")


def get_task(config):
  if config.task == "classification":
    from papers_jax.tasks.classification import ClassificationTask
    return ClassificationTask(config)
  if config.task == "mae":
    from papers_jax.tasks.mae import MAETask
    return MAETask(config)
  if config.task == "ssl":
    from papers_jax.tasks.ssl import SSLTask
    return SSLTask(config)
  if config.task == "clip":
    from papers_jax.tasks.clip import CLIPTask
    return CLIPTask(config)
  if config.task == "lm":
    from papers_jax.tasks.lm import LMTask
    return LMTask(config)
  if config.task == "text_finetune":
    from papers_jax.tasks.text_finetune import TextFinetuneTask
    return TextFinetuneTask(config)
  raise ConfigError(f"unknown task {config.task!r}; choose from {TASKS}")
