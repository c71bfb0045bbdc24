"""The figures of `cnnbench report`: `curves.png` (training loss and learning rate per step, validation top-1 per
epoch) and `paper.png` (top-1 error per run, the paper's beside it where one exists).

Each row is one run: `label` (what differs from the other runs, cnnbench/analysis/runs.py), `metrics` (its
metrics.csv, cnnbench/analysis/metrics.py) and the scores of results.json / eval.json. A run keeps one colour
in every panel, and one legend below the panels names the runs, so no legend covers a line. A column a run did
not log draws nothing: no learning-rate column in any run, no learning-rate panel.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnbench.analysis.degradation import moving_average
from cnnbench.analysis.metrics import by_epoch, by_step, lr_columns

GROUP_STYLES = ("-", "--", ":", "-.")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(plt, i: int):
    return plt.cm.tab10(i % 10)


def _loss_panel(ax, rows: list[dict[str, Any]], colours: list) -> None:
    """Per step: the logged training loss faint, a trailing mean over about 1/20 of the points bold; a run with
    fewer than 2 logged steps shows its epoch means (● at the step that ended the epoch) instead."""
    epoch_means = False
    for r, colour in zip(rows, colours, strict=True):
        points = by_step(r["metrics"].get("train/loss", []))
        if len(points) >= 2:
            steps, losses = zip(*points, strict=True)
            window = max(1, min(50, len(points) // 20))
            if window > 1:
                ax.plot(steps, losses, color=colour, linewidth=0.6, alpha=0.25)
            ax.plot(steps, moving_average(list(losses), window), color=colour, linewidth=1.6)
        elif r["metrics"].get("train/loss_epoch"):
            ax.plot(*zip(*by_step(r["metrics"]["train/loss_epoch"]), strict=True), color=colour, marker="o",
                    linewidth=1.4)
            epoch_means = True
    title = "training loss per step" + (" (●: epoch mean)" if epoch_means else " (faint: logged, bold: smoothed)")
    ax.set(title=title, xlabel="step (optimizer updates)", ylabel="cross-entropy loss")
    _empty_note(ax, "no training loss logged")


def _val_panel(ax, rows: list[dict[str, Any]], colours: list) -> None:
    from matplotlib.ticker import MaxNLocator

    for r, colour in zip(rows, colours, strict=True):
        points = by_epoch(r["metrics"].get("val/acc1", []))
        if points:
            epochs, accs = zip(*points, strict=True)
            ax.plot(epochs, [100 * a for a in accs], color=colour, marker="o", linewidth=1.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="validation top-1 accuracy per epoch", xlabel="epoch", ylabel="top-1 accuracy (%)")
    # e.g. data.val_split=0 (the speedruns): say so instead of an empty frame
    _empty_note(ax, "no validation split in these runs\n(test accuracy: report.md)")


def _lr_panel(ax, rows: list[dict[str, Any]], colours: list) -> None:
    """Every learning-rate column per step: one line per run and parameter group (the group's line style)."""
    groups = sorted({c for r in rows for c in lr_columns(r["metrics"])})
    values = []
    for r, colour in zip(rows, colours, strict=True):
        for column in lr_columns(r["metrics"]):
            points = by_step(r["metrics"][column])
            steps, lrs = zip(*points, strict=True) if points else ((), ())
            values += lrs
            ax.plot(steps, lrs, color=colour, linewidth=1.4, linestyle=GROUP_STYLES[groups.index(column) % 4],
                    drawstyle="steps-post")
    if values and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_yscale("log")  # step decays (÷10, ÷10) read as equal steps
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if len(groups) > 1:
        handles = [ax.plot([], [], color="0.3", linestyle=GROUP_STYLES[i % 4])[0] for i in range(len(groups))]
        ax.legend(handles, groups, fontsize=7, title="parameter group", title_fontsize=7)
    ax.set(title="learning rate per step", xlabel="step (optimizer updates)", ylabel="learning rate")


def _empty_note(ax, text: str) -> None:
    if not ax.lines:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _save_with_run_legend(plt, fig, handles, labels: list[str], path: Path) -> None:
    """One legend below every panel (a run per entry, as many columns as the figure's width holds), the panels
    shrunk to leave it room, the PNG written."""
    entry_pt = 4.6 * max((len(label) for label in labels), default=1) + 40  # 8 pt text + the line sample
    ncol = max(1, min(len(labels), int(0.95 * 72 * fig.get_figwidth() // entry_pt)))
    nrows = math.ceil(len(labels) / ncol)
    bottom = min(0.45, (0.17 + 0.2 * nrows) / fig.get_figheight())  # inches → figure fraction
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False, title="runs",
                   title_fontsize=8)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> bool:
    """curves.png from the rows that have a metrics.csv; False (nothing written) when none has."""
    rows = [r for r in rows if r.get("metrics")]
    if not rows:
        return False
    plt = _pyplot()
    panels = [_loss_panel, _val_panel] + ([_lr_panel] if any(lr_columns(r["metrics"]) for r in rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6))
    colours = [_colour(plt, i) for i in range(len(rows))]
    for ax, panel in zip(axes, panels, strict=True):
        panel(ax, rows, colours)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, linewidth=2) for c in colours]
    _save_with_run_legend(plt, fig, handles, [r["label"] for r in rows], path)
    return True


def _shared(rows: list[dict[str, Any]], key: str) -> str | None:
    values = {str(r.get(key) or "—") for r in rows}
    return values.pop() if len(values) == 1 else None


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each key → its shortest dotted suffix no other key ends with (`optimizer.lr` → `lr`)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not [k for k in keys if k != key and (k == suffix or k.endswith("." + suffix))]:
                break
        out[key] = suffix
    return out


def _tick_labels(rows: list[dict[str, Any]], compared: list[str]) -> tuple[list[str], str]:
    """One tick per run: its settings (only the value when one key is compared; else one `key=value` a line, the
    keys shortened) plus whichever of model, data and protocol differ between runs; and the x-axis title."""
    varying = [k for k in ("model", "data", "protocol") if _shared(rows, k) is None and k not in compared]
    short = _short_keys(compared)
    ticks = []
    for r in rows:
        settings = r.get("settings") or {}
        if len(compared) == 1 and compared[0] in settings:
            lines = [settings[compared[0]]]
        elif settings:
            lines = [f"{short[k]}={settings[k]}" for k in compared if k in settings]
        else:
            lines = r["label"].split(" ")
        ticks.append("\n".join(lines + [str(r.get(k) or "—") for k in varying]))
    return ticks, compared[0] if len(compared) == 1 else "run"


def plot_errors(rows: list[dict[str, Any]], path: Path, compared: list[str]) -> bool:
    """paper.png: top-1 error % per scored run (ours), the paper's beside it for the runs that have one; the title
    names what the runs differ in. False (nothing written) when no run has a top-1 accuracy."""
    scored = [r for r in rows if isinstance(r.get("eval_acc1", r.get("acc1")), (int, float))]
    if not scored:
        return False
    plt = _pyplot()
    ours = [100 * (1 - r.get("eval_acc1", r.get("acc1"))) for r in scored]
    paper = [100 * r["paper"]["top1_err"] if (r.get("paper") or {}).get("top1_err") is not None else math.nan
             for r in scored]
    has_paper = any(not math.isnan(p) for p in paper)
    ticks, xlabel = _tick_labels(scored, compared)
    tick_in = max(0.9, 0.065 * max(len(line) for t in ticks for line in t.split("\n")) + 0.25)
    fig_w = max(6.0, tick_in * len(scored) + (3.5 if has_paper else 2))
    rotate = fig_w > 18
    fig, ax = plt.subplots(figsize=(min(fig_w, 18), 4.8))
    xs = list(range(len(scored)))
    width = 0.38 if has_paper else 0.6
    bars = ax.bar([x - width / 2 if has_paper else x for x in xs], ours, width, label="ours", color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    if has_paper:
        bars = ax.bar([x + width / 2 for x in xs], paper, width, label="paper (same setting)", color="tab:orange")
        ax.bar_label(bars, labels=["" if math.isnan(p) else f"{p:.2f}" for p in paper], fontsize=7, padding=2)
        for x, p in zip(xs, paper, strict=True):
            if math.isnan(p):
                ax.text(x + width / 2, 0, "no\npaper\nnumber", ha="center", va="bottom", fontsize=6, color="0.4")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(0, 1.15 * max(v for v in ours + paper if not math.isnan(v)) or 1)
    ax.set_xticks(xs)
    ax.set_xlim(-0.6, len(xs) - 0.4)
    ax.set_xticklabels(ticks, fontsize=8, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    title = f"top-1 error by {', '.join(compared)}" if compared else "top-1 error per run"
    ax.set(title=title + (": ours vs the paper" if has_paper else ""), xlabel=xlabel, ylabel="top-1 error (%)")
    ax.grid(axis="y", alpha=0.3)
    shared = [v for v in (_shared(scored, k) for k in ("model", "data", "protocol")) if v and v != "—"]
    note = " · ".join(shared) + ("" if has_paper else ("; " if shared else "") + "no paper number for these settings")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
