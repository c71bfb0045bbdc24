"""The schedule and the speed in every run's log (training/monitors.py): the learning rate per logging step
follows the recipe's schedule, the speed columns and results.json's means are there, and under a pipe the
progress is a periodic line."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cnnbench.commands.train import train
from tests.helpers import FAST, compose_cfg

TINY = FAST + ["data=digits", "data.image_size=16", "augmentation=none", "data.val_split=0.15",
               "trainer.log_every_n_steps=1", "model=resnet20", "stuck_at_chance.enabled=false"]


def _column(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(f) if row.get(key)]


@pytest.fixture(scope="module")
def onecycle_run(tmp_path_factory):
    """A 2-epoch one-cycle run logged to metrics.csv and to W&B (mode disabled: the keys W&B receives are
    recorded by wrapping WandbLogger.log_metrics)."""
    from lightning.pytorch.loggers import WandbLogger

    run_dir = tmp_path_factory.mktemp("onecycle")
    wandb_keys: set[str] = set()
    original = WandbLogger.log_metrics

    def recording(self, metrics, step=None):
        wandb_keys.update(metrics)
        return original(self, metrics, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WandbLogger, "log_metrics", recording)
        cfg = compose_cfg("train", TINY + ["schedule=onecycle", "trainer.max_epochs=2", "logger=wandb",
                                           "logger.wandb.mode=disabled"])
        results = train(cfg, run_dir=run_dir)
    return run_dir, results | {"wandb_keys": wandb_keys}


@pytest.mark.slow
def test_onecycle_lr_rises_then_falls(onecycle_run):
    run_dir, results = onecycle_run
    lrs = [lr for _, lr in _column(run_dir, "lr")]
    assert len(lrs) >= results["steps"] - 1
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1, lrs  # rises to its peak inside the run, then falls
    assert lrs[0] < max(lrs) / 5 and lrs[-1] < max(lrs) / 100
    assert max(lrs) == pytest.approx(results["lr_scaled"], rel=0.05)
    momenta = [m for _, m in _column(run_dir, "lr-momentum")]
    assert min(momenta) < max(momenta)  # one-cycle cycles the momentum against the learning rate


@pytest.mark.slow
def test_step_schedule_drops_tenfold_at_its_milestones(tmp_path):
    cfg = compose_cfg("train", TINY + ["schedule=multistep", "schedule.milestones_epochs=[1,2]",
                                       "trainer.max_epochs=3"])
    results = train(cfg, run_dir=tmp_path)
    lrs = _column(tmp_path, "lr")
    steps_per_epoch = results["steps"] // 3
    by_epoch = [{lr for step, lr in lrs if e * steps_per_epoch <= step < (e + 1) * steps_per_epoch} for e in range(3)]
    assert all(len(values) == 1 for values in by_epoch), by_epoch  # constant between milestones
    first, second, third = (values.pop() for values in by_epoch)
    assert first == pytest.approx(results["lr_scaled"])
    assert second == pytest.approx(first / 10) and third == pytest.approx(first / 100)


@pytest.mark.slow
def test_wandb_history_gets_the_same_schedule_and_speed(onecycle_run):
    keys = onecycle_run[1]["wandb_keys"]
    assert {"lr", "lr-momentum", "speed/train_images_per_s", "speed/data_wait_share", "time/epoch_s"} <= keys


@pytest.mark.slow
def test_speed_columns_and_results(onecycle_run):
    run_dir, results = onecycle_run
    for key in ("speed/train_images_per_s", "speed/step_images_per_s", "speed/data_wait_share"):
        assert _column(run_dir, key), key
    epochs = _column(run_dir, "time/epoch_s")
    assert len(epochs) == 2 and all(seconds > 0 for _, seconds in epochs)
    assert _column(run_dir, "memory/peak_mb")[-1][1] > 50  # a Python process with torch is larger than 50 MB
    speed = results["speed"]
    assert 0 < speed["train_images_per_s"] <= speed["step_images_per_s"]  # the loop also waits for data
    assert 0 <= speed["data_wait_share"] < 1
    assert speed["epoch_s"] == pytest.approx(sum(s for _, s in epochs) / 2, rel=0.01)
    assert results["wall_s"] > speed["epoch_s"]


def test_progress_under_a_pipe_is_a_periodic_line():
    from lightning.pytorch.callbacks import TQDMProgressBar

    from cnnbench.training.monitors import LineProgress, progress_callback

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_callback(stream=io.StringIO()), LineProgress)
    assert isinstance(progress_callback(stream=Terminal()), TQDMProgressBar)


@pytest.mark.parametrize(("max_epochs", "max_steps", "accumulate", "expected"), [
    (3, -1, 1, 3),  # no step bound
    (3, 2, 1, 1),  # ends inside the first of its 10-batch epochs
    (3, 10, 1, 1),
    (3, 11, 1, 2),
    (3, 11, 2, 3),  # 5 optimizer steps an epoch
    (3, 500, 1, 3),  # max_epochs ends it first
    (-1, 25, 1, 3),  # only steps bound it
    (-1, -1, 1, "?"),
])
def test_progress_counts_the_epochs_the_run_enters(max_epochs, max_steps, accumulate, expected):
    from types import SimpleNamespace

    from cnnbench.training.monitors import planned_epochs

    trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps, num_training_batches=10,
                              accumulate_grad_batches=accumulate)
    assert planned_epochs(trainer) == expected


@pytest.mark.slow
def test_line_progress_writes_lines_not_carriage_returns(tmp_path):
    from cnnbench import run as run_module
    from cnnbench.training.monitors import LineProgress

    stream = io.StringIO()
    cfg = compose_cfg("train", TINY + ["trainer.max_epochs=2", "trainer.enable_progress_bar=true"])
    trainer = run_module.build_trainer(cfg, tmp_path)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, LineProgress)  # pytest's captured stderr is not a terminal
    bar.stream, bar.every_s = stream, 0.0
    dm = run_module.build_datamodule(cfg)
    trainer.fit(run_module.build_module(cfg, dm), datamodule=dm)
    text = stream.getvalue()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("train: ")]
    assert len(lines) >= trainer.global_step  # every_s=0: a line per step (and one per epoch)
    assert f"epoch 2/2 · step {trainer.global_step}/{trainer.global_step} (100%)" in lines[-1]
    assert "val/acc1" in text


def test_an_epoch_resumed_mid_way_has_no_epoch_time():
    """Lightning skips `on_train_epoch_start` for the epoch a mid-epoch checkpoint resumes; that epoch's time is
    not this process's to give (it once logged the machine's uptime)."""
    from types import SimpleNamespace

    import torch

    from cnnbench.training.monitors import RunSpeed

    logged: list[dict] = []
    module = SimpleNamespace(log_dict=lambda values, **kw: logged.append(dict(values)))
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), log_every_n_steps=1)
    speed, batch = RunSpeed(), (torch.zeros(4, 1), torch.zeros(4))

    def steps(n: int) -> None:
        for i in range(n):
            speed.on_train_batch_start(trainer, module, batch, i)
            speed.on_train_batch_end(trainer, module, None, batch, i)

    steps(2)  # the resumed remainder of an epoch
    speed.on_train_epoch_end(trainer, module)
    assert "time/epoch_s" not in logged[-1] and "memory/peak_mb" in logged[-1]
    assert speed.summary()["epoch_s"] is None
    speed.on_train_epoch_start(trainer, module)  # the next epoch, whole
    steps(2)
    speed.on_train_epoch_end(trainer, module)
    assert 0 < logged[-1]["time/epoch_s"] < 60
    assert speed.summary()["epoch_s"] == pytest.approx(logged[-1]["time/epoch_s"], abs=0.01)  # rounded
