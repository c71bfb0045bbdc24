"""The console script: one subprocess smoke test per command, help texts, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "cnnbench"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
SMALL = ["hardware=cpu", "logger=csv", "data=synthetic", "trainer.max_epochs=1", "data.num_train=64",
         "data.val_split=16", "data.num_test=16", "trainer.enable_progress_bar=false"]


def run(args, cwd, timeout=300):
    return subprocess.run(CLI + list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands(tmp_path):
    out = run(["--help"], tmp_path)
    assert out.returncode == 0
    for command in ("train", "eval", "profile", "predict"):
        assert f"  {command}" in out.stdout


def test_train_help_shows_groups(tmp_path):
    out = run(["train", "--help"], tmp_path)
    assert out.returncode == 0
    groups = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ") and "; also:" in line}
    assert groups >= {"model", "optimizer", "schedule", "augmentation", "hardware", "data", "logger", "experiment"}
    assert "resnet20; also:" in out.stdout and "ddp_cpu" in out.stdout
    assert "max_epochs: 3" in out.stdout  # its own keys, with their defaults


def test_unknown_command_one_line(tmp_path):
    out = run(["trian"], tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "valid commands: train, eval, profile, predict" in out.stderr


@pytest.mark.parametrize("args,needle", [
    (["model.name=resnet21"], "model.name='resnet21' is invalid; did you mean resnet20? valid: alexnet"),
    # one case runs in test-fast; each of the others costs a cold start of the console script
    *[pytest.param(*case, marks=pytest.mark.slow) for case in [
        (["model=resnet20", "+model.depth=3"], "unknown option(s) depth for model 'resnet20'"),
        (["optimizer.name=lamb"], "optimizer.name='lamb' is invalid; valid: sgd, rmsprop, adamw"),
        (["schedule.name=foo"], "schedule.name='foo' is invalid; valid: onecycle"),
        (["data.val_split=-1"], "data.val_split=-1"),
    ]],
])
def test_bad_values_are_one_clear_line(tmp_path, args, needle):
    out = run(["train", *SMALL, *args], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and needle in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists(), list((tmp_path / "outputs").rglob("*"))  # no half-made run dir


def test_unused_run_dir_is_removed_only_when_it_holds_hydras_files_alone(tmp_path, monkeypatch):
    import time

    import cnnbench.runtime as runtime

    monkeypatch.setattr(runtime, "PROCESS_START", time.time())
    run_dir = tmp_path / "outputs" / "train" / "day" / "time"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "train.log").write_text("")
    kept = tmp_path / "outputs" / "train" / "other"
    kept.mkdir()
    assert runtime.remove_unused_run_dir(run_dir, tmp_path)
    assert not (tmp_path / "outputs" / "train" / "day").exists()  # its empty parent, made now, goes too
    assert kept.is_dir() and (tmp_path / "outputs" / "train").is_dir()  # not empty: kept

    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "last.ckpt").write_bytes(b"x")  # anything besides Hydra's files: kept
    assert not runtime.remove_unused_run_dir(run_dir, tmp_path) and (run_dir / "last.ckpt").is_file()

    (run_dir / "last.ckpt").unlink()
    monkeypatch.setattr(runtime, "PROCESS_START", time.time() + 60)  # the dir predates the process (a resume)
    assert not runtime.remove_unused_run_dir(run_dir, tmp_path) and run_dir.is_dir()


def test_unknown_group_option_and_key_name_choices(tmp_path):
    out = run(["train", "model=resnet21"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert "model=resnet21 is not an option of the 'model' group; did you mean resnet20? valid choices:" in out.stderr
    assert "resnet20" in out.stderr
    out = run(["train", "optimizer.lrr=0.1"], tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "unknown key 'optimizer.lrr'" in out.stderr and "did you mean lr? valid keys of optimizer:" in out.stderr
    assert "momentum" in out.stderr


def test_cfg_job_prints_config(tmp_path):
    out = run(["train", "--cfg", "job", "model=resnet56"], tmp_path)
    assert out.returncode == 0 and "name: resnet56" in out.stdout and "trainer:" in out.stdout


@pytest.mark.slow
def test_train_eval_profile_predict_smoke(tmp_path):
    """One run of each command through the console entry point."""
    out = run(["train", *SMALL, "run_name=smoke"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "train" / "smoke"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["run_dir"] == str(run_dir) and Path(results["checkpoint"]).is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    assert "cnnbench: resnet20 on synthetic — test acc1" in out.stdout

    out = run(["eval", f"ckpt_path={results['checkpoint']}", "data=synthetic", "data.num_test=16", "run_name=e"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "outputs/eval/e/eval.json").read_text())["n_images"] == 16

    out = run(["profile", "model=resnet50", "run_name=p"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    profile = json.loads((tmp_path / "outputs/profile/p/profile.json").read_text())
    assert profile["params"] == 25_557_032  # torchvision's resnet50 (option B shortcuts)
    assert profile["paper_params"] is not None

    from PIL import Image

    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "red.png")
    out = run(["predict", f"ckpt_path={results['checkpoint']}", "image=red.png"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1. class_" in out.stdout and "5. class_" in out.stdout

    out = run(["export", f"ckpt_path={results['checkpoint']}", "format=onnx", "run_name=x"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "outputs/export/x/export.json").read_text())["check"]["allclose"] is True

    out = run(["report", "runs=outputs/train/*", "run_name=r"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "outputs/report/r/curves.png").is_file() and "| smoke | resnet20 |" in out.stdout


@pytest.mark.slow
def test_missing_checkpoint_is_one_line(tmp_path):
    out = run(["eval", "ckpt_path=nope.ckpt", "data=synthetic"], tmp_path)
    assert out.returncode == 2 and "checkpoint not found" in out.stderr and "Traceback" not in out.stderr
