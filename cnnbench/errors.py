"""Run a command and turn bad input into one clear line on stderr and exit code 2 (no traceback wall)."""
from __future__ import annotations

import sys

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException


def _user_errors() -> tuple[type[BaseException], ...]:
    from cnnbench.checkpoint import CheckpointError
    from cnnbench.data import DatasetNotFoundError, ImageSizeError
    from cnnbench.models import UnknownModelError
    from cnnbench.runtime import UserError

    return (UserError, UnknownModelError, DatasetNotFoundError, ImageSizeError, CheckpointError,
            OmegaConfBaseException)


def dispatch(command: str, cfg: DictConfig):
    """Call the function registered for `command` in `cnnbench.cli.COMMANDS`."""
    import importlib

    from cnnbench.cli import COMMANDS

    module, function = COMMANDS[command][1].split(":")
    return getattr(importlib.import_module(module), function)(cfg)


def run_guarded(command: str, cfg: DictConfig):
    try:
        return dispatch(command, cfg)
    except _user_errors() as err:
        print(f"cnnbench {command}: error: {_one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ValueError as err:  # option validation in models/optimizers/schedules raises ValueError
        if _is_config_error(err):
            print(f"cnnbench {command}: error: {_one_line(err)}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return " ".join(text.split())


def _is_config_error(err: ValueError) -> bool:
    text = str(err)
    return any(marker in text for marker in ("valid choices", "valid options", "must be", "data."))
