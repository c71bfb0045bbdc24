"""Running `cnnbench` as a user would (a subprocess), with optional fault injection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_FAST = ["hardware=cpu", "logger=csv", "trainer.enable_progress_bar=false", "data.persistent_workers=false"]


def cli(args: list[str], fault: str | None = None, timeout: float = 300, env: dict | None = None):
    environment = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    environment.pop("CNNBENCH_FAULT", None)
    if fault:
        environment["CNNBENCH_FAULT"] = fault
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
