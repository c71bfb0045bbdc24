"""`cnnbench analyze <analysis> …`: the analyses behind the papers' figures (docs/claims.md).

- `layer_responses ckpt_path=… | runs=<glob>` — He et al. 2015 Fig. 7: std of each 3×3 layer's response
  (after BN, before ReLU/addition) on the test images; layer_responses.json and .png.
- `degradation runs=<glob>` — He et al. 2015 Fig. 1/6: training and held-out error vs iterations of a sweep.
- `curves runs=<glob> [name=… title=…]` — the same curves for any sweep, labelled by each run's overrides.
- `scaling runs=<glob> [name=…]` — test accuracy vs MACs of a `claim.variant=<method>_<k>x` sweep
  (EfficientNet Fig. 3/8, claim 4).
- `zoo runs=<glob> [copy_to=docs/zoo] [doc=docs/zoo.md]` — the model zoo's table (docs/zoo.md, and
  `cnnbench.analysis.zoo.zoo_analysis` for what copy_to and doc do).

The analyses themselves live in `cnnbench/analysis/`; `copy_to=<folder>` copies the JSON and PNG there.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnbench.analysis.runs import run_seed
from cnnbench.analysis.seeds import SeedRule
from cnnbench.errors import UserError
from cnnbench.run import build_datamodule, checkpoint_paths, finished_runs, resolve_paths
from cnnbench.runtime import absolute, original_cwd, resolve_run_dir


def _run_dirs(cfg: DictConfig, name: str | None = None) -> list[Path]:
    """The training runs (dirs holding results.json) under `runs=<glob>` or `[<glob>,…]`; `name`: one is required."""
    pattern = cfg.get("runs")
    if pattern in (None, ""):  # cfg.get gives None for a missing (???) value
        if name:
            raise UserError(f"{name} needs runs=<glob of the sweep's run dirs> (e.g. runs='multirun/claim_<name>/*')")
        return []
    patterns = [str(p) for p in pattern] if OmegaConf.is_list(pattern) else [str(pattern)]
    runs = finished_runs(patterns, original_cwd())
    if not runs:
        shown = patterns[0] if len(patterns) == 1 else patterns
        raise UserError(f"runs={shown!r} matched no training run (a directory holding results.json)")
    return runs


def _rule(cfg: DictConfig) -> SeedRule:  # metric=, expect=, rule_factor= (docs/claims.md)
    metric = cfg.get("metric") or "test_err"
    metrics = tuple(str(m) for m in metric) if OmegaConf.is_list(metric) else (str(metric),)
    return SeedRule(metrics, tuple(str(e) for e in cfg.get("expect") or ()), float(cfg.get("rule_factor", 2.0)))


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

    from cnnbench.analysis.layer_responses import layer_responses, layer_responses_summary
    from cnnbench.checkpoint import check_compatible, module_from_checkpoint
    from cnnbench.evaluation.engine import pick_device

    device, limit = pick_device(cfg), cfg.get("images")  # images=N: the first N test images
    networks: dict[str, Any] = {}
    for path in _checkpoints(cfg):
        module, record = module_from_checkpoint(path)
        data_cfg = OmegaConf.to_container(resolve_paths(cfg).data, resolve=True)
        data_cfg["val_split"] = 0  # only the test split is read
        data_cfg["image_size"] = data_cfg.get("image_size") or int(record["image_size"])
        name = str(record["model"]["name"])
        dm = build_datamodule(cfg, data=data_cfg, augmentation={"name": "none"}, model_name=name)
        check_compatible(record, path, None, dm.num_classes)
        with torch.inference_mode():
            res = layer_responses(module.model, dm.test_dataloader(), prepare=module.prepare, device=device,
                                  limit=int(limit) if limit is not None else None)
        label, k = name, 2
        while label in networks:
            label, k = f"{name} ({k})", k + 1
        networks[label] = {"model": name, "checkpoint": path, "seed": run_seed(Path(path).parent.parent), **res}
        print(f"cnnbench analyze: {label}: {res['n_layers']} 3×3 layers on {res['n_images']} test images, "
              f"std first/last {res['std_layer_order'][0]:.3f}/{res['std_layer_order'][-1]:.3f}, "
              f"mean {sum(res['std_layer_order']) / res['n_layers']:.3f}", flush=True)
    return layer_responses_summary(networks, str(cfg.data.name), run_dir, _rule(cfg))


def _degradation(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.degradation import degradation_analysis

    return degradation_analysis(_run_dirs(cfg, "degradation"), run_dir, _rule(cfg), str(cfg.runs),
                                end_fraction=float(cfg.get("end_fraction", 0.25)), smooth=int(cfg.get("smooth", 5)))


def _curves(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.curves import curves_analysis

    return curves_analysis(_run_dirs(cfg, "curves"), run_dir, _rule(cfg), str(cfg.runs),
                           name=str(cfg.get("name") or "curves"), title=cfg.get("title"),
                           smooth=int(cfg.get("smooth", 5)))


def _scaling(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.curves import scaling_analysis

    return scaling_analysis(_run_dirs(cfg, "scaling"), run_dir, str(cfg.runs), name=str(cfg.get("name") or "scaling"),
                            title=cfg.get("title"))


def _zoo(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    from cnnbench.analysis.zoo import zoo_analysis

    copy_to, doc = cfg.get("copy_to"), cfg.get("doc")
    return zoo_analysis(_run_dirs(cfg, "zoo"), run_dir, [str(original_cwd()), str(Path(__file__).resolve().parents[2])], str(cfg.runs),
                        copy_to=Path(absolute(str(copy_to))) if copy_to else None,
                        doc=Path(absolute(str(doc))) if doc else None)


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
