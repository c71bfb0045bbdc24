"""The CLI as a new user meets it: --version, per-command help, errors that are one line before torch loads (with
or without -m), `-m … --cfg job`, shell completion through a real bash, and the user's own config dirs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "cnnbench"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
ENV.pop("CNNBENCH_CONFIG_DIR", None)


def run(args, cwd, env=None, timeout=120):
    return subprocess.run(CLI + list(args), cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def test_version_matches_the_installed_distribution(tmp_path):
    from importlib.metadata import version

    out = run(["--version"], tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"cnnbench {version('cnnbench')}"


# (command line, the error's text); each is checked to be one line, exit 2, raised with torch never imported
ERRORS = [
    (["train", "optimizer.lr=abc"], "cnnbench train: error: optimizer.lr='abc' is invalid; valid: a positive number"),
    (["train", "data=cifar10"], "cnnbench train: error: data.root is required by data=cifar10"),
    (["train", "data=cifar100"], "cnnbench train: error: data.root is required by data=cifar100"),
    (["train", "data=imagefolder"], "cnnbench train: error: data.root is required by data=imagefolder"),
    (["train", "model=resnet51"], "group; did you mean resnet50? valid choices: alexnet"),
    (["train", "-m", "model=resnet50,resnet51"], "model=resnet51 is not an option of the 'model' group; did you"),
    (["train", "-m", "optimizer.lr=0.1,-1"], "cnnbench train: error: optimizer.lr=-1 is invalid"),
    (["train", "-m", "data=cifar10", "optimizer.lr=0.1,0.05"], "data.root is required by data=cifar10"),
    (["train", "optimizer.lrr=0.1"], "unknown key 'optimizer.lrr' (lrr is not a key of optimizer); did you mean lr?"),
    (["train", "trainer.max_epoch=3"], "cnnbench train: error: trainer.max_epoch is not an argument of lightning"),
    (["train", "model.name=resnt20"], "model.name='resnt20' is invalid; did you mean resnet20?"),
    (["train", "schedule.name=cosin"], "schedule.name='cosin' is invalid; did you mean cosine?"),
    (["eval", "crops=7"], "cnnbench eval: error: crops=7 is invalid; valid: 1, 10, 12, 50 or 144"),
    (["eval", "ckpt_path=missing.ckpt"], "cnnbench eval: error: checkpoint not found:"),
    (["predict"], "cnnbench predict: error: ckpt_path is required and has no default; pass ckpt_path=…"),
    (["export", "ckpt_path=a.ckpt", "format=onxx"], "cnnbench export: error: format='onxx' is invalid; did you mean onnx?"),
    (["import-weights", "source=timm", "path=a.pth", "model=resnet50"], "cnnbench import-weights: error: source='timm'"),
    (["benchmark", "benchmark.mode=trian"], "cnnbench benchmark: error: benchmark.mode='trian' is invalid"),
    (["benchmark", "benchmark.steps=1"], "cnnbench benchmark: error: benchmark.steps=1 is invalid; valid: an integer >= 2"),
    (["benchmark", "benchmark.mode=fast"], "cnnbench benchmark: error: benchmark.mode='fast' is invalid; valid: train"),
    (["benchmark", "trainer.precision=16-true"], "cnnbench benchmark: error: trainer.precision='16-true' is invalid"),
    (["benchmark", "benchmark.workers=[]"], "cnnbench benchmark: error: benchmark.workers=[] is invalid"),
    (["export", "ckpt_path=a.ckpt", "format=tflite"], "cnnbench export: error: format='tflite' is invalid; valid: onnx"),
    (["profile", "model=vgg17"], "cnnbench profile: error: model=vgg17 is not an option of the 'model' group"),
    (["stylize", "content=a.jpg", "style=b.jpg", "stylize.solver=lbgfs"], "stylize.solver='lbgfs' is invalid; did you"),
    (["trian"], "cnnbench: error: unknown command 'trian'; did you mean train? valid commands: train, eval"),
]

_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys, time
    from cnnbench.cli import main
    out = []
    for args in json.loads(sys.argv[1]):
        err = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stderr(err):
            try:
                main(args)
                code = 0
            except SystemExit as stop:
                code = stop.code
        out.append({"code": code, "stderr": err.getvalue(), "torch": "torch" in sys.modules,
                    "lightning": "lightning" in sys.modules, "seconds": time.perf_counter() - start})
    print(json.dumps(out))
""")


