"""Fault 2: a checkpoint write failing midway leaves the previous checkpoint loadable; resume=auto
skips a damaged newest file; every checkpoint loads with weights_only=True."""
from __future__ import annotations

import os
import time

import pytest
import torch

from cnnbench.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    candidate_checkpoints,
    load_checkpoint,
    newest_loadable_checkpoint,
    remove_unfinished_writes,
)
from tests.helpers import FAST, compose_cfg


def _state(value: float) -> dict:
    return {"state_dict": {"w": torch.full((256, 256), value)}, "loops": {}, "global_step": int(value)}


def test_write_failing_midway_keeps_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_state(1.0), path)

    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(f.tell() // 2)
        f.truncate()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint(_state(2.0), path)
    monkeypatch.setattr(torch, "save", real_save)

    kept = load_checkpoint(path)  # weights_only=True
    assert kept["global_step"] == 1 and torch.equal(kept["state_dict"]["w"], torch.full((256, 256), 1.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_a_plain_non_atomic_write_would_have_destroyed_it(tmp_path):
    """The failure mode the atomic writer exists for: writing in place and dying midway."""
    path = tmp_path / "last.ckpt"
    torch.save(_state(1.0), path)
    with open(path, "r+b") as f:  # what an in-place rewrite leaves after a crash: half a file
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_resume_auto_skips_a_damaged_newest_checkpoint(tmp_path):
    ckpts = tmp_path / "checkpoints"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_state(1.0), ckpts / "step00000001.ckpt")
    time.sleep(0.02)
    (ckpts / "last.ckpt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (ckpts / ".last.ckpt.x1y2.tmp").write_bytes(b"leftover temp file")
    assert [p.name for p in candidate_checkpoints(tmp_path)] == ["last.ckpt", "step00000001.ckpt"]
    assert newest_loadable_checkpoint(tmp_path) == str(ckpts / "step00000001.ckpt")
    assert newest_loadable_checkpoint(tmp_path / "nothing-here") is None


def test_the_temporary_file_of_a_killed_write_is_removed_and_nothing_else(tmp_path):
    """SIGKILL during `AtomicCheckpointIO.save_checkpoint` leaves `.<name>.<random>.tmp` (a few hundred MB for a
    zoo row); the next job in the run dir deletes it, and only it."""
    ckpts = tmp_path / "checkpoints"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_state(1.0), ckpts / "last.ckpt")
    io.save_checkpoint(_state(1.0), ckpts / "step00000200.ckpt")
    (ckpts / ".step00000400.ckpt.ij8_y23k.tmp").write_bytes(b"half a checkpoint")
    (ckpts / ".last.ckpt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (ckpts / "notes.tmp").write_text("not ours")           # not the writer's pattern
    (tmp_path / ".last.ckpt.x1y2.tmp").write_text("not in checkpoints/")
    removed = remove_unfinished_writes(tmp_path)
    assert sorted(p.name for p in removed) == [".last.ckpt.x1y2.tmp", ".step00000400.ckpt.ij8_y23k.tmp"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "notes.tmp", "step00000200.ckpt"]
    assert (tmp_path / ".last.ckpt.x1y2.tmp").exists()
    assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == 1
    assert remove_unfinished_writes(tmp_path / "no-run-here") == []


@pytest.mark.slow
def test_training_writes_checkpoints_through_the_atomic_writer(tmp_path, monkeypatch):
    from cnnbench.commands.train import train

    written = []
    real = AtomicCheckpointIO.save_checkpoint

    def counting(self, checkpoint, path, storage_options=None):
        written.append(os.path.basename(path))
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", counting)

    cfg = compose_cfg("train", FAST + ["data=synthetic", "data.limit_train=64", "data.batch_size=16",
                                       "trainer.max_epochs=1", "checkpoint.every_n_steps=2",
                                       "schedule=cosine"])
    train(cfg, run_dir=tmp_path)
    files = sorted((tmp_path / "checkpoints").iterdir())
    assert {f.name for f in files} <= set(written) and "step00000002.ckpt" in written
    assert files and not [f for f in files if f.name.endswith(".tmp")]
    # the best and the step checkpoints both keep last.ckpt current: one file, not last.ckpt + last-v1.ckpt
    assert [f.name for f in files if f.name.startswith("last")] == ["last.ckpt"]
    for f in files:
        assert "state_dict" in load_checkpoint(f)  # every checkpoint loads with weights_only=True
