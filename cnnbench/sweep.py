"""Hydra callback: before a multirun, the checks that would fail every job (the sweep is refused in one
line, exit 2, before the sweeper starts a study or makes a job dir); after it, one table of every job's
results.json.

Printed: one line per job with only the override keys whose values differ between jobs, plus the metrics
(fits a piped 80-column terminal for a typical sweep). Written: summary.csv (every override of every job, as
before) and summary.md (the printed table as markdown).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cnnbench.analysis.runs import hydra_overrides
from cnnbench.overrides import split_override

COLUMNS = ("job", "overrides", "model", "test/acc1", "test/acc5", "val/acc1", "epochs", "wall_s", "run_dir")
METRICS = ("test/acc1", "val/acc1", "wall_s")  # printed after the differing keys


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for results in sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        data = json.loads(results.read_text())
        overrides = hydra_overrides(results.parent) or []
        rows.append({"job": results.parent.name, "overrides": " ".join(overrides),
                     "_overrides": dict(map(split_override, overrides)),
                     **data})
    return rows


def differing_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value is not the same in every job (a key missing from a job counts as different)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["_overrides"] if k not in keys]
    return [k for k in keys if len({row["_overrides"].get(k) for row in rows}) > 1]


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    keys = differing_keys(rows)
    header = ["job", *keys, *METRICS]
    body = [[row["job"], *[row["_overrides"].get(k, "—") for k in keys], *[_fmt(row.get(m)) for m in METRICS]]
            for row in rows]
    return header, body


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    if not rows:
        return rows
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    header, body = table(rows)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]
    best = "\n".join(line for line in (_best(rows), _optuna_best(sweep_dir)) if line)
    (sweep_dir / "summary.md").write_text(f"# Sweep {sweep_dir}\n\n" + "\n".join(md) + "\n" + (f"\n{best}\n" if best else ""))
    print(f"sweep summary — {sweep_dir} (summary.csv, summary.md)", flush=True)
    print("\n".join(lines), flush=True)
    if best:
        print(best, flush=True)
    return rows


def _optuna_best(sweep_dir: Path) -> str:
    """The Optuna sweeper's (hparams_search=…) best parameters and value, from the optimization_results.yaml it
    writes into the sweep dir at the end of the study; empty for other sweeps."""
    optuna = sweep_dir / "optimization_results.yaml"
    if not optuna.is_file():
        return ""
    found = OmegaConf.load(optuna)
    params = " ".join(f"{k}={v}" for k, v in (found.get("best_params") or {}).items())
    return f"best parameters ({optuna.name}): {params} → {found.get('best_value')}"


def _best(rows: list[dict[str, Any]]) -> str:
    for metric in ("val/acc1", "test/acc1"):
        scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and r[metric] == r[metric]]
        if scored:
            best = max(scored, key=lambda r: r[metric])
            return f"best by {metric}: job {best['job']} ({_fmt(best[metric])}) {best.get('overrides', '')}".rstrip()
    return ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "—" if v is None else str(v)


# What `optimized_metric_is_produced` reads: when one of these is swept, the jobs differ and each job checks itself.
_METRIC_INPUTS = ("optimized_metric", "data.val_split", "data", "experiment", "hparams_search")


def swept_keys(config: DictConfig) -> set[str]:
    """Keys and groups the sweep varies: sweep overrides on the command line and the sweeper's own `params`
    (Optuna's search space)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides([str(o) for o in config.hydra.overrides.task])
    keys = {o.key_or_group for o in overrides if o.is_sweep_override()}
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return keys | {str(k) for k in params}


def sweep_problem(config: DictConfig) -> str | None:
    """The problem that every job of this sweep would hit, from the sweep's composed config (None: none found)."""
    from cnnbench.config_schema import optimized_metric_is_produced

    if swept_keys(config) & set(_METRIC_INPUTS):
        return None
    return optimized_metric_is_produced(config)


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        problem = sweep_problem(config)
        if problem:
            print(f"cnnbench {config.get('task', 'train')}: error: {problem}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))
