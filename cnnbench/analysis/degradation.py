"""He et al. 2015, Fig. 1 and Fig. 6: training and test error vs iterations, plain vs residual nets.

Reads the run dirs of a sweep (`experiment=claim_degradation`): `results.json` (model, final test top-1)
and `metrics.csv` (Lightning's CSV logger: `train/err` — one training batch's top-1 error every
`log_every_n_steps` iterations — and `val/acc1` at every validation). The figure follows the paper's:
error % vs iterations, thin lines = training error, bold lines = held-out error, plain nets on the left,
residual nets on the right. `end_fraction` of the run (by default the last quarter: after the second
learning-rate drop of the recipe) gives the final training error, averaged over its logged batches.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from cnnbench.analysis.metrics import by_step, read_metrics
from cnnbench.analysis.runs import run_label, run_seed
from cnnbench.runtime import write_json


def _depth(model: str) -> int:
    m = re.search(r"(\d+)$", model)
    return int(m.group(1)) if m else 0


def _family(model: str) -> str:
    return "plain" if model.startswith("plain") else "residual"


def read_curves(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """{'train': [(iteration, error)], 'val': [(iteration, error)], 'grad_norm': [(iteration, norm)]};
    iteration = Lightning's step + 1; 'grad_norm' is empty unless the run had `log_grad_norm=true`."""
    metrics = read_metrics(metrics_csv)
    return {"train": by_step(metrics.get("train/err", [])),
            "val": sorted((it, 1.0 - acc) for it, acc in by_step(metrics.get("val/acc1", []))),
            "grad_norm": by_step(metrics.get("train/grad_norm", []))}


def plot_error_curves(ax, curves: dict[str, list], colour, label: str, smooth: int, train_alpha: float) -> None:
    """One run — or one arm's mean over seeds — on `ax`: training error (thin, moving average over `smooth`
    points) and held-out error (bold). Points are (iteration, error) or, for an arm, (iteration, mean, min,
    max) (cnnbench/analysis/seeds.py): the seeds' min–max range of the held-out error is shaded."""
    its, errs = [p[0] for p in curves["train"]], [p[1] for p in curves["train"]]
    ax.plot(its, [100 * e for e in moving_average(errs, smooth)], color=colour, linewidth=0.8,
            alpha=train_alpha, label=f"{label} train")
    if curves["val"]:
        its, errs = [p[0] for p in curves["val"]], [p[1] for p in curves["val"]]
        ax.plot(its, [100 * e for e in errs], color=colour, linewidth=2.4, marker="o", markersize=3,
                label=f"{label} held-out")
        if len(curves["val"][0]) == 4:
            ax.fill_between(its, [100 * p[2] for p in curves["val"]], [100 * p[3] for p in curves["val"]],
                            color=colour, alpha=0.18, linewidth=0)


def save_figure(fig, axes, path: Path, legend_size: int) -> None:
    """Grid and legend on each of `axes`, then the PNG at `path` (110 dpi), figure closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to `window` points (the first points average what exists so far)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def summarize_run(run: Path, end_fraction: float = 0.25) -> dict[str, Any] | None:
    results_file, metrics_file = run / "results.json", run / "metrics.csv"
    if not results_file.is_file() or not metrics_file.is_file():
        return None
    results = json.loads(results_file.read_text())
    curves = read_curves(metrics_file)
    if not curves["train"]:
        return None
    last_it = max(it for it, _ in curves["train"])
    tail = [e for it, e in curves["train"] if it > (1 - end_fraction) * last_it]
    model = str(results.get("model"))
    test_acc = results.get("test/acc1")
    return {
        "model": model, "run_dir": str(run), "label": run_label(run, model), "seed": run_seed(run),
        "iterations": int(results.get("steps") or last_it), "wall_s": results.get("wall_s"),
        "n_train": results.get("n_train"), "n_test": results.get("n_test"),
        "train_err_final": sum(tail) / len(tail), "train_err_final_batches": len(tail),
        "val_err_final": curves["val"][-1][1] if curves["val"] else None,
        "test_err": (1.0 - float(test_acc)) if isinstance(test_acc, (int, float)) else None,
        # gradient 2-norm before clipping (log_grad_norm=true): at the first iteration and the run's median
        "grad_norm_first": curves["grad_norm"][0][1] if curves["grad_norm"] else None,
        "grad_norm_median": statistics.median(g for _, g in curves["grad_norm"]) if curves["grad_norm"] else None,
        "curves": curves,
    }


def summarize_degradation_run(run: Path, end_fraction: float = 0.25) -> dict[str, Any] | None:
    """`summarize_run` plus the plain/residual family and depth that claim 1 compares (read from the name)."""
    row = summarize_run(run, end_fraction)
    if row is None:
        return None
    model = row["model"]
    return {"model": model, "family": _family(model), "depth": _depth(model), **row}


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family, shallowest vs deepest (each model's mean over its seeds): does depth raise (plain) or lower
    (residual) the error? The verdicts with seed noise come from `expect=` (cnnbench/analysis/seeds.py)."""
    out: dict[str, Any] = {}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    means = [{"model": m, "family": rs[0]["family"], "depth": rs[0]["depth"],
              **{k: sum(r[k] for r in rs) / len(rs) if all(r.get(k) is not None for r in rs) else None
                 for k in ("train_err_final", "val_err_final", "test_err")}} for m, rs in by_model.items()]
    for family in ("plain", "residual"):
        members = sorted((r for r in means if r["family"] == family), key=lambda r: r["depth"])
        if len(members) < 2:
            continue
        shallow, deep = members[0], members[-1]
        entry = {"shallow": shallow["model"], "deep": deep["model"]}
        for key in ("train_err_final", "val_err_final", "test_err"):
            if shallow.get(key) is not None and deep.get(key) is not None:
                entry[f"{key}_delta_deep_minus_shallow"] = deep[key] - shallow[key]
        # the paper's claim: plain — deeper has the higher training error; residual — deeper has the lower error
        d = entry.get("train_err_final_delta_deep_minus_shallow")
        if d is not None:
            entry["claim_holds_on_train_error"] = d > 0 if family == "plain" else d < 0
        d = entry.get("test_err_delta_deep_minus_shallow")
        if d is not None:
            entry["claim_holds_on_test_error"] = d > 0 if family == "plain" else d < 0
        out[family] = entry
    return out


