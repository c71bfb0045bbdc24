"""Run a command and turn bad input into one clear line on stderr and exit code 2 (no traceback wall)."""
from __future__ import annotations

import sys

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException


def _user_errors() -> tuple[type[BaseException], ...]:
    from cnnbench.checkpoint import CheckpointError
    from cnnbench.data import DatasetNotFoundError, ImageSizeError
    from cnnbench.data.sources import BadImageError
    from cnnbench.models import UnknownModelError
    from cnnbench.runtime import UserError

    return (UserError, UnknownModelError, DatasetNotFoundError, ImageSizeError, CheckpointError, BadImageError,
            OmegaConfBaseException)


def dispatch(command: str, cfg: DictConfig):
    """Call the function registered for `command` in `cnnbench.cli.COMMANDS`."""
    import importlib

    from cnnbench.cli import COMMANDS

    module, function = COMMANDS[command][1].split(":")
    return getattr(importlib.import_module(module), function)(cfg)


def run_guarded(command: str, cfg: DictConfig):
    from cnnbench.reliability import RunStopped

    try:
        from cnnbench.config_schema import validate

        validate(cfg)  # types, ranges and impossible combinations, before any work (config_schema.py)
        return dispatch(command, cfg)
    except RunStopped as err:  # a run stopped on purpose (non-finite loss): say why, distinct exit code
        print(f"cnnbench {command}: stopped: {_one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
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
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the worker's own message
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def _is_config_error(err: ValueError) -> bool:
    text = str(err)
    return any(marker in text for marker in ("valid choices", "valid options", "must be", "data."))
