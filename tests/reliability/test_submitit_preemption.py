"""Sweeps through Hydra's real submitit launcher (`hydra/launcher=submitit_local`, the local twin of
`submitit_slurm`): one run dir per job, and SLURM's pre-timeout SIGUSR2 → checkpoint → submitit's requeue →
`resume=auto` ending with the weights of an uninterrupted run (docs/reliability.md)."""
from __future__ import annotations

import os
import signal

import pytest

from tests.reliability.reliability_helpers import (
    CLI_FAST,
    assert_same_weights,
    cli,
    cli_background,
    results,
    wait_for_file,
)

# 192 training images in batches of 16: 12 steps in the one epoch, so step 3 is mid-epoch.
JOB = CLI_FAST + ["trainer.precision=32-true", "data=synthetic", "data.batch_size=16", "data.num_workers=0",
                  "trainer.deterministic=true", "augmentation=pad_crop_flip", "trainer.max_epochs=1", "resume=auto"]
SWEEP = ["train", "-m", "hydra/launcher=submitit_local"]


@pytest.mark.slow
def test_submitit_local_sweep_then_sigusr2_requeue_resumes_to_the_same_weights(tmp_path):
    # (a) a two-job sweep through the real launcher: each job its own run dir with results.json
    straight = tmp_path / "straight"
    done = cli(SWEEP + JOB + ["seed=7,8", f"hydra.sweep.dir={straight}"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in done.stdout + done.stderr  # submitit ran the jobs, not Hydra's basic launcher
    jobs = [results(straight / j) for j in ("0", "1")]
    assert [r["seed"] for r in jobs] == [7, 8] and jobs[0]["run_dir"] != jobs[1]["run_dir"]
    assert all(r["steps"] == 12 and "stopped" not in r and r["resumed_from"] is None for r in jobs)

    # (b) the seed-7 job again, held after 3 steps until SIGUSR2 comes from outside (what SLURM sends
    # `signal_delay_s` before the time limit under submitit_slurm), sent to the job's own python process
    preempted = tmp_path / "preempted"
    sweep = cli_background(SWEEP + JOB + ["seed=7", f"hydra.sweep.dir={preempted}"], fault="pause@3")
    pid_file = wait_for_file(preempted / "0" / "paused-step3.pid", sweep)
    job_pid = int(pid_file.read_text())
    assert job_pid != sweep.pid  # the job runs in submitit's own process, not in the sweep's
    os.kill(job_pid, signal.SIGUSR2)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err[-3000:]

    log = (preempted / "0" / "train.log").read_text()
    last = preempted / "0" / "checkpoints" / "last.ckpt"
    assert f"SIGUSR2 received — saved {last} at step 3" in log  # Preemption's checkpoint, mid-epoch
    assert "Requeued job" in log  # then submitit's handler requeued the job, which ran again
    resumed = results(preempted / "0")
    assert resumed["resumed_from"] == str(last) and "stopped" not in resumed  # resume=auto took that checkpoint
    assert not (last.parent / "last-v1.ckpt").exists()  # the resumed run kept writing last.ckpt
    assert assert_same_weights(straight / "0" / "checkpoints" / "last.ckpt", last, atol=0) == 12
    assert resumed["test/acc1"] == jobs[0]["test/acc1"] and resumed["train/loss_last"] == jobs[0]["train/loss_last"]
