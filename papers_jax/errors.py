"""Errors raised for problems the user can fix (config, data, checkpoints).

`papers_jax.main` prints these as one message without a traceback. Every message names the fix.
"""


class UserError(Exception):
  """A problem with the user's config, data or files; the message says how to fix it."""


class ConfigError(UserError, ValueError):
  """The experiment config is invalid."""


class DataError(UserError):
  """A dataset is missing or unreadable."""


class CheckpointError(UserError):
  """A checkpoint is missing, incomplete or unreadable."""


class WorkdirError(UserError):
  """The workdir cannot be created or written (read-only, full disk, a file in the way)."""


class TrainingError(UserError):
  """Training cannot go on (a non-finite loss or gradient); the message names the step and the cause."""


class ResourceError(UserError):
  """The run does not fit the devices (memory); the message names what it needs and what there is."""
