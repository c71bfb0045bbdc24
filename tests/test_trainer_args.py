"""`trainer.<name>=…` passes any lightning.Trainer argument without `+`; a misspelt one is one line."""
from __future__ import annotations

import pytest

from cnnbench.cli import trainer_args
from tests.helpers import compose_cfg


def test_any_trainer_argument_composes_without_plus():
    args = trainer_args(["model=resnet20", "trainer.limit_train_batches=10", "trainer.profiler=simple",
                         "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=1"])
    assert args[0] == "model=resnet20" and all(a.startswith("++trainer.") for a in args[1:])
    cfg = compose_cfg("train", args)
    assert (cfg.trainer.limit_train_batches, cfg.trainer.profiler, cfg.trainer.check_val_every_n_epoch,
            cfg.trainer.max_epochs) == (10, "simple", 2, 1)


def test_misspelt_trainer_argument_names_the_closest(capsys):
    with pytest.raises(SystemExit) as exit_info:
        trainer_args(["trainer.limit_train_batch=10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.limit_train_batch is not an argument of lightning.Trainer" in err[0]
    assert "closest: limit_train_batches" in err[0]
