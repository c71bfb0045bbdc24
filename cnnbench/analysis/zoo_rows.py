"""Which training runs are a zoo row (docs/zoo.md, "Running a row"): the recipe as written, run with only
run-control overrides; a smoke run, a trial or a run of a recipe file edited since is left out of the table."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnbench.analysis.runs import canonical, composed_config, flatten, hydra_overrides
from cnnbench.overrides import override_key, split_override

RECIPE_PREFIX = "zoo_"

# the overrides a row's run may have: which recipe and seed, where the run lives and how it resumes, VGG-16's start
# from net A (§3.1), and settings that change where the run logs or reads, not what it trains; any other override
# (a subset, a cut-short run, another learning rate, initialisation or network option: smoke runs and trials)
# makes the run something other than its row
ROW_KEYS = ("experiment", "run_name", "resume", "seed", "init_from", "init_new_head", "hardware", "logger",
            "data.root", "data.num_workers", "trainer.enable_progress_bar", "trainer.log_every_n_steps")
ROW_PREFIXES = ("hydra.", "wandb.", "checkpoint.")


def _is_row_key(key: str) -> bool:
    return key in ROW_KEYS or key.startswith(ROW_PREFIXES)


@dataclass(frozen=True)
class RunRecord:
    """One run (a run dir, or an artifact under docs/zoo/) as the zoo reads it, each file once: its results.json,
    its overrides as typed (.hydra/overrides.yaml; None for an artifact, which has no `.hydra/`), the zoo recipe it
    trained (the artifact's `zoo.recipe`, else its `experiment=zoo_…` override; None for another run), its composed
    config (.hydra/config.yaml; None without it; `ran` flattens it for the row rules) and, where it has one, the values its recipe file sets now (`experiment/<recipe>.yaml` as Hydra
    finds it; its defaults list and interpolations left out)."""

    run: Path
    results: dict[str, Any]
    overrides: tuple[str, ...] | None
    recipe: str | None
    config: dict[str, Any] | None
    written: dict[str, str]

    @cached_property
    def ran(self) -> dict[str, str] | None:
        return flatten(self.config) if self.config is not None else None

    @classmethod
    def read(cls, run: Path) -> RunRecord:
        results = json.loads((run / "results.json").read_text())
        overrides = hydra_overrides(run)
        recipe = _recipe(results, overrides)
        config = composed_config(run)
        written = _written_values(recipe) if config is not None else {}
        return cls(run, results, None if overrides is None else tuple(overrides), recipe, config, written)


def _recipe(results: dict[str, Any], overrides: list[str] | None) -> str | None:
    if (results.get("zoo") or {}).get("recipe"):
        return str(results["zoo"]["recipe"])
    for o in overrides or []:
        key, value = split_override(o)
        if key == "experiment" and value.startswith(RECIPE_PREFIX):
            return value
    return None


def not_a_row(record: RunRecord) -> list[str]:
    """The run's overrides that keep it out of the table (a smoke run on a subset, a shortened run, a trial). An
    override of a value the recipe file now sets to what the run ran with (`trainer.max_epochs=40` where the file
    has since adopted 40) does not: the row's command composes the same config."""
    adopted = set(adopted_overrides(record))
    return [o for o in record.overrides or () if not _is_row_key(override_key(o)) and o not in adopted]


def adopted_overrides(record: RunRecord) -> list[str]:
    """The run's overrides of keys the recipe file sets, where the file's value is now the value the run ran with."""
    if not record.ran:
        return []
    return [o for o in record.overrides or ()
            if (key := override_key(o)) in record.written
            and canonical(record.ran.get(key, "<missing>")) == canonical(record.written[key])]


def _written_values(recipe: str | None) -> dict[str, str]:
    """The values `experiment/<recipe>.yaml` (as Hydra finds it now) sets, flattened; its defaults list and
    interpolations left out."""
    from cnnbench.config_paths import find_config

    path = find_config("experiment", recipe) if recipe else None
    if path is None:
        return {}
    from omegaconf import OmegaConf

    written = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return {key: value for key, value in flatten({k: v for k, v in written.items() if k != "defaults"}).items()
            if "${" not in value}


def recipe_edited(record: RunRecord) -> list[str]:
    """The values the recipe file sets that differ from the run's composed config: a run of a recipe edited
    since — say 11 epochs where the file now has 10 — is not the row as written. Values the file takes from the
    groups it composes are not compared."""
    if record.ran is None:
        return []
    return [f"{key}: {record.ran.get(key, '<missing>')} in the run, {value} in the file"
            for key, value in record.written.items()
            if not _is_row_key(key) and canonical(record.ran.get(key, "<missing>")) != canonical(value)]
