"""`cnnbench eval` as typed: without ckpt_path the newest finished training run, without data= the checkpoint's
own data; argument errors before Hydra makes a run dir."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from cnnbench.checkpoint import load_checkpoint, record_of
from cnnbench.errors import UserError
from cnnbench.run import data_for_checkpoint, latest_finished_run
from tests.helpers import compose_cfg


def _run(root, name: str, ckpt, **extra) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps({"checkpoint": str(ckpt), **extra}))
    time.sleep(0.02)  # distinct mtimes


def test_latest_finished_run_skips_stopped_and_missing_checkpoints(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    _run(tmp_path / "outputs" / "train", "old", a)
    _run(tmp_path / "multirun" / "train" / "s", "0", b)
    _run(tmp_path / "outputs" / "train", "stopped", a, stopped={"reason": "signal SIGTERM"})
    _run(tmp_path / "outputs" / "train", "gone", tmp_path / "missing.ckpt")
    run_dir, ckpt = latest_finished_run([str(tmp_path / "outputs"), str(tmp_path / "multirun")])
    assert (run_dir.name, ckpt) == ("0", str(b))
    assert latest_finished_run([str(tmp_path / "outputs")])[1] == str(a)  # eval.latest_from narrows it
    with pytest.raises(UserError, match="no finished training run was found under"):
        latest_finished_run([str(tmp_path / "nothing")])


def test_checkpoint_records_its_data_and_eval_defaults_to_it(tiny_checkpoint):
    record = record_of(load_checkpoint(tiny_checkpoint), tiny_checkpoint)
    assert record["data_config"]["name"] == "digits" and record["data_config"]["val_split"] == 0.15
    data, note = data_for_checkpoint(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}"]), record)
    assert data.name == "digits" and data.val_split == 0.15 and note == "data=digits from the checkpoint"
    data, _ = data_for_checkpoint(compose_cfg("eval", ["data.num_workers=0"]), record)
    assert data.num_workers == 0  # a command-line data.<key> still applies
    data, note = data_for_checkpoint(compose_cfg("eval", ["data=fashion_mnist"]), record)
    assert data.name == "fashion_mnist"
    assert note == "data=fashion_mnist from the command line (the checkpoint was trained on digits)"
    with pytest.raises(UserError, match="does not record its data config.*data=digits"):
        data_for_checkpoint(compose_cfg("eval"), {"data": "digits"})


def test_bare_eval_without_runs_is_one_line_and_leaves_no_run_dir(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for args in (["crops=144"], ["crops=7", "ckpt_path=x.ckpt"], ["ckpt_path=missing.ckpt"]):
        proc = subprocess.run([sys.executable, "-m", "cnnbench", "eval", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not any(tmp_path.iterdir()), args
    assert "valid: 1, 10, 12, 50 or 144" in subprocess.run(
        [sys.executable, "-m", "cnnbench", "eval", "crops=7"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120).stderr


# Runs the CLI like the console script, then reports which heavy modules the process had loaded by its exit.
_IMPORTS_AT_EXIT = """
import sys
from cnnbench.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as stop:
    code = stop.code
print("loaded:", ",".join(m for m in ("torch", "lightning", "cv2") if m in sys.modules))
sys.exit(code)
"""


@pytest.mark.parametrize("args,needle", [
    (["crops=7"], "crops=7 is invalid; valid: 1, 10, 12, 50 or 144"),
    (["crops=7", "ckpt_path=x.ckpt"], "crops=7 is invalid"),
    (["ckpt_path=missing.ckpt"], "checkpoint not found:"),
    (["split=train", "ckpt_path=x.ckpt"], "split='train' is invalid; valid: test or val"),
    (["eval.mode=sparse", "ckpt_path=x.ckpt"], "eval.mode='sparse' is invalid; valid: crops, multiscale or dense"),
    ([], "no finished training run was found"),
])
def test_eval_argument_errors_come_before_torch_is_imported(tmp_path, args, needle):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_AT_EXIT, "eval", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and needle in proc.stderr, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "loaded:", proc.stdout  # not torch, Lightning or OpenCV


def test_the_newest_run_is_named_once(tmp_path, capsys):
    """The CLI's check before Hydra and the command (or each job of `cnnbench eval -m …`) both look for the newest
    run when ckpt_path= is not given; the line saying which run they took is printed once."""
    from cnnbench.commands.evaluate import _checkpoints
    from cnnbench.precheck import check_eval

    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"x")
    _run(tmp_path / "outputs" / "train", "r1", ckpt)
    overrides = [f"eval.latest_from=[{tmp_path / 'outputs'}]"]
    args = check_eval(compose_cfg("eval", overrides), list(overrides))
    assert args[-1] == f"ckpt_path={ckpt}"  # what Hydra then gets
    for _ in range(2):  # two jobs of a sweep, each without ckpt_path
        assert _checkpoints(compose_cfg("eval", overrides)) == [str(ckpt)]
    out = capsys.readouterr().out
    assert out.count("ckpt_path not given") == 1 and f"using {ckpt}" in out


@pytest.mark.slow
def test_bare_eval_takes_the_newest_run(tmp_path, tiny_checkpoint):
    """`cnnbench eval` with only a run under outputs/: the CLI names the run and evaluates its checkpoint on the
    checkpoint's own data (digits), not the Fashion-MNIST default."""
    _run(tmp_path / "outputs" / "train", "r1", tiny_checkpoint)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "eval", "data.num_workers=0", "eval.progress=false",
                           "hydra.run.dir=ev"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"ckpt_path not given — using {tiny_checkpoint}" in proc.stdout
    assert proc.stdout.count("ckpt_path not given") == 1
    assert "data=digits from the checkpoint" in proc.stdout
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["data"] == "digits" and result["models"] == [str(tiny_checkpoint)]
