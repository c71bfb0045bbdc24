"""Fault 6: one DDP rank (gloo, 2 CPU processes) raises at step k → every rank exits non-zero well
within hardware.ddp_timeout_s, nothing hangs, and the run dir says what happened."""
from __future__ import annotations

import json
import time

import pytest

from tests.reliability.reliability_helpers import cli

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

TIMEOUT_S = 60
TINY = ["train", "hardware=ddp_cpu", "trainer.devices=2", "logger=csv", "data=synthetic", "data.num_train=96",
        "data.val_split=16", "data.num_test=16", "data.batch_size=8", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "schedule=cosine", f"hardware.ddp_timeout_s={TIMEOUT_S}"]


@pytest.mark.timeout(3 * TIMEOUT_S + 60)
@pytest.mark.parametrize("rank", [1, 0])
def test_one_rank_raising_stops_every_rank(tmp_path, rank):
    run_dir = tmp_path / "run"
    start = time.monotonic()
    out = cli(TINY + [f"hydra.run.dir={run_dir}"], fault=f"raise@2:rank{rank}", timeout=3 * TIMEOUT_S + 30)
    elapsed = time.monotonic() - start
    assert out.returncode != 0, out.stdout[-2000:]
    assert elapsed < 2 * TIMEOUT_S + 30  # start-up plus at most one process-group timeout
    record = json.loads((run_dir / f"failed-rank{rank}.json").read_text())
    assert record["rank"] == rank and record["step"] == 2
    assert f"injected fault on rank {rank} at step 2" in record["message"]
    other = json.loads((run_dir / f"failed-rank{1 - rank}.json").read_text())  # the peer says why it stopped
    assert other["rank"] == 1 - rank and other["message"]
    assert not (run_dir / "results.json").exists()
    assert f"injected fault on rank {rank}" in out.stderr
