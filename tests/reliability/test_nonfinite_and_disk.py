"""Fault 5: a NaN/Inf loss stops the run naming the step (or the step is skipped); fault 7: an
unwritable or full run dir is reported before training."""
from __future__ import annotations

import json
import math
from collections import namedtuple

import lightning as L
import pytest
import torch

from cnnbench.checkpoint import load_checkpoint
from cnnbench.commands.train import train
from cnnbench.errors import UserError
from cnnbench.training.callbacks import NonFiniteLossError
from tests.helpers import FAST, compose_cfg

RUN = FAST + ["data=synthetic", "data.limit_train=96", "data.batch_size=16", "trainer.max_epochs=2",
              "schedule=cosine", "checkpoint.every_n_steps=2", "data.val_split=16"]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_FAULT", "nan@5")
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 5"):
        train(compose_cfg("train", RUN), run_dir=tmp_path)
    stopped = json.loads((tmp_path / "results.json").read_text())["stopped"]
    assert stopped["reason"] == "non-finite loss" and stopped["step"] == 5
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True
    assert last["global_step"] == 4  # the step-4 checkpoint: nothing was written after the bad loss
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


class ParamsAtStepStart(L.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen[trainer.global_step] = [p.detach().clone() for p in pl_module.parameters()]
        self.seen[f"buffers{trainer.global_step}"] = [b.detach().clone() for b in pl_module.buffers()
                                                      if b.is_floating_point()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_nan_loss_skip_drops_that_update_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_FAULT", "nan@3")
    probe = ParamsAtStepStart()
    results = train(compose_cfg("train", RUN + ["loss.on_nonfinite=skip"]), run_dir=tmp_path, callbacks=[probe])
    assert results["skipped_steps"] == [3]
    # the poisoned batch left weights and batch-norm statistics as they were; its neighbours did update
    assert _same(probe.seen[3], probe.seen[4]) and _same(probe.seen["buffers3"], probe.seen["buffers4"])
    assert not _same(probe.seen[2], probe.seen[3]) and not _same(probe.seen[4], probe.seen[5])
    assert not _same(probe.seen["buffers2"], probe.seen["buffers3"])
    assert math.isfinite(results["train/loss_last"]) and "stopped" not in results
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_unwritable_run_dir_is_reported_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match=r"run dir .*a-file/run is not writable"):
        train(compose_cfg("train", RUN), run_dir=blocker / "run")


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 20, (10 << 20) - 4096, 4096))
    with pytest.raises(UserError, match=r"0\.0 MiB free, a checkpoint needs about"):
        train(compose_cfg("train", RUN), run_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()
