"""Exit codes follow the exception's type (cnnbench.errors), never its message."""
from __future__ import annotations

import pytest

from cnnbench.errors import ConfigError, RunStopped, UserError, exit_code, one_line


def test_exit_code_by_type_not_by_text():
    assert exit_code(UserError("anything")) == 2
    assert exit_code(ConfigError("anything")) == 2 and isinstance(ConfigError("x"), ValueError)
    assert exit_code(RunStopped("anything")) == 3
    # the words that once chose the code by text no longer matter: a plain ValueError is a bug
    assert exit_code(ValueError("data.x must be 1; valid choices: 1")) is None
    assert exit_code(KeyboardInterrupt()) is None


@pytest.mark.parametrize("error", ["CheckpointError", "DatasetNotFoundError", "BadImageError", "ImageSizeError",
                                   "UnknownModelError"])
def test_specific_errors_are_user_errors(error):
    import cnnbench.checkpoint
    import cnnbench.data.datamodule
    import cnnbench.data.sources
    import cnnbench.models.registry

    home = {"CheckpointError": cnnbench.checkpoint, "DatasetNotFoundError": cnnbench.data.sources,
            "BadImageError": cnnbench.data.sources, "ImageSizeError": cnnbench.data.datamodule,
            "UnknownModelError": cnnbench.models.registry}[error]
    assert issubclass(getattr(home, error), UserError)


def test_one_line_keeps_a_worker_error_message():
    err = RuntimeError("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                       "  File \"x.py\", line 1\ncnnbench.data.sources.BadImageError: cannot decode image a.jpg")
    assert one_line(err) == "cannot decode image a.jpg"
