"""Paper recipes: model + objective + extra state + evaluation, selected by `config.task`."""

from papers_jax.errors import ConfigError

TASKS = ("classification", "mae", "ssl", "clip", "lm", "text_finetune", "diffusion", "vqvae")


def get_task(config):
  """The task object of `config.task`, after checking the ranges of its config section."""
  if config.task in TASKS and config.task in config:
    import importlib
    from papers_jax.core import config as config_lib
    module = importlib.import_module(f"papers_jax.tasks.{config.task}")
    config_lib.check_ranges(config[config.task], getattr(module, "RANGES", ()), f"{config.task}.")
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
  if config.task == "diffusion":
    from papers_jax.tasks.diffusion import DiffusionTask
    return DiffusionTask(config)
  if config.task == "vqvae":
    from papers_jax.tasks.vqvae import VQVAETask
    return VQVAETask(config)
  raise ConfigError(f"unknown task {config.task!r}; choose from {TASKS}")
