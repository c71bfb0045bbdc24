"""`cnnbench analyze <analysis> …`: the analyses behind the papers' figures (docs/claims.md).

- `layer_responses ckpt_path=… | runs=<glob>` — He et al. 2015 Fig. 7: std of each 3×3 layer's response
  (after BN, before ReLU/addition) on the test images, in layer order and sorted; one line per checkpoint.
  Writes layer_responses.json and layer_responses.png.
- `degradation runs=<glob>` — He et al. 2015 Fig. 1/6: training (thin) and held-out (bold) error vs
  iterations of the runs of a sweep; writes degradation.json and degradation.png.
- `curves runs=<glob> [name=… title=…]` — the same curves for any sweep, labelled by each run's overrides
  (claims 3, 5, 6); writes <name>.json and <name>.png.
- `scaling runs=<glob> [name=…]` — test accuracy vs MACs of a `claim.variant=<method>_<k>x` sweep
  (EfficientNet Fig. 3/8, claim 4).
- `zoo runs=<glob> [copy_to=docs/zoo] [doc=docs/zoo.md]` — the model zoo's table (docs/zoo.md): one row per
  `experiment=zoo_<model>` recipe from its runs; writes zoo.md and zoo.json. With `copy_to`, each finished run's
  results.json + metrics.csv is first copied (paths trimmed) to `<copy_to>/<recipe>/seed<seed>/`, the table is
  built from every artifact there and its numbers are written to `<copy_to>/zoo.json`; `doc=` writes the table
  into that page between its zoo-table markers.

`copy_to=<folder>` also copies the JSON and PNG there (e.g. docs/claims).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnbench.analysis.runs import run_seed
from cnnbench.errors import UserError
from cnnbench.run import build_datamodule, checkpoint_paths, find_runs, resolve_paths
from cnnbench.runtime import absolute, original_cwd, resolve_run_dir, write_json


def _run_dirs(cfg: DictConfig) -> list[Path]:
    pattern = cfg.get("runs")
    if pattern in (None, ""):  # cfg.get gives None for a missing (???) value
        return []
    pattern = str(pattern)
    runs = [r for r in find_runs(pattern if Path(pattern).is_absolute() else str(original_cwd() / pattern))
            if (r / "results.json").is_file()]
    if not runs:
        raise UserError(f"runs={pattern!r} matched no training run (a directory holding results.json)")
    return runs


def _checkpoints(cfg: DictConfig) -> list[str]:
    """ckpt_path (one or a list) or, from runs=<glob>, each run's final weights (checkpoints/last.ckpt)."""
    if cfg.get("ckpt_path") not in (None, ""):
        return checkpoint_paths(cfg.ckpt_path)
    runs = _run_dirs(cfg)
    if not runs:
        raise UserError("layer_responses needs ckpt_path=<.ckpt> (or a list [a.ckpt,b.ckpt]) or runs=<glob of run dirs>")
    paths = []
    for run in runs:
        last = run / "checkpoints" / "last.ckpt"
        best = json.loads((run / "results.json").read_text()).get("checkpoint")
        path = last if last.is_file() else (Path(best) if best else None)
        if path is None or not path.is_file():
            raise UserError(f"run {run} has no checkpoint (checkpoints/last.ckpt)")
        paths.append(str(path))
    return paths


