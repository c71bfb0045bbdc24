"""Fault 1: SIGKILL mid-epoch, then `resume=auto`; SIGTERM / SIGUSR1 / SIGUSR2 save a checkpoint and exit cleanly."""
from __future__ import annotations

import signal

import pytest
import torch

from cnnbench.checkpoint import load_checkpoint
from tests.reliability.reliability_helpers import CLI_FAST, cli, cli_background, results, wait_for_file

# 12 training batches per epoch; a step checkpoint every 4 steps → the kill at step 5 lands mid-epoch 0
# (after the step-4 checkpoint) and the resume replays batches 5… of epoch 0; the kill at step 13 follows the
# checkpoint of epoch 0's last batch (the resume starts epoch 1), the kill at step 17 lands mid-epoch 1.
RUN = ["train"] + CLI_FAST + ["data=synthetic", "trainer.deterministic=true", "augmentation=pad_crop_flip", "schedule=cosine",
                  "seed=7", "trainer.max_epochs=2", "checkpoint.every_n_steps=4", "data.batch_size=16"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    done = cli(RUN + ["data.num_workers=0", f"hydra.run.dir={run_dir}"])
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "kill_step", "epoch", "batches"), [(0, 5, 0, 4), (2, 13, 0, 12), (2, 17, 1, 4)])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, straight, workers, kill_step, epoch, batches):
    # with loader workers Lightning's first iterator of a resumed run reads the sampler before set_epoch: the
    # resume in epoch 1 and the one after epoch 0's last batch are the cases where the epoch can go wrong
    args = RUN + [f"data.num_workers={workers}", f"hydra.run.dir={tmp_path}"]
    killed = cli(args, fault=f"sigkill@{kill_step}")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "results.json").exists()
    mid = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (mid["epoch"], mid["global_step"]) == (epoch, kill_step - 1)  # the resume point
    assert mid["ImageDataModule"] == {"epoch": epoch, "batches": batches}
    # a kill during a checkpoint write leaves the atomic writer's temporary file: the resumed job removes it
    unfinished = tmp_path / "checkpoints" / f".step{kill_step + 3:08d}.ckpt.k1lled.tmp"
    unfinished.write_bytes(b"half a checkpoint")

    resumed = cli(args + ["resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not unfinished.exists()
    # Lightning's "dataloader is not resumable" would be false here: the data module's sampler resumes
    assert "not resumable" not in resumed.stdout + resumed.stderr
    a, b = results(straight), results(tmp_path)
    assert b["resumed_from"].endswith(".ckpt") and a["resumed_from"] is None
    assert b["test/acc1"] == a["test/acc1"]
    assert abs(b["train/loss_last"] - a["train/loss_last"]) <= 1e-6
    wa, wb = _weights(straight), _weights(tmp_path)
    assert wa["global_step"] == wb["global_step"] > 5
    for key, value in wa["state_dict"].items():
        assert torch.allclose(value.float(), wb["state_dict"][key].float(), atol=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["sigterm", "sigusr1", "sigusr2"])
def test_signal_saves_checkpoint_and_exits_cleanly(tmp_path, straight, sig):
    args = RUN + ["data.num_workers=0", f"hydra.run.dir={tmp_path}"]
    stopped = cli(args, fault=f"{sig}@3")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    record = results(tmp_path)["stopped"]
    assert record["reason"] == f"signal {sig.upper()}" and record["step"] == 3
    ckpt = load_checkpoint(record["checkpoint"])  # weights_only=True
    assert ckpt["global_step"] == 3 and ckpt["ImageDataModule"] == {"epoch": 0, "batches": 3}
    if sig != "sigusr2":
        return  # the resume path is the same for every signal; exercised once (SLURM's SIGUSR2) to keep it short
    # the requeued job runs the same command with resume=auto and ends where the straight run ends
    resumed = cli(args + ["resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Lightning's "dataloader is not resumable" would be false here: the data module's sampler resumes
    assert "not resumable" not in resumed.stdout + resumed.stderr
    assert results(tmp_path)["test/acc1"] == results(straight)["test/acc1"]
    assert abs(results(tmp_path)["train/loss_last"] - results(straight)["train/loss_last"]) <= 1e-6


@pytest.mark.slow
def test_a_signal_to_the_whole_process_group_spares_the_loader_workers(tmp_path):
    # SLURM signals every process of the job and `kill -- -<pgid>` the whole group: the loader workers get the
    # signal too, and must leave the stop to the training process (one checkpoint, exit 0, no worker error)
    import os

    job = cli_background(RUN + ["data.num_workers=2", f"hydra.run.dir={tmp_path}"], fault="pause@3", new_session=True)
    wait_for_file(tmp_path / "paused-step3.pid", job)
    os.killpg(job.pid, signal.SIGTERM)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-2000:]
    assert "killed by signal" not in out + err and not list(tmp_path.glob("failed-rank*.json"))
    record = results(tmp_path)["stopped"]
    assert record["reason"] == "signal SIGTERM" and record["step"] == 3
