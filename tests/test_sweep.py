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
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "cnnbench", "train", "-m", "optimizer.lr=0.1,0.05", "hardware=cpu",
                          "trainer.precision=32-true", "logger=wandb", "data=synthetic", "data.num_train=64", "data.val_split=16",
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
    # one offline W&B run per job, in that job's dir (not job 1 logging into job 0's run)
    runs = [list((tmp_path / "sweep" / job / "wandb").glob("offline-run-*")) for job in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1], runs
    assert runs[0][0].name.split("-")[-1] != runs[1][0].name.split("-")[-1]  # two run ids


def test_wandb_run_per_sweep_job_is_named_and_grouped(tmp_path, monkeypatch):
    from cnnbench import run
    from tests.helpers import compose_cfg

    monkeypatch.setattr(run, "_sweep_job", lambda: ("multirun/train/2026-12-02/10-00-00", 3))
    cfg = compose_cfg("train", ["logger=wandb", "logger.wandb.mode=disabled"])
    wandb_logger = run.build_loggers(cfg, tmp_path)[1]
    assert wandb_logger._wandb_init["name"] == "job3"
    assert wandb_logger._wandb_init["group"] == "multirun/train/2026-12-02/10-00-00"
    cfg = compose_cfg("train", ["logger=wandb", "logger.wandb.mode=disabled", "run_name=lr01"])
    assert run.build_loggers(cfg, tmp_path)[1]._wandb_init["name"] == "lr01"


def test_summary_prints_one_line_per_job_with_the_keys_that_differ(tmp_path, capsys):
    common = ["model=resnet20", "data=fashion_mnist", "trainer.max_epochs=30", "augmentation=pad_crop_flip"]
    for job, lr, acc in (("0", "0.1", 0.91), ("1", "0.05", 0.9)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in [*common, f"optimizer.lr={lr}"]))
        (tmp_path / job / "results.json").write_text(json.dumps({"model": "resnet20", "test/acc1": acc,
                                                                  "val/acc1": acc, "wall_s": 250.0}))
    write_summary(tmp_path)
    out = capsys.readouterr().out.splitlines()
    header, rows = out[1], out[2:4]
    assert header.split() == ["job", "optimizer.lr", "test/acc1", "val/acc1", "wall_s"]
    assert rows[0].split() == ["0", "0.1", "0.9100", "0.9100", "250.0"] and rows[1].split()[:2] == ["1", "0.05"]
    assert all(len(line) <= 80 for line in out[1:4])
    assert "best by val/acc1: job 0" in out[4]
    md = (tmp_path / "summary.md").read_text()
    assert "| job | optimizer.lr | test/acc1 | val/acc1 | wall_s |" in md
    assert "model=resnet20" in (tmp_path / "summary.csv").read_text()  # full overrides stay in the CSV


def test_optuna_search_refuses_a_recipe_without_validation_split():
    from cnnbench.config_schema import problems
    from tests.helpers import compose_cfg

    cfg = compose_cfg("train", ["hparams_search=optuna_lr_wd", "experiment=resnet_cifar", "data.val_split=0"])
    assert any("optimized_metric=val/acc1 is only produced with a validation split" in p for p in problems(cfg))
    cfg = compose_cfg("train", ["hparams_search=optuna_lr_wd", "data.val_split=5000"])
    assert not [p for p in problems(cfg) if "optimized_metric" in p]


def test_summary_prints_optunas_best_parameters(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "results.json").write_text(json.dumps({"model": "m", "val/acc1": 0.5}))
    (tmp_path / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  optimizer.lr: 0.05\nbest_value: 0.5\n")
    write_summary(tmp_path)
    assert "best parameters (optimization_results.yaml): optimizer.lr=0.05 → 0.5" in capsys.readouterr().out


def _cnnbench(args: list[str], cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_optuna_search_three_trials_prints_and_writes_the_best_parameters(tmp_path):
    out = _cnnbench(["train", "-m", "hparams_search=optuna_lr_wd", "data=digits", "hydra.sweeper.n_trials=3",
                     "hardware=cpu", "trainer.precision=32-true", "logger=none", "trainer.enable_progress_bar=false",
                     "augmentation=none", "trainer.max_epochs=1", "data.limit_train=128", "data.limit_val=64",
                     "data.limit_test=64", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "sweep"
    trials = {}
    for job in ("0", "1", "2"):
        overrides = dict(o.split("=", 1) for o in _yaml_list(sweep / job / ".hydra" / "overrides.yaml"))
        params = {k: float(overrides[k]) for k in ("optimizer.lr", "optimizer.weight_decay")}
        trials[job] = (params, json.loads((sweep / job / "results.json").read_text())["val/acc1"])
    assert not (sweep / "3").exists()
    assert len({tuple(p.values()) for p, _ in trials.values()}) == 3  # three different points of the search space

    from omegaconf import OmegaConf

    found = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert found["best_value"] == max(v for _, v in trials.values())  # Optuna maximised the trials' val/acc1
    assert found["best_params"] in [p for p, v in trials.values() if v == found["best_value"]]
    line = ("best parameters (optimization_results.yaml): "
            + " ".join(f"{k}={v}" for k, v in found["best_params"].items()) + f" → {found['best_value']}")
    assert line in out.stdout.splitlines()
    assert line in (sweep / "summary.md").read_text()


def _yaml_list(path) -> list[str]:
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


@pytest.mark.slow
def test_optuna_search_refused_in_one_line_before_any_trial(tmp_path):
    out = _cnnbench(["train", "-m", "hparams_search=optuna_lr_wd", "experiment=resnet_cifar", "data.root=cifar", "hydra.sweep.dir=sweep"],
                    cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("cnnbench train: error: optimized_metric=val/acc1") and "data.val_split=" in lines[0]
    assert not (tmp_path / "sweep").exists()  # no trial (and no sweep) dir: refused before the study started
    assert "Study name" not in out.stdout + out.stderr and "Launching" not in out.stdout + out.stderr
    # hparams_search sets hydra.mode=MULTIRUN itself: the same refusal without -m
    again = _cnnbench(["train", "hparams_search=optuna_lr_wd", "experiment=resnet_cifar", "data.root=cifar", "hydra.sweep.dir=sweep"],
                      cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip() == lines[0]
    assert not (tmp_path / "sweep").exists()


def test_sweep_precheck_leaves_a_swept_validation_split_to_each_job():
    from omegaconf import OmegaConf

    from cnnbench.sweep import sweep_problem

    def config(task_overrides, params=None):
        return OmegaConf.create({"optimized_metric": "val/acc1", "data": {"val_split": 0},
                                 "hydra": {"overrides": {"task": task_overrides}, "sweeper": {"params": params}}})

    assert "data.val_split=" in sweep_problem(config(["experiment=resnet_cifar"]))
    assert sweep_problem(config(["data.val_split=0,5000"])) is None  # job 1 has a validation split
    assert sweep_problem(config([], params={"data.val_split": "range(0, 2)"})) is None  # Optuna's search space
    ok = config(["data.val_split=5000"])
    ok.data.val_split = 5000
    assert sweep_problem(ok) is None
