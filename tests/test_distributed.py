"""DDP on gloo: a plain 2-process run, a multirun of 2-process jobs, and a two-node torchrun launch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["logger=csv", "data=synthetic", "data.num_train=64", "data.val_split=16", "data.num_test=16",
        "data.batch_size=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def cnnbench(args, cwd, timeout=420, prefix=None):
    cmd = (prefix or [sys.executable, "-m", "cnnbench"]) + list(args)
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _checkpoints(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))


def test_ddp_cpu_two_processes(tmp_path):
    out = cnnbench(["train", "hardware=ddp_cpu", "trainer.devices=2", *TINY, "run_name=ddp"], tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    run_dir = tmp_path / "outputs/train/ddp"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_batch"] == 16  # 2 processes × batch 8
    assert results["steps"] == 3  # 48 train images / 16 per step
    assert len(_checkpoints(run_dir)) == 2  # last + best, written once
    assert list((tmp_path / "outputs/train").iterdir()) == [run_dir]  # no stray dirs from rank 1
    assert out.stdout.count("cnnbench: resnet20 on synthetic") == 1  # summary from rank 0 only


def test_ddp_inside_multirun(tmp_path):
    out = cnnbench(["train", "-m", "hardware=ddp_cpu", "trainer.devices=2", *TINY, "optimizer.lr=0.1,0.05",
                    "hydra.sweep.dir=sweep"], tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    sweep = tmp_path / "sweep"
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    lrs = []
    for job in jobs:
        results = json.loads((sweep / job / "results.json").read_text())
        lrs.append(results["lr_base"])
        assert len(_checkpoints(sweep / job)) == 2
    assert lrs == [0.1, 0.05]
    assert (sweep / "summary.csv").read_text().count("\n") == 3  # header + 2 jobs
    assert not (tmp_path / "outputs").exists()  # the children did not start runs of their own


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_nodes_on_localhost(tmp_path):
    port = _free_port()
    base = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--master_addr=127.0.0.1", f"--master_port={port}"]
    args = ["train", "hardware=multinode", "trainer.accelerator=cpu", "trainer.num_nodes=2", "trainer.devices=1",
            "hardware.backend=gloo", *TINY, f"hydra.run.dir={tmp_path}/run"]
    procs = [subprocess.Popen(base + [f"--node_rank={rank}", "-m", "cnnbench", *args], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = [p.communicate(timeout=420) for p in procs]
    for p, (_, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr[-4000:]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["global_batch"] == 16 and results["steps"] == 3
    summaries = sum(stdout.count("cnnbench: resnet20 on synthetic") for stdout, _ in outs)
    assert summaries == 1
