"""A short `cnnbench train` prints each line once, no advertisement, no warning raised from cnnbench's code, and
its train.log still holds Lightning's lines."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_short_train_console_is_clean(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "train", "data=digits", "augmentation=none",
                           "trainer.max_epochs=1", "data.num_workers=0", "data.persistent_workers=false",
                           "logger=csv", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    duplicated = {line for line in lines if lines.count(line) > 1}
    assert not duplicated, duplicated
    text = "\n".join(lines)
    assert "Tip:" not in text and "litlogger" not in text
    assert not re.search(r"cnnbench/[\w/]+\.py:\d+: \w*Warning", text), text  # no warning from our modules
    assert "GPU available" in (tmp_path / "run" / "train.log").read_text()  # Lightning's lines reach the log file


@pytest.mark.slow
def test_a_run_shorter_than_an_epoch_reads_as_one(tmp_path):
    """`trainer.max_steps` ending the run inside its first epoch: no validation ran, so there is no best checkpoint
    and no warning about its missing metric; the progress line counts the one epoch the run enters."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "train", "data=digits", "augmentation=none",
                           "trainer.max_epochs=3", "trainer.max_steps=2", "data.num_workers=0",
                           "data.persistent_workers=false", "logger=csv", "trainer.enable_progress_bar=true",
                           "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "could not find the monitored key" not in text
    assert "train: epoch 1/1 · step 2/2 (100%)" in text, text[-2000:]
    assert "best val acc1 n/a, 1 epoch in" in text
