"""`cnnbench report runs=<glob>`: a table and PNG plots from a sweep's run dirs — real tiny runs, and synthetic run
dirs (tests/helpers.write_run) carrying what newer runs record (learning rate, speed) or what older runs lack."""
from __future__ import annotations

import json

import pytest

from cnnbench.errors import UserError
from tests.helpers import compose_cfg, write_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures report writes, by file name, still inspectable after they are saved and closed."""
    from matplotlib.figure import Figure

    saved, original = {}, Figure.savefig

    def savefig(self, path, *args, **kwargs):
        saved[str(path).rsplit("/", 1)[-1]] = self
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _report(tmp_path, pattern: str) -> dict:
    from cnnbench.commands.report import report

    return report(compose_cfg("report", [f"runs={pattern}"]), run_dir=tmp_path / "report")


def _table(tmp_path) -> list[dict[str, str]]:
    """report.md's table as one dict per row, keyed by the header's column names."""
    lines = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines() if line.startswith("| ")]
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    return [dict(zip(split(lines[0]), split(line), strict=True)) for line in lines[1:]]


def _results(acc1: float, wall_s: float, images_per_s: float | None = None, **extra) -> dict:
    out = {"model": "resnet20", "data": "digits", "seed": 42, "test/acc1": acc1, "test/acc5": 0.99,
           "val/acc1": acc1 + 0.01, "epochs": 3, "wall_s": wall_s, **extra}
    if images_per_s is not None:
        out["speed"] = {"train_images_per_s": images_per_s, "step_images_per_s": images_per_s * 1.1,
                        "loader_images_per_s": None, "data_wait_share": 0.04, "epoch_s": wall_s / 3,
                        "peak_memory_mb": 300.0}
    return out


def test_report_on_a_tiny_sweep(tmp_path, tiny_checkpoint, tiny_checkpoint_b):
    """Real runs without Hydra's records: labelled by what their results.json say differs."""
    import shutil

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
    out = _report(tmp_path, f"{sweep}/*")
    recorded = [json.loads((sweep / str(i) / "results.json").read_text()) for i in range(3)]
    labels = [r["run"] for r in out["runs"]]
    assert len(set(labels)) == 3 and "model" in out["compared"] and "data" in out["compared"]
    for label, res in zip(labels, recorded, strict=True):
        assert f"model={res['model']}" in label.split() and f"data={res['data']}" in label.split()
    rows = _table(tmp_path)
    assert [r["run"] for r in rows] == labels
    assert [r["model"] for r in rows] == ["resnet20", "plain20", "resnet20"]
    assert (rows[2]["top-1 err %"], rows[2]["paper top-1 err %"]) == ("10.00", "8.75")  # ours beside Table 6's
    md = (tmp_path / "report" / "report.md").read_text()
    for png in ("curves.png", "paper.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == PNG and f"![{png}]({png})" in md


def test_a_two_job_sweep_is_labelled_by_the_override_that_differs(tmp_path, figures):
    sweep = tmp_path / "multirun" / "train" / "2026-01-01" / "10-00-00"
    lrs, speeds, walls = (0.1, 0.05), (1234.4, 987.6), (90.0, 150.0)
    for job, (lr, speed, wall) in enumerate(zip(lrs, speeds, walls, strict=True)):
        write_run(sweep / str(job), overrides=["data=digits", "++trainer.max_epochs=3", f"optimizer.lr={lr}",
                                               "logger=csv"],
                  results=_results(0.9 - job / 10, wall, speed), lr=lr, noise_seed=job)
    out = _report(tmp_path, f"{sweep}/*")
    labels = [f"optimizer.lr={lr}" for lr in lrs]
    assert [r["run"] for r in out["runs"]] == labels and out["compared"] == ["optimizer.lr"]
    assert "(2 runs, differing in `optimizer.lr`)" in (tmp_path / "report" / "report.md").read_text()
    rows = _table(tmp_path)
    assert [r["run"] for r in rows] == labels
    assert [r["train images/s"] for r in rows] == [f"{s:,.0f}" for s in speeds]
    assert [r["wall min"] for r in rows] == [f"{w / 60:.2f}" for w in walls]
    curves = figures["curves.png"]
    assert [t.get_text() for t in curves.legends[0].get_texts()] == labels
    bars = figures["paper.png"].axes[0]
    assert bars.get_title() == "top-1 error by optimizer.lr"
    assert [t.get_text() for t in bars.get_xticklabels()] == ["0.1", "0.05"]
    assert "no paper number" in " ".join(t.get_text() for t in figures["paper.png"].texts)


def test_labels_fall_back_to_the_composed_configs(tmp_path):
    """No overrides recorded: the configs are compared, paths and bookkeeping keys left out; job 10 after job 9."""
    for job, lr in ((9, 0.1), (10, 0.05)):
        config = {"task": "train", "seed": 42, "run_dir": str(tmp_path / str(job)), "run_name": f"r{job}",
                  "data": {"name": "digits", "root": str(tmp_path / f"data{job}")},
                  "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9}}
        write_run(tmp_path / "runs" / str(job), config=config, results=_results(0.8, 60.0))
    out = _report(tmp_path, f"{tmp_path}/runs/*")
    assert [r["run"] for r in out["runs"]] == ["optimizer.lr=0.1", "optimizer.lr=0.05"]
    assert [r["name"] for r in out["runs"]] == ["9", "10"]


def test_labels_fall_back_to_dir_names_when_nothing_differs(tmp_path, figures):
    from cnnbench.analysis.runs import run_labels

    for name in ("first", "second"):
        write_run(tmp_path / "runs" / name, overrides=["data=digits"], results=_results(0.8, 60.0))
    out = _report(tmp_path, f"{tmp_path}/runs/*")
    assert [r["run"] for r in out["runs"]] == ["first", "second"] and out["compared"] == []
    assert figures["paper.png"].axes[0].get_title() == "top-1 error per run"
    # a label two runs share is made unique by the runs' names
    assert run_labels([{"seed": "1"}, {"seed": "1"}, {"seed": "2"}], ["a", "b", "c"]) == \
        ["seed=1 (a)", "seed=1 (b)", "seed=2"]


def test_curves_per_step_with_a_learning_rate_panel_and_whole_epochs(tmp_path, figures):
    epochs, steps_per_epoch = 3, 25
    for job, lr in enumerate((0.2, 0.1)):
        write_run(tmp_path / "runs" / str(job), overrides=[f"optimizer.lr={lr}"], results=_results(0.8, 60.0, 900.0),
                  lr=lr, lr_groups=("decay", "no_decay"), epochs=epochs, steps_per_epoch=steps_per_epoch)
    _report(tmp_path, f"{tmp_path}/runs/*")
    loss, val, lr_ax = figures["curves.png"].axes
    assert "per step" in loss.get_title() and "per epoch" in val.get_title()
    steps = sorted({x for line in loss.get_lines() for x in line.get_xdata()})
    assert len(steps) == epochs * steps_per_epoch and steps[0] == 1  # every logged step, not one point an epoch
    assert [list(line.get_xdata()) for line in val.get_lines()] == [[1, 2, 3]] * 2
    ticks = [t for t in val.get_xticks() if val.get_xlim()[0] <= t <= val.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert lr_ax.get_title() == "learning rate per step"
    drawn = [line for line in lr_ax.get_lines() if len(line.get_xdata())]
    assert len(drawn) == 4  # 2 runs × 2 parameter groups; the momentum columns are not learning rates
    assert max(max(line.get_ydata()) for line in drawn) == pytest.approx(0.2)
    assert [t.get_text() for t in lr_ax.get_legend().get_texts()] == ["lr/decay", "lr/no_decay"]


def test_old_runs_without_the_new_columns_and_records(tmp_path, figures):
    """A run from before the learning-rate and speed logging, next to a new one; then old runs alone."""
    write_run(tmp_path / "mixed" / "old", results=_results(0.7, 30.0), new_columns=False)
    write_run(tmp_path / "mixed" / "new", results=_results(0.8, 30.0, 500.0, seed=43))
    _report(tmp_path, f"{tmp_path}/mixed/*")
    rows = {r["run"]: r for r in _table(tmp_path)}
    assert rows["seed=42"]["train images/s"] == "—" and rows["seed=43"]["train images/s"] == "500"
    lr_ax = figures["curves.png"].axes[2]
    assert len([line for line in lr_ax.get_lines() if len(line.get_xdata())]) == 1  # only the new run's

    for name in ("a", "b"):
        write_run(tmp_path / "old" / name, results={"model": "resnet20", "data": "digits", "test/acc1": 0.5},
                  new_columns=False, val=False)
    out = _report(tmp_path, f"{tmp_path}/old/*")
    assert [r["run"] for r in out["runs"]] == ["a", "b"] and out["plots"] == ["curves.png", "paper.png"]
    assert all(r["wall min"] == "—" and r["epochs"] == "—" for r in _table(tmp_path))
    loss, val = figures["curves.png"].axes  # no learning-rate column anywhere: no panel for it
    assert "no validation split" in " ".join(t.get_text() for t in val.texts)


def test_report_matching_nothing_says_so(tmp_path):
    with pytest.raises(UserError, match="matched no run directory"):
        _report(tmp_path, f"{tmp_path}/nothing*")
