"""`trainer.<name>=…` passes any lightning.Trainer argument without `+`; a misspelt one is one line."""
from __future__ import annotations

import pytest

from cnnbench.errors import UserError
from cnnbench.precheck import trainer_args
from tests.helpers import compose_cfg


def test_any_trainer_argument_composes_without_plus():
    args = trainer_args(["model=resnet20", "trainer.limit_train_batches=10", "trainer.profiler=simple",
                         "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=1"])
    assert args[0] == "model=resnet20" and all(a.startswith("++trainer.") for a in args[1:])
    cfg = compose_cfg("train", args)
    assert (cfg.trainer.limit_train_batches, cfg.trainer.profiler, cfg.trainer.check_val_every_n_epoch,
            cfg.trainer.max_epochs) == (10, "simple", 2, 1)


def test_misspelt_trainer_argument_names_the_closest():
    with pytest.raises(UserError) as raised:
        trainer_args(["trainer.limit_train_batch=10"])
    assert "trainer.limit_train_batch is not an argument of lightning.Trainer" in str(raised.value)
    assert "closest: limit_train_batches" in str(raised.value)


def test_trainer_arguments_are_read_without_importing_lightning():
    import inspect

    from lightning.pytorch import Trainer

    from cnnbench.precheck import lightning_trainer_arguments

    assert lightning_trainer_arguments() == [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"]
