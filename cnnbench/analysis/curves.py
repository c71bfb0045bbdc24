"""Training curves and accuracy-vs-MACs of a sweep's runs — the figures of claims 3–6 (docs/claims.md).

- `curves`: training (thin) and held-out (bold) error vs iterations, one colour per run, labelled by the
  run's own sweep overrides — the style of the Inception-v4 paper's training-curve figures (error vs
  time) and of the ResNet paper's Fig. 6. `summarize_curves` adds the numbers the claims are judged
  on: held-out error at each quarter of the run, the mean held-out error over the run (lower = learned
  faster), the final held-out and test errors.
- `scaling`: test accuracy vs multiply-adds per image (EfficientNet Fig. 3/8): the runs of a sweep over
  `claim.variant=<method>_<k>x` are grouped by method (depth, width, resolution, compound); the
  `base` run starts every line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench.analysis.degradation import plot_error_curves, save_figure, summarize_run
from cnnbench.analysis.runs import run_label, run_overrides  # noqa: F401 (run_label: re-exported)
from cnnbench.overrides import split_override
from cnnbench.runtime import write_json


def error_at(curve: list[tuple[int, float]], iteration: float) -> float | None:
    """The last logged error at or before `iteration` (None before the first point)."""
    before = [e for it, e in curve if it <= iteration]
    return before[-1] if before else None


def summarize_curves(runs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        row = summarize_run(run)
        if row is None:
            continue
        val = row["curves"]["val"]
        last = row["iterations"]
        row["val_err_at_fraction"] = {f"{q:.2f}": error_at(val, q * last) for q in (0.25, 0.5, 0.75, 1.0)}
        row["val_err_mean"] = sum(e for _, e in val) / len(val) if val else None
        rows.append(row)
    return rows


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str, smooth: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnbench.analysis.seeds import arm_curves

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    curves = arm_curves(rows)
    for i, label in enumerate(sorted(curves)):
        plot_error_curves(ax, curves[label], plt.cm.tab10(i % 10), label, smooth, train_alpha=0.8)
    seeds = len({r.get("seed") for r in rows})
    if seeds > 1:
        title = f"{title} (mean of {seeds} seeds, shaded: their range)"
    ax.set(title=title, xlabel="iterations", ylabel="error (%)")
    save_figure(fig, [ax], path, legend_size=7)


def variant_of(run: Path) -> str | None:
    for o in run_overrides(run):
        key, value = split_override(o)
        if key == "claim.variant":
            return value
    return None


def run_macs(run: Path) -> tuple[float, int]:
    """Multiply-adds per image and parameters of a run's network, built on the meta device from the
    model record of its checkpoint (no weights are loaded into a model)."""
    from cnnbench.checkpoint import load_checkpoint, record_of
    from cnnbench.models import create_model
    from cnnbench.profiling import build_on_meta, count_macs, count_params
    from cnnbench.training.module import model_kwargs

    results = json.loads((run / "results.json").read_text())
    last = run / "checkpoints" / "last.ckpt"
    path = last if last.is_file() else Path(results["checkpoint"])
    record = record_of(load_checkpoint(path), path)
    model = build_on_meta(create_model, record["model"]["name"], num_classes=record["num_classes"],
                          in_chans=record["in_chans"], **model_kwargs(dict(record["model"])))
    return count_macs(model, int(record["image_size"]), in_chans=int(record["in_chans"])), count_params(model)


def summarize_scaling(runs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        variant = variant_of(run)
        results_file = run / "results.json"
        if variant is None or not results_file.is_file():
            continue
        results = json.loads(results_file.read_text())
        macs, params = run_macs(run)
        method, _, factor = variant.partition("_")
        rows.append({"variant": variant, "method": method, "target_factor": factor or "1x", "macs": macs,
                     "params": params, "test_acc1": results.get("test/acc1"), "val_acc1": results.get("val/acc1"),
                     "wall_s": results.get("wall_s"), "run_dir": str(run)})
    return sorted(rows, key=lambda r: (r["method"], r["macs"]))


def plot_scaling(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = [r for r in rows if r["method"] == "base"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = {"compound": "o", "depth": "s", "width": "^", "resolution": "D"}
    for method in sorted({r["method"] for r in rows} - {"base"}):
        pts = sorted(base + [r for r in rows if r["method"] == method], key=lambda r: r["macs"])
        ax.plot([r["macs"] / 1e6 for r in pts], [100 * r["test_acc1"] for r in pts],
                marker=markers.get(method, "x"), linewidth=2.4 if method == "compound" else 1.4,
                label=f"scale {method}" if method != "compound" else "compound scaling")
    ax.set(title=title, xlabel="MACs per image (millions)", ylabel="test top-1 accuracy (%)")
    save_figure(fig, [ax], path, legend_size=8)


def _pct(v: float | None) -> str:
    return f"{100 * v:.2f}%" if v is not None else "—"


def curves_analysis(runs: list[Path], run_dir: Path, rule, pattern: str = "", name: str = "curves", title: str | None = None,
                    smooth: int = 5) -> tuple[dict[str, Any], list[Path]]:
    """`cnnbench analyze curves`: the figure, the numbers per run and the seeds' verdicts; <name>.json/.png."""
    from cnnbench.errors import UserError

    rows = summarize_curves(runs)
    if not rows:
        raise UserError(f"runs={pattern!r}: no run logged train/err in metrics.csv (train with this cnnbench)")
    png_path, json_path = run_dir / f"{name}.png", run_dir / f"{name}.json"
    plot_curves(rows, png_path, title=title or "error vs iterations", smooth=smooth)
    seeds = rule.apply(rows)
    write_json(json_path, {"analysis": "curves", "name": name, **seeds, "runs": rows})
    for r in sorted(rows, key=lambda r: r["label"]):
        quarters = " ".join(_pct(v) for v in r["val_err_at_fraction"].values())
        print(f"cnnbench analyze: {r['label']:<40} held-out err at ¼ ½ ¾ end: {quarters}  mean {_pct(r['val_err_mean'])}"
              f"  test err {_pct(r['test_err'])}  ({r['iterations']} it, {r['wall_s']} s)", flush=True)
    return {"runs": rows, **seeds}, [json_path, png_path]


def scaling_analysis(runs: list[Path], run_dir: Path, pattern: str = "", name: str = "scaling",
                     title: str | None = None) -> tuple[dict[str, Any], list[Path]]:
    """`cnnbench analyze scaling`: test accuracy vs MACs per scaling method; <name>.json/.png."""
    from cnnbench.errors import UserError

    rows = summarize_scaling(runs)
    if not rows:
        raise UserError(f"runs={pattern!r}: no run of a `claim.variant=…` sweep with results.json")
    png_path, json_path = run_dir / f"{name}.png", run_dir / f"{name}.json"
    plot_scaling(rows, png_path, title=title or "accuracy vs MACs (cf. Tan & Le Fig. 8)")
    write_json(json_path, {"analysis": "scaling", "paper": "Tan & Le 2019 §3.2-3.3, Fig. 3 and Fig. 8",
                           "runs": rows})
    for r in rows:
        print(f"cnnbench analyze: {r['variant']:<16} {r['macs'] / 1e6:8.2f} M MACs {r['params'] / 1e6:6.3f} M params"
              f"  test acc1 {100 * r['test_acc1']:.2f}%", flush=True)
    return {"runs": rows}, [json_path, png_path]
