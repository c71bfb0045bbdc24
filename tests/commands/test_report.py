"""`cnnbench report runs=<glob>`: a table and PNG plots from a small sweep of real runs."""
from __future__ import annotations

import json

import pytest

from cnnbench.errors import UserError
from tests.helpers import compose_cfg

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_on_a_tiny_sweep(tmp_path, tiny_checkpoint, tiny_checkpoint_b):
    import shutil

    from cnnbench.commands.report import report

    sweep = tmp_path / "sweep"
    for i, ckpt in enumerate((tiny_checkpoint, tiny_checkpoint_b)):
        run = ckpt.parent.parent
        (sweep / str(i)).mkdir(parents=True)
        for name in ("results.json", "metrics.csv"):
            shutil.copy(run / name, sweep / str(i) / name)
    # a CIFAR-10 ResNet-20 result: the paper's Table 6 number goes beside ours
    (sweep / "2").mkdir()
    (sweep / "2" / "results.json").write_text(json.dumps({"model": "resnet20", "data": "cifar10", "test/acc1": 0.9,
                                                         "test/acc5": 0.99, "epochs": 1, "wall_s": 3.0}))
    out_dir = tmp_path / "report"
    out = report(compose_cfg("report", [f"runs={sweep}/*"]), run_dir=out_dir)
    assert [r["run"] for r in out["runs"]] == ["0", "1", "2"]
    md = (out_dir / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 3
    assert "| resnet20 | digits |" in rows[0] and "| plain20 | digits |" in rows[1]
    assert "| 10.00 | 8.75 |" in rows[2]  # ours 10.00 % top-1 error beside the paper's 8.75 %
    for png in ("curves.png", "paper.png"):
        assert (out_dir / png).read_bytes()[:8] == PNG and f"![{png}]({png})" in md


def test_report_matching_nothing_says_so(tmp_path):
    from cnnbench.commands.report import report

    with pytest.raises(UserError, match="matched no run directory"):
        report(compose_cfg("report", [f"runs={tmp_path}/nothing*"]), run_dir=tmp_path / "r")
