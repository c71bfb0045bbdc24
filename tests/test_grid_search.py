"""EfficientNet step 1 (§3.3): the α, β, γ grid-search experiment at small scale."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF, compose_cfg

BASE = {"width_mult": 0.25, "depth_mult": 0.25, "resolution": 32}


def candidates() -> list[dict[str, float]]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="t"):
        cfg = compose("train", overrides=["experiment=efficientnet_grid_search"], return_hydra_config=True)
    text = cfg.hydra.sweeper.params["model.scaling"]
    return [dict((k, float(v)) for k, v in re.findall(r"(\w+): ([\d.]+)", item))
            for item in re.findall(r"\{[^}]*\}", text)]


def test_every_candidate_satisfies_the_constraint():
    found = candidates()
    assert len(found) == 20
    triples = []
    for c in found:
        alpha, beta = c["depth_mult"] / BASE["depth_mult"], c["width_mult"] / BASE["width_mult"]
        gamma = c["resolution"] / BASE["resolution"]
        triples.append((round(alpha, 2), round(beta, 2)))
        # resolution is rounded to whole pixels, so γ is recovered to within 1/32
        assert abs(alpha * beta**2 * gamma**2 - 2) <= 0.1 + 0.15, c
        assert alpha >= 1 and beta >= 1 and gamma >= 1
    assert (1.2, 1.1) in triples  # the paper's α = 1.2, β = 1.1 (γ = 1.15)


def test_base_composes_and_data_follows_resolution():
    cfg = compose_cfg("train", ["experiment=efficientnet_grid_search"])
    assert cfg.model.name == "efficientnet_b0" and cfg.data.image_size == 32
    cfg = compose_cfg("train", ["experiment=efficientnet_grid_search", "model.scaling.resolution=38"])
    assert cfg.data.image_size == 38


@pytest.mark.slow
def test_two_candidates_train_and_summary_names_best(tmp_path, fashion_mnist):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    two = "choice({width_mult:0.275,depth_mult:0.3,resolution:37},{width_mult:0.3,depth_mult:0.275,resolution:34})"
    out = subprocess.run([sys.executable, "-m", "cnnbench", "train", "-m", "experiment=efficientnet_grid_search",
                          f"model.scaling={two}", "data.limit_train=96", "data.val_split=32", "data.limit_test=32",
                          "data.batch_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                          "hydra.sweep.dir=sweep"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from omegaconf import OmegaConf

    sizes = sorted(OmegaConf.load(tmp_path / "sweep" / j / ".hydra" / "config.yaml").data.image_size for j in ("0", "1"))
    assert all((tmp_path / "sweep" / j / "results.json").is_file() for j in ("0", "1"))
    assert sizes == [34, 37]
    assert "best by val/acc1: job" in out.stdout
