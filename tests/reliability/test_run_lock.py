"""One training job per run dir: a second `cnnbench train` in a run dir that a running job holds (the same
`run_name=` started twice) stops at once with one line and touches nothing of the first job's."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnbench.errors import UserError
from cnnbench.runtime import RUN_LOCK, run_dir_lock
from tests.reliability.reliability_helpers import CLI_FAST, ROOT, cli

HOLD = ("import sys, pathlib\n"
        "from cnnbench.runtime import run_dir_lock\n"
        "with run_dir_lock(pathlib.Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n")


def test_the_lock_names_its_holder_and_goes_with_the_job(tmp_path):
    with run_dir_lock(tmp_path):
        assert (tmp_path / RUN_LOCK).read_text() == str(os.getpid())
        with pytest.raises(UserError, match=rf"run dir {tmp_path} is in use by another `cnnbench train` "
                                            rf"\(pid {os.getpid()}\); wait for it to end, or pick another run_name="):
            with run_dir_lock(tmp_path):
                pass
        assert (tmp_path / RUN_LOCK).is_file()  # the refused job left the holder's lock alone
    assert not (tmp_path / RUN_LOCK).exists()
    with run_dir_lock(tmp_path):  # free again
        pass


@pytest.mark.parametrize("rank, node_env", [(1, {}), (0, {"NODE_RANK": "1"})], ids=["rank-1", "node-1"])
def test_only_rank_zero_of_node_zero_holds_the_lock(tmp_path, monkeypatch, rank, node_env):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    with run_dir_lock(tmp_path):  # rank 0 of the job holds it
        monkeypatch.setattr(rank_zero_only, "rank", rank, raising=False)
        for key, value in node_env.items():
            monkeypatch.setenv(key, value)
        with run_dir_lock(tmp_path):  # the job's other ranks (or nodes) share the dir without asking
            assert (tmp_path / RUN_LOCK).read_text() == str(os.getpid())
        assert (tmp_path / RUN_LOCK).exists()  # and leave the holder's lock in place


def test_a_second_train_in_a_held_run_dir_stops_with_one_line(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"the running job's checkpoint")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = cli(["train", *CLI_FAST, "data=synthetic", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}",
                      "resume=auto"])
    finally:
        holder.communicate("")
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.strip().splitlines()[-1] == (
        f"cnnbench train: error: run dir {tmp_path} is in use by another `cnnbench train` (pid {holder.pid}); "
        "wait for it to end, or pick another run_name=…")
    assert ckpt.read_bytes() == b"the running job's checkpoint" and not (tmp_path / "results.json").exists()
    assert not (tmp_path / RUN_LOCK).exists()  # gone with its holder
