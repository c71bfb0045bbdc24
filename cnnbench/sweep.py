"""Hydra callback: after a multirun, one table of every job's results.json (summary.csv + printed)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = ("job", "overrides", "model", "test/acc1", "test/acc5", "val/acc1", "epochs", "wall_s", "run_dir")


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for results in sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        data = json.loads(results.read_text())
        overrides_file = results.parent / ".hydra" / "overrides.yaml"
        overrides = ""
        if overrides_file.is_file():
            from omegaconf import OmegaConf

            overrides = " ".join(OmegaConf.load(overrides_file))
        rows.append({"job": results.parent.name, "overrides": overrides, **data})
    return rows


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    if not rows:
        return rows
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep summary — {sweep_dir}")
    for col in COLUMNS[:-1]:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in COLUMNS[:-1]])
    console = Console()
    console.print(table)
    for metric in ("val/acc1", "test/acc1"):
        scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
        if scored:
            best = max(scored, key=lambda r: r[metric])
            console.print(f"best by {metric}: job {best['job']} ({_fmt(best[metric])}) {best.get('overrides', '')}")
            break
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "—" if v is None else str(v)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))
