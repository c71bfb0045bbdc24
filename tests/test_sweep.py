"""`cnnbench train -m …`: every job in its own run dir, and one summary of all jobs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from cnnbench.sweep import write_summary


def test_summary_table_from_results(tmp_path):
    for job, acc in (("0", 0.5), ("1", 0.75)):
        (tmp_path / job).mkdir()
        (tmp_path / job / "results.json").write_text(json.dumps({"model": "m", "test/acc1": acc}))
    rows = write_summary(tmp_path)
    assert [r["test/acc1"] for r in rows] == [0.5, 0.75]
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [row["job"] for row in table] == ["0", "1"] and table[1]["test/acc1"] == "0.75"


@pytest.mark.slow
def test_multirun_two_lrs(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "cnnbench", "train", "-m", "optimizer.lr=0.1,0.05", "hardware=cpu",
                          "logger=csv", "data=synthetic", "data.num_train=64", "data.val_split=16",
                          "data.num_test=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                          "hydra.sweep.dir=sweep"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / "sweep" / j / "results.json").read_text()) for j in ("0", "1")]
    assert [r["lr_base"] for r in results] == [0.1, 0.05]
    assert results[0]["run_dir"] != results[1]["run_dir"]
    # wall_s times each job, not the process so far: the second job's does not include the first job's
    files = [tmp_path / "sweep" / j / "results.json" for j in ("0", "1")]
    assert results[1]["wall_s"] <= files[1].stat().st_mtime - files[0].stat().st_mtime + 0.5
    assert "sweep summary" in out.stdout
    assert len(list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))) == 2
