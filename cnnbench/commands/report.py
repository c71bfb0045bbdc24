"""`cnnbench report runs=<glob>`: many runs (a sweep, several evals) in one markdown table and PNG plots.

Every directory matched by the glob, or below it, that holds a `results.json` (train), an `eval.json`
or a `metrics.csv` is one run. Each run is labelled by the settings that differ between the runs, `key=value`
sorted (`optimizer.lr=0.05 seed=43`): from Hydra's record of its overrides (`.hydra/overrides.yaml`), else its
composed config (`.hydra/config.yaml`, paths and bookkeeping keys left out), else results.json's model, data,
seed, lr_base …; the run dir's name when nothing differs (cnnbench/analysis/runs.py). Written to the run dir:
`report.md` (the table: accuracies, the paper's error, train images/s, wall minutes; "—" for what a run did
not record), `curves.png` (training loss and learning rate per step, validation top-1 per epoch; a learning-rate
panel only when a run logged `lr` or `lr/<group>`), `paper.png` (top-1 error by the differing settings, ours
beside the paper's where `model_info` has a number for that setting) and `report.json`
(cnnbench/analysis/report_plots.py draws the figures).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnbench.analysis.metrics import read_metrics
from cnnbench.analysis.report_plots import plot_curves, plot_errors
from cnnbench.analysis.runs import compared_settings, run_labels
from cnnbench.errors import UserError
from cnnbench.run import RUN_MARKERS, find_runs
from cnnbench.runtime import original_cwd, resolve_run_dir, write_json


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _paper_for_training(results: dict[str, Any]) -> dict[str, Any] | None:
    from cnnbench.evaluation.paper import paper_reference
    from cnnbench.models.registry import UnknownModelError

    try:
        from cnnbench.models import model_info

        info = model_info(str(results.get("model")))
    except (UnknownModelError, ValueError):
        return None
    n = info.reference_num_classes if str(results.get("data")) in ("imagefolder", "cifar10") else -1
    # training runs test with the single center view
    return paper_reference(info.name, str(results.get("data")), n, 1, "crops", None, 1)


def _protocol(ev: dict[str, Any]) -> str:
    crops, mode, n = ev.get("crops"), ev.get("mode", "crops"), len(ev.get("models", []))
    text = f"{crops} crop{'s' if crops != 1 else ''}"
    if mode != "crops":
        text = mode + (f" + {text}" if crops != 1 else "")
    return text + (f", {n} models" if n > 1 else "")


def collect(run: Path, name: str) -> dict[str, Any]:
    """One run's row: its scores (results.json, eval.json), speed and metrics.csv; `name` = its dir for short."""
    row: dict[str, Any] = {"run": name, "name": name, "dir": str(run)}
    results = _read_json(run / "results.json") if (run / "results.json").is_file() else None
    ev = _read_json(run / "eval.json") if (run / "eval.json").is_file() else None
    if results:
        speed = results.get("speed") if isinstance(results.get("speed"), dict) else {}
        row.update(model=results.get("model"), data=results.get("data"), acc1=results.get("test/acc1"),
                   acc5=results.get("test/acc5"), val_acc1=results.get("val/acc1"), epochs=results.get("epochs"),
                   wall_s=results.get("wall_s"), protocol="1 crop", stopped=results.get("stopped"),
                   images_per_s=speed.get("train_images_per_s"), speed=speed or None)
        paper = _paper_for_training(results)
        if paper:
            row["paper"] = paper
    if ev:
        row.update(model=row.get("model") or ev.get("model"), data=row.get("data") or ev.get("data"),
                   eval_acc1=ev.get("acc1"), eval_acc5=ev.get("acc5"), n_models=len(ev.get("models", [])),
                   protocol=_protocol(ev))
        if not results:
            row.update(acc1=ev.get("acc1"), acc5=ev.get("acc5"), wall_s=ev.get("wall_s"))
        if ev.get("paper"):
            row["paper"] = ev["paper"]
    if (run / "metrics.csv").is_file():
        row["metrics"] = read_metrics(run / "metrics.csv")
    return row


def _num(v: Any, fmt: str, scale: float = 1.0) -> str:
    return format(scale * v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | model | data | protocol | top-1 % | top-5 % | top-1 err % | paper top-1 err % | best val top-1 % "
            "| epochs | train images/s | wall min |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        acc1, acc5 = r.get("eval_acc1", r.get("acc1")), r.get("eval_acc5", r.get("acc5"))
        err = 1 - acc1 if isinstance(acc1, (int, float)) else None
        cells = [r["run"], r.get("model") or "—", r.get("data") or "—", r.get("protocol") or "—",
                 _num(acc1, ".2f", 100), _num(acc5, ".2f", 100), _num(err, ".2f", 100),
                 _num((r.get("paper") or {}).get("top1_err"), ".2f", 100), _num(r.get("val_acc1"), ".2f", 100),
                 _num(r.get("epochs"), "g"), _num(r.get("images_per_s"), ",.0f"), _num(r.get("wall_s"), ".2f", 1 / 60)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _natural(path: Path) -> list[Any]:
    """Sort key: job 10 after job 9, not after job 1."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]


def report(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    pattern = cfg.get("runs")
    if pattern in (None, ""):  # cfg.get gives None for a missing (???) value
        raise UserError("runs is required: cnnbench report runs='multirun/train/2026-01-01/*' (a glob)")
    pattern = str(pattern)
    runs = find_runs(pattern, original_cwd())
    run_dir = resolve_run_dir(run_dir)
    runs = [r for r in runs if r != run_dir.resolve()]
    if not runs:
        raise UserError(f"runs={pattern!r} matched no run directory (one holding {', '.join(RUN_MARKERS)})")
    runs = sorted(runs, key=_natural)
    common = Path(os.path.commonpath([str(r) for r in runs]))
    root = common.parent if len(runs) == 1 or common in runs else common  # short, distinct names
    rows = [collect(r, str(r.relative_to(root)) if r.is_relative_to(root) else str(r)) for r in runs]
    settings, compared = compared_settings(runs)
    for row, setting, label in zip(rows, settings, run_labels(settings, [r["name"] for r in rows]), strict=True):
        row.update(run=label, label=label, settings=setting)
    table = markdown_table(rows)
    plots = []
    if plot_curves(rows, run_dir / "curves.png"):
        plots.append("curves.png")
    if plot_errors(rows, run_dir / "paper.png", compared):
        plots.append("paper.png")
    differ = f", differing in {', '.join(f'`{k}`' for k in compared)}" if compared else ""
    md = ["# cnnbench report", "", f"runs: `{pattern}` ({len(rows)} runs{differ})", "", table, ""]
    md += [f"![{p}]({p})" for p in plots]
    (run_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"runs": [{k: v for k, v in r.items() if k != "metrics"} for r in rows], "plots": plots,
               "pattern": pattern, "compared": compared}
    write_json(run_dir / "report.json", summary)
    print(table)
    print(f"cnnbench report: {len(rows)} runs → {run_dir / 'report.md'}"
          + (f" ({', '.join(plots)})" if plots else ""), flush=True)
    return summary
