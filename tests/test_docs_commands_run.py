"""Every documented command that trains, evaluates, predicts, exports or reports *runs* (not only composes), in
the order the docs give them, in one scratch project: on digits, a few optimizer steps, the CPU.

Each line is shrunk the same way (`shrink`): its data becomes a 32-image digits subset (two steps per epoch), its
hardware one CPU process in fp32, GPU/cluster-only settings are dropped (DDP and SLURM have their own tests:
test_distributed.py, reliability/test_submitit_preemption.py), and placeholder files (`…/last.ckpt`, `r50.ckpt`,
`shoe.jpg`, `photos/`) are real files made first. Everything else on the line — recipe, model, schedule,
sweep, resume, continuation, crops — runs as written."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_docs_commands import COMMAND_LINES

RUNS = ("train", "eval", "predict", "export", "report")
# what a line may not keep: data sources that are not here, device counts, cluster launchers, slow sizes
DROPPED_KEYS = ("data", "data.root", "data.image_size", "data.val_split", "data.limit_test", "hardware",
                "trainer.devices", "trainer.num_nodes", "trainer.sync_batchnorm", "trainer.precision",
                "trainer.max_steps", "hydra/launcher", "hydra.sweep.dir", "hydra.run.dir", "hydra.sweeper.n_trials")
TINY = ["data=digits", "data.limit_train=32", "data.val_split=16", "data.limit_test=16", "data.batch_size=16",
        "data.num_workers=0", "hardware=cpu", "trainer.precision=32-true", "logger=csv",
        "trainer.enable_progress_bar=false", "trainer.max_steps=12"]
CHECKPOINTS = {"…/last.ckpt": "doc.ckpt", "r50.ckpt": "doc.ckpt", "a.ckpt": "doc.ckpt", "b.ckpt": "doc.ckpt",
               "b0.ckpt": "b0.ckpt"}


# lines not run here, and where what they exercise is tested instead
NOT_RUN = {"eval.mode=dense": "needs a VGG checkpoint trained at 224 px (minutes of CPU); dense evaluation on a "
                              "224-px VGG: tests/evaluation/test_engine.py"}


def shrink(line: str) -> list[str] | None:
    """The arguments of a documented line as run here, or None when it does not train/eval/predict/export/report."""
    words = shlex.split(line.replace("...", ""))[1:]
    if not words or words[0] not in RUNS or "--help" in words or "--cfg" in words:
        return None
    if any(marker in line for marker in NOT_RUN):
        return None
    command, out = words[0], [words[0]]
    for word in words[1:]:
        key = word.lstrip("+~").split("=", 1)[0]
        if key in DROPPED_KEYS or key.startswith("hydra.launcher."):
            continue
        for placeholder, made in CHECKPOINTS.items():
            word = word.replace(placeholder, made)
        word = word.replace("$SLURM_JOB_ID", "1")
        out.append(word)
    if command == "train":
        out += TINY + (["hydra.sweeper.n_trials=2"] if any("hparams_search" in w for w in out) else [])
        if "-m" in out:  # a sweep runs each job: two steps each (their curves and figures: test_claims.py)
            out += ["trainer.max_steps=2", "data.val_split=8", "data.limit_test=8"]
    if command == "eval":
        out += ["data.limit_test=16"]
    return out


def _distinct(lines):
    """Each command once (performance.md repeats README's speed-run lines)."""
    seen: set[str] = set()
    for doc, line in lines:
        if (args := shrink(line)) is not None and line not in seen:
            seen.add(line)
            yield doc, line, args


LINES = list(_distinct(COMMAND_LINES))

_RUNNER = textwrap.dedent("""
    import contextlib, io, json, sys, time, traceback
    from hydra.core.global_hydra import GlobalHydra
    from cnnbench.cli import main
    results = []
    for args in json.loads(sys.argv[1]):
        err = io.StringIO()
        code, start = 0, time.perf_counter()
        with contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as stop:
                code = stop.code or 0
            except BaseException:
                code, _ = 99, traceback.print_exc()
        GlobalHydra.instance().clear()
        results.append({"code": code, "stderr": err.getvalue()[-1500:], "seconds": time.perf_counter() - start})
    print(json.dumps(results))
""")


def _prepare(project: Path) -> None:
    """The files the docs' lines name: a checkpoint for `…/last.ckpt` and friends, an EfficientNet-B0 one for
    `init_from=b0.ckpt`, images for `image=`, and README's own-configs example: its `conf/` files (the heredocs of
    "Your own configs", with its data pointed at digits) and a `~/team-configs` holding `their_recipe`."""
    from PIL import Image

    from tests.helpers import fashion_or_digits_images, train_tiny, write_readme_configs

    for name, model in (("doc.ckpt", "resnet20"), ("b0.ckpt", "efficientnet_b0")):
        results = train_tiny(project / f"prep-{model}", [f"model={model}", "trainer.max_epochs=1",
                                                         "data.limit_train=32", "data.batch_size=16",
                                                         "data.val_split=16", "data.limit_test=16"])
        os.link(results["checkpoint"], project / name)
    images, _, _ = fashion_or_digits_images(1)
    (project / "photos").mkdir()
    for i, name in enumerate(("shoe.jpg", "cat.jpg", "photos/a.jpg", "photos/b.jpg")):
        Image.fromarray(images[i % len(images)]).convert("RGB").resize((64, 64)).save(project / name)
    write_readme_configs(project, data="digits")


@pytest.mark.slow
def test_every_documented_run_command_runs(tmp_path):
    assert len(LINES) > 40
    _prepare(tmp_path)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1",
           "HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps([args for _, _, args in LINES])], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=880)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    failed = [f"{doc}: {line}\n  ran: {' '.join(args)}\n  exit {r['code']}: {r['stderr'][-600:]}"
              for (doc, line, args), r in zip(LINES, results, strict=True) if r["code"] != 0]
    slowest = sorted(zip((r["seconds"] for r in results), (line for _, line, _ in LINES), strict=True), reverse=True)[:5]
    print("slowest:", "; ".join(f"{s:.0f} s {line}" for s, line in slowest))
    assert not failed, "\n".join(failed)
