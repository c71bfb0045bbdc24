"""What distinguishes one training run of a sweep from the others: its overrides, label and seed."""
from __future__ import annotations

import json
from pathlib import Path

IGNORED_OVERRIDES = ("experiment=", "hydra.", "run_name=", "trainer.enable_progress_bar=", "seed=")


def run_overrides(run: Path) -> list[str]:
    """The overrides that distinguish a run's arm within its sweep (from Hydra's .hydra/overrides.yaml);
    `seed=` is left out: runs that differ only in their seed are one arm (cnnbench/analysis/seeds.py)."""
    from omegaconf import OmegaConf

    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.load(path) if not str(o).lstrip("+").startswith(IGNORED_OVERRIDES)]


def run_label(run: Path, fallback: str) -> str:
    """`model=inception_v4 model.aux_logits=false` → `inception_v4 aux_logits=false`: the model first, then
    the other overrides sorted, so a sweep's job and the same run typed by hand get the same label."""
    models, parts = [], []
    for o in run_overrides(run):
        key, _, value = o.lstrip("+").partition("=")
        (models if key == "model" else parts).append(value if key == "model" else f"{key.split('.')[-1]}={value}")
    return " ".join(models + sorted(parts)) or fallback


def run_seed(run: Path) -> int | None:
    """The run's seed: results.json's `seed`, else the composed config's (.hydra/config.yaml)."""
    results = run / "results.json"
    if results.is_file():
        seed = json.loads(results.read_text()).get("seed")
        if seed is not None:
            return int(seed)
    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        seed = OmegaConf.load(config).get("seed")
        return int(seed) if seed is not None else None
    return None
