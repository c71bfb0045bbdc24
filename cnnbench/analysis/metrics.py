"""One reader of a run's `metrics.csv` (Lightning's CSV logger) for every analysis and `cnnbench report`.

`read_metrics` gives each column as a list of `Point(step, epoch, value)`: Lightning writes one row per logging
call, with `step` (the global step) and `epoch` filled on most rows and each metric only on the rows that logged
it; empty or non-numeric cells are skipped. `by_step` and `by_epoch` turn a column into (x, value) pairs for a
plot; `lr_columns` names the learning-rate columns (`lr`, `lr/<parameter group>`, Lightning's `lr-<optimizer>`),
momentum columns (`…-momentum`) left out.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple


class Point(NamedTuple):
    step: int | None
    epoch: int | None
    value: float


def _number(cell: str | None) -> float | None:
    if cell in (None, ""):
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _index(cell: str | None) -> int | None:
    value = _number(cell)
    return int(value) if value is not None else None


def read_metrics(path: Path) -> dict[str, list[Point]]:
    """Column → its points in file order; {} when the file cannot be read. `step` and `epoch` are columns of
    every row, not series of their own."""
    series: dict[str, list[Point]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step, epoch = _index(row.get("step")), _index(row.get("epoch"))
                for key, cell in row.items():
                    if key in (None, "step", "epoch"):
                        continue
                    value = _number(cell)
                    if value is not None:
                        series.setdefault(key, []).append(Point(step, epoch, value))
    except OSError:
        return {}
    return series


def by_step(points: list[Point], offset: int = 1) -> list[tuple[int, float]]:
    """(step + offset, value), sorted; points without a step are left out. offset=1: Lightning's step counts the
    optimizer steps done before the row, so the default gives the iteration the value belongs to."""
    return sorted((p.step + offset, p.value) for p in points if p.step is not None)


def by_epoch(points: list[Point], offset: int = 1) -> list[tuple[int, float]]:
    """(epoch + offset, value), sorted; offset=1 numbers epochs from 1 like the progress line."""
    return sorted((p.epoch + offset, p.value) for p in points if p.epoch is not None)


def lr_columns(metrics: dict[str, list[Point]]) -> list[str]:
    """The learning-rate columns of a run, sorted: `lr`, `lr/<group>`, `lr-<optimizer>[/<group>]`; not momentum."""
    return sorted(k for k in metrics
                  if (k == "lr" or k.startswith(("lr/", "lr-"))) and not k.endswith("-momentum"))