def _layer_responses(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    import torch

    from cnnbench.analysis.layer_responses import layer_responses, plot_layer_responses
    from cnnbench.checkpoint import check_compatible, module_from_checkpoint
    from cnnbench.evaluation.engine import pick_device

    device = pick_device(cfg)
    limit = cfg.get("images")
    networks: dict[str, Any] = {}
    for path in _checkpoints(cfg):
        module, record = module_from_checkpoint(path)
        data_cfg = OmegaConf.to_container(resolve_paths(cfg).data, resolve=True)
        data_cfg["val_split"] = 0  # only the test split is read
        if data_cfg.get("image_size") is None:
            data_cfg["image_size"] = int(record["image_size"])
        name = str(record["model"]["name"])
        dm = build_datamodule(cfg, data=data_cfg, augmentation={"name": "none"}, model_name=name)
        check_compatible(record, path, None, dm.num_classes)
        loader = dm.test_dataloader()
        with torch.inference_mode():
            res = layer_responses(module.model, loader, prepare=module.prepare, device=device,
                                  limit=int(limit) if limit is not None else None)
        label, k = name, 2
        while label in networks:
            label, k = f"{name} ({k})", k + 1
        networks[label] = {"model": name, "checkpoint": path, "seed": run_seed(Path(path).parent.parent), **res}
        print(f"cnnbench analyze: {label}: {res['n_layers']} 3×3 layers on {res['n_images']} test images, "
              f"std first/last {res['std_layer_order'][0]:.3f}/{res['std_layer_order'][-1]:.3f}, "
              f"mean {sum(res['std_layer_order']) / res['n_layers']:.3f}", flush=True)
    summary = {"analysis": "layer_responses", "paper": "He et al. 2015 §4.2, Fig. 7",
               "data": str(cfg.data.name), "split": "test",
               "response": "output of the BatchNorm2d that follows each 3x3 conv (before ReLU/addition), eval mode",
               "std": "pooled over images, channels and positions (std_channel_mean: per channel, averaged)",
               "networks": networks}
    # over seeds: each net's mean response std (its layers averaged), per model; `expect=["resnet56 < resnet20"]`
    rows = [{"label": n["model"], "seed": n["seed"], "run_dir": n["checkpoint"],
             "response_std_mean": sum(n["std_layer_order"]) / n["n_layers"]} for n in networks.values()]
    summary.update(_arms_and_verdicts(cfg, rows, metric="response_std_mean"))
    json_path, png_path = run_dir / "layer_responses.json", run_dir / "layer_responses.png"
    write_json(json_path, summary)
    plot_layer_responses({k: v for k, v in networks.items()}, png_path,
                         title=f"std of 3×3 layer responses on {cfg.data.name} test images (cf. He et al. Fig. 7)")
    return summary, [json_path, png_path]


def _degradation(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.degradation import compare, plot_degradation, summarize_degradation_run

    runs = _run_dirs(cfg)
    if not runs:
        raise UserError("degradation needs runs=<glob of the sweep's run dirs> (e.g. runs='multirun/train/…/*')")
    rows = [r for r in (summarize_degradation_run(run, float(cfg.get("end_fraction", 0.25))) for run in runs) if r]
    if not rows:
        raise UserError(f"runs={cfg.runs!r}: no run logged train/err in metrics.csv (train with this cnnbench)")
    png_path, json_path = run_dir / "degradation.png", run_dir / "degradation.json"
    plot_degradation(rows, png_path, smooth=int(cfg.get("smooth", 5)))
    comparison = compare(rows)
    summary = {"analysis": "degradation", "paper": "He et al. 2015 §4.2, Fig. 1 and Fig. 6",
               "end_fraction": float(cfg.get("end_fraction", 0.25)), "comparison": comparison}
    summary.update(_arms_and_verdicts(cfg, rows))
    summary["runs"] = rows
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


def _arms_and_verdicts(cfg: DictConfig, rows: list[dict[str, Any]], metric: str | None = None) -> dict[str, Any]:
    """Per arm (runs that differ only in `seed=`): mean ± std of each metric; then the verdict on each
    `expect=["A < B", …]` by the stated rule (cnnbench/analysis/seeds.py)."""
    from cnnbench.analysis.seeds import METRICS, arms, decide, format_verdict

    configured = cfg.get("metric") or "test_err"
    metrics = [metric] if metric else [str(m) for m in configured] if OmegaConf.is_list(configured) else [str(configured)]
    table = arms(rows, metrics=tuple(dict.fromkeys((*METRICS, *metrics))))
    factor = float(cfg.get("rule_factor", 2.0))
    verdicts = [decide(table, str(e), m, factor) for m in metrics for e in (cfg.get("expect") or [])]
    for m in metrics:
        _print_arms(table, m)
    for v in verdicts:
        print(f"cnnbench analyze: {format_verdict(v)}", flush=True)
    return {"metric": metrics[0] if len(metrics) == 1 else metrics, "rule_factor": factor, "arms": table,
            "verdicts": verdicts}


def _print_arms(table: dict[str, Any], metric: str) -> None:
    percent = "_err" in metric
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}" if percent else f"{v:.4f}"  # noqa: E731
    for label, arm in table.items():
        if metric in arm:
            s = arm[metric]
            print(f"cnnbench analyze: arm {label:<36} {metric} {pct(s['mean'])} ± {pct(s['std'])}{' %' if percent else ''} "
                  f"(seeds {', '.join(str(x) for x in arm['seeds'])})", flush=True)


def _curves(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.curves import plot_curves, summarize_curves

    rows = summarize_curves(_required_runs(cfg, "curves"))
    if not rows:
        raise UserError(f"runs={cfg.runs!r}: no run logged train/err in metrics.csv (train with this cnnbench)")
    name, png_path, json_path = _outputs(cfg, run_dir, "curves")
    plot_curves(rows, png_path, title=str(cfg.get("title") or "error vs iterations"), smooth=int(cfg.get("smooth", 5)))
    seeds = _arms_and_verdicts(cfg, rows)
    write_json(json_path, {"analysis": "curves", "name": name, **seeds, "runs": rows})
    for r in sorted(rows, key=lambda r: r["label"]):
        pct = lambda v: f"{100 * v:.2f}%" if v is not None else "—"  # noqa: E731
        quarters = " ".join(pct(v) for v in r["val_err_at_fraction"].values())
        print(f"cnnbench analyze: {r['label']:<40} held-out err at ¼ ½ ¾ end: {quarters}  mean {pct(r['val_err_mean'])}"
              f"  test err {pct(r['test_err'])}  ({r['iterations']} it, {r['wall_s']} s)", flush=True)
    return {"runs": rows, **seeds}, [json_path, png_path]


def _scaling(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.curves import plot_scaling, summarize_scaling

    rows = summarize_scaling(_required_runs(cfg, "scaling"))
    if not rows:
        raise UserError(f"runs={cfg.runs!r}: no run of a `claim.variant=…` sweep with results.json")
    _, png_path, json_path = _outputs(cfg, run_dir, "scaling")
    plot_scaling(rows, png_path, title=str(cfg.get("title") or "accuracy vs MACs (cf. Tan & Le Fig. 8)"))
    write_json(json_path, {"analysis": "scaling", "paper": "Tan & Le 2019 §3.2-3.3, Fig. 3 and Fig. 8",
                           "runs": rows})
    for r in rows:
        print(f"cnnbench analyze: {r['variant']:<16} {r['macs'] / 1e6:8.2f} M MACs {r['params'] / 1e6:6.3f} M params"
              f"  test acc1 {100 * r['test_acc1']:.2f}%", flush=True)
    return {"runs": rows}, [json_path, png_path]


def _outputs(cfg: DictConfig, run_dir: Path, default: str) -> tuple[str, Path, Path]:
    """`name=` (or the analysis' own name) and the PNG and JSON it names in the run dir."""
    name = str(cfg.get("name") or default)
    return name, run_dir / f"{name}.png", run_dir / f"{name}.json"


def _required_runs(cfg: DictConfig, name: str) -> list[Path]:
    runs = _run_dirs(cfg)
    if not runs:
        raise UserError(f"{name} needs runs=<glob of the sweep's run dirs> (e.g. runs='multirun/claim_<name>/*')")
    return runs


def _zoo(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis import zoo

    runs = []
    for run in _required_runs(cfg, "zoo"):
        if zoo.not_a_row(run):
            print(f"cnnbench analyze: zoo: {run} left out: it changes the row ({' '.join(zoo.not_a_row(run))})",
                  flush=True)
        else:
            runs.append(run)
    rows = [r for r in (zoo.summarize_zoo_run(run) for run in runs) if r is not None]
    copy_to = cfg.get("copy_to")
    if copy_to:  # the committed artifacts are the table's source: copy the finished runs, then read them all
        target = Path(absolute(str(copy_to)))
        roots = [str(original_cwd()), str(Path(__file__).resolve().parents[2])]
        for r in rows:
            if r["test_acc1"] is not None and not r["artifact"]:
                print(f"cnnbench analyze: zoo: {r['run_dir']} → {zoo.copy_artifact(Path(r['run_dir']), target, roots)}",
                      flush=True)
        kept = [r for r in rows if r["test_acc1"] is None and not r["artifact"]]  # unfinished runs keep their row
        rows = kept + [r for r in (zoo.summarize_zoo_run(p.parent) for p in sorted(target.glob("*/seed*/results.json")))
                       if r is not None]
    if not rows:
        raise UserError(f"runs={cfg.runs!r}: no run of an experiment=zoo_<model> recipe as written")
    recipes = zoo.zoo_recipes()
    table = zoo.zoo_table(recipes, rows)
    md_path, json_path = run_dir / "zoo.md", run_dir / "zoo.json"
    md_path.write_text(table)
    summary = {"analysis": "zoo", "public_benchmark": {"source": zoo.PUBLIC_SOURCE,
                                                       "rows": {k: {"row": v[0], "test_acc1": v[1]}
                                                                for k, v in zoo.PUBLIC.items()}},
               "table": zoo.table_numbers(recipes, rows), "runs": rows}
    write_json(json_path, summary)
    if copy_to:  # the table's numbers beside the artifacts (docs/zoo/zoo.json), without the machine's paths
        roots = [str(original_cwd()), str(Path(__file__).resolve().parents[2])]
        write_json(target / "zoo.json", zoo.trim(summary, zoo.prefix_re(roots)))
    if cfg.get("doc"):
        zoo.replace_table(Path(absolute(str(cfg.doc))), table)
        print(f"cnnbench analyze: zoo: table written into {cfg.doc}", flush=True)
    for r in rows:
        acc = "—" if r["test_acc1"] is None else f"{r['test_acc1']:.4f}"
        print(f"cnnbench analyze: zoo: {r['recipe']:<26} seed {r['seed']}  test acc1 {acc}  ({r['run_dir']})", flush=True)
    return summary, [md_path, json_path]


ANALYSES = {"layer_responses": _layer_responses, "degradation": _degradation, "curves": _curves,
            "scaling": _scaling, "zoo": _zoo}


def analyze(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    name = cfg.get("analysis")
    if name not in ANALYSES:
        raise UserError(f"analysis={name!r} is not an analysis; valid choices: {', '.join(ANALYSES)} "
                        "(cnnbench analyze layer_responses ckpt_path=…)")
    run_dir = resolve_run_dir(run_dir)
    summary, files = ANALYSES[name](cfg, run_dir)
    copy_to = cfg.get("copy_to")
    if copy_to and name != "zoo":  # zoo copies its runs' artifacts itself
        target = Path(absolute(str(copy_to)))
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, target / f.name)
    print(f"cnnbench analyze: {name} → {', '.join(str(f) for f in files)}"
          + (f" (copied to {copy_to})" if copy_to else ""), flush=True)
    return summary