def test_every_value_error_is_one_line_before_torch_loads(tmp_path):
    """All cases in one process (main() in-process, in order): torch must still be unloaded after the last."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([args for args, _ in ERRORS])], cwd=tmp_path,
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for (args, needle), result in zip(ERRORS, results, strict=True):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] == 2, (args, result)
        assert len(lines) == 1 and needle in lines[0], (args, lines)
        assert not result["torch"] and not result["lightning"], (args, "torch was imported")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_a_bad_value_answers_fast_from_a_cold_start(tmp_path):
    """The console script's whole process, Python's start-up included (≤ 1 s idle on 2 cores; 3 s here leaves
    room for a loaded test machine while still failing if torch (≈ 5 s) were imported)."""
    import time

    start = time.perf_counter()
    out = run(["train", "optimizer.lr=abc"], tmp_path)
    assert out.returncode == 2 and time.perf_counter() - start < 3.0


def test_multirun_with_cfg_job_prints_the_first_job(tmp_path):
    out = run(["train", "-m", "optimizer.lr=0.1,0.05", "model=resnet20,resnet56", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "first job (optimizer.lr=0.1 model=resnet20)" in out.stderr
    assert "lr: 0.1\n" in out.stdout and "name: resnet20" in out.stdout


def test_help_of_a_command_shows_only_the_groups_it_reads(tmp_path):
    predict = run(["predict", "--help"], tmp_path).stdout
    assert "top-k classes" in predict and "topk: 5" in predict and "ckpt_path: ???" in predict
    assert "optimizer" not in predict and "schedule" not in predict and "config groups" not in predict
    train = run(["train", "--help"], tmp_path).stdout
    assert "  optimizer " in train and "sgd; also: adamw" in train and "max_epochs: 3" in train
    top = run(["--help"], tmp_path).stdout
    assert all(f"  {c}" in top for c in ("train", "eval", "import-weights")) and "--version" in top


# -- completion ---------------------------------------------------------------------------------------
def _complete(line: str, tmp_path: Path, shell: str = "bash") -> list[str]:
    """<TAB> at the end of `line` in a real bash with the installed completion script."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "cnnbench"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m cnnbench \"$@\"\n")
    exe.chmod(0o755)
    script = textwrap.dedent(f"""
        eval "$(cnnbench -sc install={shell})"
        COMP_LINE='{line}'
        COMP_POINT=${{#COMP_LINE}}
        read -ra WORDS <<< "$COMP_LINE"
        COMP_CWORD=$(( ${{#WORDS[@]}} - 1 ))
        [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${{#WORDS[@]}}
        hydra_bash_completion
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """)
    env = {**ENV, "PATH": f"{bindir}:{ENV['PATH']}"}
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.split() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_completion_offers_commands_groups_and_keys(tmp_path):
    assert _complete("cnnbench e", tmp_path) == ["eval", "export"]
    resnets = _complete("cnnbench train model=resn", tmp_path)
    assert "model=resnet50" in resnets and "model=resnet20" in resnets and all("resn" in w for w in resnets)
    assert _complete("cnnbench eval cro", tmp_path) == ["crops="]
    assert "optimizer.lr=" in _complete("cnnbench train optimizer.l", tmp_path)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_completion_in_zsh(tmp_path):
    """The installed zsh widget's candidate function (compadd itself only runs inside a live completion)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "cnnbench").write_text(f"#!/bin/sh\nexec {sys.executable} -m cnnbench \"$@\"\n")
    (bindir / "cnnbench").chmod(0o755)
    script = ('autoload -Uz compinit && compinit -u; eval "$(cnnbench -sc install=zsh)"; '
              '(( $+functions[_cnnbench] )) || exit 3; _cnnbench_candidates "cnnbench train model=resn"')
    out = subprocess.run(["zsh", "-c", script], cwd=tmp_path, env={**ENV, "PATH": f"{bindir}:{ENV['PATH']}"},
                         capture_output=True, text=True, timeout=120)
    assert "model=resnet50" in out.stdout.split(), out.stderr


# -- the user's own configs ---------------------------------------------------------------------------
RECIPE = "# @package _global_\ndefaults:\n  - override /model: resnet56\noptimizer:\n  lr: 0.0123\n"
FOLDER = "name: imagefolder\nroot: /srv/my-images\n"


def test_user_configs_from_dot_conf_config_dir_and_environment(tmp_path):
    project = tmp_path / "project"
    (project / "conf" / "experiment").mkdir(parents=True)
    (project / "conf" / "experiment" / "my_recipe.yaml").write_text(RECIPE)
    out = run(["train", "experiment=my_recipe", "--cfg", "job"], project)
    assert out.returncode == 0, out.stderr
    assert "lr: 0.0123" in out.stdout and "name: resnet56" in out.stdout

    elsewhere = tmp_path / "mine"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "fashion_mnist.yaml").write_text(FOLDER)  # shadows the packaged option of that name
    for args, env in ((["--config-dir", str(elsewhere)], None), ([], {**ENV, "CNNBENCH_CONFIG_DIR": str(elsewhere)})):
        out = run(["train", *args, "--cfg", "job"], tmp_path, env=env)
        assert out.returncode == 0 and "root: /srv/my-images" in out.stdout, out.stderr
    listed = run(["train", "--config-dir", str(project / "conf"), "experiment=my_recipf"], tmp_path)
    assert listed.returncode == 2 and "did you mean my_recipe?" in listed.stderr
    missing = run(["train", "--config-dir", str(tmp_path / "nope")], tmp_path)
    assert missing.returncode == 2 and "--config-dir" in missing.stderr and "no such directory" in missing.stderr


def test_printing_into_a_closed_pipe_ends_quietly(tmp_path):
    """`cnnbench train --help | head -1`: no BrokenPipeError traceback (Unix tools end quietly)."""
    cli = " ".join(CLI)
    for args in ("--help", "train --help", "train --cfg job"):
        out = subprocess.run(["bash", "-c", f"{cli} {args} | head -1"], cwd=tmp_path, env=ENV, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.strip() and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, args
