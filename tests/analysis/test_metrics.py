"""The one metrics.csv reader (cnnbench/analysis/metrics.py) and the analyses that read through it."""
from __future__ import annotations

import pytest

from cnnbench.analysis.metrics import Point, by_epoch, by_step, lr_columns, read_metrics
from tests.helpers import write_metrics_csv

# Lightning's CSV logger: one row per logging call, the metrics it did not log left empty
CSV = """epoch,step,train/err,train/loss,val/acc1,lr/decay,lr/decay-momentum
0,0,0.75,2.5,,0.1,0.9
0,1,0.5,2.0,,0.1,0.9
0,1,,,0.25,,
1,3,0.25,1.5,,0.01,0.9
1,3,,,0.5,,
,,,,0.6,,
1,4,,not a number,,,
"""


def test_read_metrics_gives_each_column_with_its_step_and_epoch(tmp_path):
    (tmp_path / "metrics.csv").write_text(CSV)
    m = read_metrics(tmp_path / "metrics.csv")
    assert set(m) == {"train/err", "train/loss", "val/acc1", "lr/decay", "lr/decay-momentum"}
    assert m["val/acc1"] == [Point(1, 0, 0.25), Point(3, 1, 0.5), Point(None, None, 0.6)]
    assert len(m["train/loss"]) == 3  # the cell that is not a number is skipped
    assert by_step(m["train/loss"]) == [(1, 2.5), (2, 2.0), (4, 1.5)]
    assert by_epoch(m["val/acc1"]) == [(1, 0.25), (2, 0.5)]  # the row without an epoch is left out
    assert lr_columns(m) == ["lr/decay"]
    assert read_metrics(tmp_path / "missing.csv") == {}


def test_degradation_read_curves_reads_through_it(tmp_path):
    from cnnbench.analysis.degradation import read_curves

    (tmp_path / "metrics.csv").write_text(CSV)
    curves = read_curves(tmp_path / "metrics.csv")
    m = read_metrics(tmp_path / "metrics.csv")
    assert curves["train"] == [(p.step + 1, p.value) for p in m["train/err"]]
    assert curves["val"] == [(p.step + 1, 1 - p.value) for p in m["val/acc1"] if p.step is not None]
    assert curves["grad_norm"] == []


def test_the_test_helper_writes_what_newer_runs_log(tmp_path):
    write_metrics_csv(tmp_path / "metrics.csv", epochs=2, steps_per_epoch=6, lr=0.4, lr_groups=("decay", "no_decay"))
    m = read_metrics(tmp_path / "metrics.csv")
    assert lr_columns(m) == ["lr/decay", "lr/no_decay"]
    # ÷10 after each third of the run; the no-decay group at half the rate
    assert [v for _, v in by_step(m["lr/decay"])] == pytest.approx([0.4] * 4 + [0.04] * 4 + [0.004] * 4)
    assert [v for _, v in by_step(m["lr/no_decay"])] == pytest.approx([0.2] * 4 + [0.02] * 4 + [0.002] * 4)
    assert len(by_step(m["train/loss"])) == 12 and len(by_epoch(m["val/acc1"])) == 2
    for column in ("speed/train_images_per_s", "speed/step_images_per_s", "speed/loader_images_per_s",
                   "speed/data_wait_share", "time/epoch_s", "memory/peak_mb", "lr/decay-momentum"):
        assert m[column], column
