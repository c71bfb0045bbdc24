"""Running `cnnbench` as a user would (a subprocess), with optional fault injection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_FAST = ["hardware=cpu", "logger=csv", "trainer.enable_progress_bar=false", "data.persistent_workers=false"]


def _environment(fault: str | None, env: dict | None) -> dict:
    environment = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    environment.pop("CNNBENCH_FAULT", None)
    if fault:
        environment["CNNBENCH_FAULT"] = fault
    environment.update(env or {})
    return environment


def cli(args: list[str], fault: str | None = None, timeout: float = 300, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], cwd=ROOT, env=_environment(fault, env),
                          capture_output=True, text=True, timeout=timeout)


def cli_background(args: list[str], fault: str | None = None, env: dict | None = None,
                   new_session: bool = False) -> subprocess.Popen:
    """`cli` without waiting: the test acts on the running command (signals) and then calls `.communicate()`.
    `new_session` gives the command its own process group, which a test may then signal whole (`os.killpg`)."""
    return subprocess.Popen([sys.executable, "-m", "cnnbench", *args], cwd=ROOT, env=_environment(fault, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 300) -> Path:
    """Poll until `path` exists; fails early, with the process's output, when the process ends first."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process ended ({process.returncode}) before {path} appeared:\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.05)
    return Path(path)


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> int:
    """The state dicts of two checkpoints hold the same tensors (exactly with atol=0); returns their global step."""
    import torch

    from cnnbench.checkpoint import load_checkpoint

    wa, wb = load_checkpoint(a), load_checkpoint(b)
    assert wa["global_step"] == wb["global_step"], (wa["global_step"], wb["global_step"])
    assert wa["state_dict"].keys() == wb["state_dict"].keys()
    for key, value in wa["state_dict"].items():
        other = wb["state_dict"][key]
        same = torch.equal(value, other) if atol == 0 else torch.allclose(value.float(), other.float(), atol=atol)
        assert same, key
    return int(wa["global_step"])


def results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
