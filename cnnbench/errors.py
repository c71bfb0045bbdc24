"""The errors a user can cause, and the exit code each maps to — chosen by exception type, never by text.

- `UserError` (exit 2): bad input — a config value, a path, a checkpoint, an image. One line on stderr.
  `ConfigError` is the `UserError` the option checks of models, optimizers, schedules and data raise;
  it is also a `ValueError`, so code that calls those builders directly can keep catching `ValueError`.
- `RunStopped` (exit 3): a run that stopped on purpose (a non-finite loss …): one line saying why.
- OmegaConf's own errors (a missing or mistyped key) count as bad input (exit 2).

This module imports nothing from cnnbench: every layer may raise these.
"""
from __future__ import annotations

from omegaconf.errors import OmegaConfBaseException


class UserError(Exception):
    """Bad input: shown as one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config or constructor option outside its valid choices (exit code 2)."""


class RunStopped(Exception):
    """A run stopped on purpose (non-finite loss …): one line on stderr and `exit_code`."""

    exit_code = 3


def exit_code(err: BaseException) -> int | None:
    """The exit code for an error a user caused or a run stopped on purpose; None for a bug (re-raise it)."""
    if isinstance(err, (UserError, RunStopped)):
        return err.exit_code
    if isinstance(err, OmegaConfBaseException):
        return 2
    if any(c.__name__ == "MisconfigurationException" for c in type(err).__mro__):  # Lightning: a bad Trainer setting
        return 2
    return None


def one_line(err: BaseException) -> str:
    """The message of `err` on one line (a DataLoader worker's re-raised error: the worker's own message)."""
    text = str(err).strip() or type(err).__name__
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())




__all__ = ["UserError", "ConfigError", "RunStopped", "exit_code", "one_line"]
