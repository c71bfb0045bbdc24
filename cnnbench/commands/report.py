"""`cnnbench report runs=<glob>`: many runs (a sweep, several evals) in one markdown table and PNG plots.

Every directory matched by the glob, or below it, that holds a `results.json` (train), an `eval.json`
or a `metrics.csv` is one run. Written to the run dir: `report.md` (the table, the plots linked),
`curves.png` (training loss and validation top-1 per epoch, one line per run) and `paper.png`
(top-1 error per run, ours beside the paper's where `model_info` has a number for that setting).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnbench.errors import UserError
from cnnbench.run import RUN_MARKERS, find_runs
from cnnbench.runtime import original_cwd, resolve_run_dir, write_json


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """metrics.csv (Lightning's CSV logger) → column → [(epoch or step, value)]; empty cells skipped."""
    series: dict[str, list[tuple[float, float]]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key in ("epoch", "step") or value in (None, ""):
                        continue
                    x_key = "step" if key == "train/loss" else "epoch"
                    try:
                        x, y = float(row.get(x_key) or "nan"), float(value)
                    except ValueError:
                        continue
                    if not math.isnan(x):
                        series.setdefault(key, []).append((x, y))
    except OSError:
        return {}
    return series


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


def collect(run: Path, root: Path) -> dict[str, Any]:
    try:
        label = str(run.relative_to(root))
    except ValueError:
        label = str(run)
    row: dict[str, Any] = {"run": label, "dir": str(run)}
    results = _read_json(run / "results.json") if (run / "results.json").is_file() else None
    ev = _read_json(run / "eval.json") if (run / "eval.json").is_file() else None
    if results:
        row.update(model=results.get("model"), data=results.get("data"), acc1=results.get("test/acc1"),
                   acc5=results.get("test/acc5"), val_acc1=results.get("val/acc1"), epochs=results.get("epochs"),
                   wall_s=results.get("wall_s"), protocol="1 crop", stopped=results.get("stopped"))
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


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}" if isinstance(v, (int, float)) else "—"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | model | data | protocol | top-1 % | top-5 % | top-1 err % | paper top-1 err % | best val top-1 % "
            "| epochs | wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        acc1 = r.get("eval_acc1", r.get("acc1"))
        acc5 = r.get("eval_acc5", r.get("acc5"))
        err = 1 - acc1 if isinstance(acc1, (int, float)) else None
        paper_err = (r.get("paper") or {}).get("top1_err")
        wall = f"{r['wall_s']:.0f}" if isinstance(r.get("wall_s"), (int, float)) else "—"
        lines.append(f"| {r['run']} | {r.get('model') or '—'} | {r.get('data') or '—'} | {r.get('protocol') or '—'} | "
                     f"{_pct(acc1)} | {_pct(acc5)} | {_pct(err)} | {_pct(paper_err)} | {_pct(r.get('val_acc1'))} | "
                     f"{r.get('epochs') if r.get('epochs') is not None else '—'} | {wall} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_metrics = [r for r in rows if r.get("metrics")]
    if not with_metrics:
        return False
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in with_metrics:
        m = r["metrics"]
        if m.get("train/loss_epoch"):
            ax_loss.plot(*zip(*[(x + 1, y) for x, y in m["train/loss_epoch"]], strict=True), marker="o", label=r["run"])
        elif m.get("train/loss"):  # only per-step values logged
            ax_loss.plot(*zip(*m["train/loss"], strict=True), label=f"{r['run']} (x = step)")
        if m.get("val/acc1"):
            ax_acc.plot(*zip(*[(x + 1, 100 * (1 - y)) for x, y in m["val/acc1"]], strict=True), marker="o", label=r["run"])
    ax_loss.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="validation top-1 error", xlabel="epoch", ylabel="error %")
    if not ax_acc.lines:  # e.g. data.val_split=0 (the speedruns): say so instead of an empty frame
        ax_acc.text(0.5, 0.5, "no validation split in these runs\n(test accuracy: report.md)",
                    ha="center", va="center", transform=ax_acc.transAxes)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_paper(rows: list[dict[str, Any]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if isinstance(r.get("eval_acc1", r.get("acc1")), (int, float))]
    if not scored:
        return False
    labels = [f"{r['run']}\n{r.get('model') or ''} · {r.get('protocol') or ''}" for r in scored]
    ours = [100 * (1 - r.get("eval_acc1", r.get("acc1"))) for r in scored]
    paper = [100 * r["paper"]["top1_err"] if (r.get("paper") or {}).get("top1_err") is not None else math.nan
             for r in scored]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(scored) + 2), 4.5))
    xs = range(len(scored))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], ours, width, label="ours")
    if any(not math.isnan(p) for p in paper):
        ax.bar([x + width / 2 for x in xs], paper, width, label="paper (same setting)")
        title = "top-1 error: ours vs the paper"
    else:
        title = "top-1 error (no paper number for these settings)"
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set(title=title, ylabel="top-1 error %")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    pattern = cfg.get("runs")
    if pattern in (None, ""):  # cfg.get gives None for a missing (???) value
        raise UserError("runs is required: cnnbench report runs='multirun/train/2026-01-01/*' (a glob)")
    pattern = str(pattern)
    absolute_pattern = pattern if Path(pattern).is_absolute() else str(original_cwd() / pattern)
    runs = find_runs(absolute_pattern)
    run_dir = resolve_run_dir(run_dir)
    runs = [r for r in runs if r != run_dir.resolve()]
    if not runs:
        raise UserError(f"runs={pattern!r} matched no run directory (one holding {', '.join(RUN_MARKERS)})")
    common = Path(os.path.commonpath([str(r) for r in runs]))
    root = common.parent if len(runs) == 1 or common in runs else common  # short, distinct labels
    rows = [collect(r, root) for r in runs]
    table = markdown_table(rows)
    plots = []
    if plot_curves(rows, run_dir / "curves.png"):
        plots.append("curves.png")
    if plot_paper(rows, run_dir / "paper.png"):
        plots.append("paper.png")
    md = ["# cnnbench report", "", f"runs: `{pattern}` ({len(rows)} runs)", "", table, ""]
    md += [f"![{p}]({p})" for p in plots]
    (run_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"runs": [{k: v for k, v in r.items() if k != "metrics"} for r in rows], "plots": plots,
               "pattern": pattern}
    write_json(run_dir / "report.json", summary)
    print(table)
    print(f"cnnbench report: {len(rows)} runs → {run_dir / 'report.md'}"
          + (f" ({', '.join(plots)})" if plots else ""), flush=True)
    return summary