def plot_degradation(rows: list[dict[str, Any]], path: Path, smooth: int = 5) -> None:
    """The paper's style: error % vs iterations; thin = training error (moving average of `smooth` logged
    batches), bold = held-out error; plain nets left, residual nets right, one colour per depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in ("plain", "residual") if any(r["family"] == f for r in rows)]
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.5), squeeze=False, sharey=True)
    depths = sorted({r["depth"] for r in rows})
    colours = {d: plt.cm.viridis(i / max(1, len(depths) - 1) * 0.85) for i, d in enumerate(depths)}
    from cnnbench.analysis.seeds import arm_curves

    for ax, family in zip(axes[0], families, strict=True):
        members = sorted((r for r in rows if r["family"] == family), key=lambda r: r["depth"])
        curves = arm_curves(members)
        for label in dict.fromkeys(r["label"] for r in members):
            depth = next(r["depth"] for r in members if r["label"] == label)
            plot_error_curves(ax, curves[label], colours[depth], label, smooth, train_alpha=0.9)
        ax.set(title=f"{family} nets", xlabel="iterations", ylabel="error (%)")
    seeds = len({r.get("seed") for r in rows})
    spread = f" · mean of {seeds} seeds, shaded: their range" if seeds > 1 else ""
    fig.suptitle(f"thin: training error (batch, moving avg.) · bold: held-out error{spread}", fontsize=9)
    save_figure(fig, axes[0], path, legend_size=8)


def degradation_analysis(runs: list[Path], run_dir: Path, rule, pattern: str = "", end_fraction: float = 0.25,
                         smooth: int = 5) -> tuple[dict[str, Any], list[Path]]:
    """`cnnbench analyze degradation`: the figure, the plain-vs-residual comparison per family, the seeds'
    verdicts (`rule`: analysis.seeds.SeedRule); degradation.json and degradation.png in `run_dir`."""
    from cnnbench.errors import UserError

    rows = [r for r in (summarize_degradation_run(run, end_fraction) for run in runs) if r]
    if not rows:
        raise UserError(f"runs={pattern!r}: no run logged train/err in metrics.csv (train with this cnnbench)")
    png_path, json_path = run_dir / "degradation.png", run_dir / "degradation.json"
    plot_degradation(rows, png_path, smooth=smooth)
    comparison = compare(rows)
    summary = {"analysis": "degradation", "paper": "He et al. 2015 §4.2, Fig. 1 and Fig. 6",
               "end_fraction": end_fraction, "comparison": comparison, **rule.apply(rows), "runs": rows}
    write_json(json_path, summary)
    for r in sorted(rows, key=lambda r: (r["family"], r["depth"])):
        val = f"{100 * r['val_err_final']:.2f}" if r["val_err_final"] is not None else "—"
        test = f"{100 * r['test_err']:.2f}" if r["test_err"] is not None else "—"
        print(f"cnnbench analyze: {r['model']:<10} train err (last {r['train_err_final_batches']} logged batches) "
              f"{100 * r['train_err_final']:.2f}%  held-out err {val}%  test err {test}%", flush=True)
    for family, c in comparison.items():
        print(f"cnnbench analyze: {family}: {c['deep']} vs {c['shallow']} — claim holds on training error: "
              f"{c.get('claim_holds_on_train_error')}, on test error: {c.get('claim_holds_on_test_error')}", flush=True)
    return summary, [json_path, png_path]
