"""`cnnbench eval ckpt_path=… [crops=N] [eval.mode=…]`: accuracy of a checkpoint (or an ensemble of
checkpoints) on a split, with the papers' test-time protocols; writes eval.json and eval.md.

Protocols and their sources: `cnnbench.evaluation.crops` and docs/evaluation.md.
"""
from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig, open_dict
from torchmetrics.classification import MulticlassAccuracy

from cnnbench.checkpoint import check_compatible
from cnnbench.errors import UserError
from cnnbench.evaluation.cost import cost_line, seconds_per_image
from cnnbench.evaluation.engine import SplitReader, load_ensemble, make_plan, plan_members, protocol_note, scoring
from cnnbench.evaluation.paper import paper_reference
from cnnbench.models import model_info
from cnnbench.run import (
    build_datamodule,
    checkpoint_paths,
    data_for_checkpoint,
    latest_run_checkpoint,
    resolve_paths,
)
from cnnbench.runtime import resolve_run_dir, write_json


def markdown_row(result: dict[str, Any]) -> tuple[str, str]:
    """A header and a row in the papers' style: errors in %, ours beside the paper's."""
    paper = result.get("paper") or {}

    def pct(v):
        return f"{100 * v:.2f}" if v is not None else "—"

    header = ("| model | data | crops | mode | models | images | top-1 err % | top-5 err % | paper top-1 err % "
              "| paper top-5 err % |\n|---|---|---|---|---|---|---|---|---|---|")
    crops = result["crops"] if result.get("views", "protocol") == "protocol" else f"train ({result['views_per_image']})"
    row = (f"| {result['model']} | {result['data']}/{result['split']} | {crops} | {result['mode']} | "
           f"{len(result['models'])} | {result['n_images']} | {pct(result['top1_err'])} | "
           f"{pct(result.get('top5_err'))} | {pct(paper.get('top1_err'))} | {pct(paper.get('top5_err'))} |")
    return header, row


def _plans(members: list, ev: DictConfig, crops: int, forced_size: int | None, native_size: int | None) -> list:
    """Each member's view plan (`m.plan` indexes the returned list; members with equal plans share one)."""
    for m in members:
        size = int(forced_size) if forced_size is not None else int(m.record["image_size"])
        if size < model_info(m.name).min_input_size:
            raise UserError(f"data.image_size={size} is below the minimum input size "
                            f"{model_info(m.name).min_input_size} of model {m.name!r}")
    return plan_members(members, lambda m: make_plan(ev, crops, m.record, int(forced_size or m.record["image_size"]),
                                                     native_size))


def _checkpoints(cfg: DictConfig) -> list[str]:
    """ckpt_path, or for bare `cnnbench eval` the newest finished training run's (the CLI does this first)."""
    if not cfg.get("ckpt_path"):
        ckpt = latest_run_checkpoint([str(r) for r in cfg.eval.get("latest_from") or ["outputs", "multirun"]])
        with open_dict(cfg):
            cfg.ckpt_path = ckpt
    return checkpoint_paths(cfg.get("ckpt_path"))


def evaluate(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    start = time.time()
    run_dir = resolve_run_dir(run_dir)
    crops = cfg.get("crops", 1)  # checked against CROP_CHOICES by make_plan
    paths = _checkpoints(cfg)
    split = cfg.get("split", "test")
    if split not in ("test", "val"):
        raise UserError(f"split={split!r}; valid choices: test, val")
    ev = cfg.eval
    members = load_ensemble(paths, str(ev.get("weights", "averaged")))
    first = members[0]
    data_cfg, note = data_for_checkpoint(cfg, first.record)
    with open_dict(cfg):
        cfg.data = data_cfg
    if note:
        print(f"cnnbench eval: {note}", flush=True)
    resolve_paths(cfg)
    forced_size = cfg.data.get("image_size")
    if forced_size is None:
        with open_dict(cfg):
            cfg.data.image_size = first.record["image_size"]
    dm = build_datamodule(cfg, augmentation={"name": "none"}, model_name=first.name)
    for m in members:
        check_compatible(m.record, m.path, None, dm.num_classes)
    data = dm.test_split if split == "test" else dm.val_split
    if data is None:
        raise UserError("split=val but data.val_split is 0")
    plans = _plans(members, ev, crops, forced_size, dm.native_size)

    note = protocol_note(ev, crops, first.record)
    if note:
        print(f"cnnbench eval: note: {note}", flush=True)
    scorer, loader = scoring(cfg, members, plans, SplitReader(data), len(data), batch_size=int(ev.get("batch_size", 256)),
                             num_workers=int(cfg.data.num_workers),
                             precision=str(cfg.get("trainer", {}).get("precision", "32-true")))
    device = scorer.device
    k = min(int(cfg.get("topk", 5)), dm.num_classes)
    name = "+".join(m.name for m in members)
    views = sum(plans[m.plan].views_per_image() for m in members)
    print(cost_line(views_per_image=views, n_images=len(data), crops=crops, split=split, model=name,
                    views=str(ev.get("views", "protocol")),
                    per_image_s=seconds_per_image(scorer, loader.dataset, loader.batch_size)), flush=True)
    t_scoring = time.time()
    a1, ak = _accuracy(scorer, loader, dm.num_classes, k, bool(ev.get("progress", True)), f"eval {name}")
    scoring_s = time.time() - t_scoring
    result: dict[str, Any] = {
        "acc1": a1,
        f"acc{k}": ak,
        "top1_err": round(1 - a1, 6),
        f"top{k}_err": round(1 - ak, 6),
        "n_images": len(data),
        "crops": crops,
        "mode": plans[0].mode,
        "views": str(ev.get("views", "protocol")),
        "scales": {m.name: list(plans[m.plan].pixel_scales()) for m in members}
        if plans[0].parts() != ["single"] else None,
        "aggregate": scorer.aggregate,
        "views_per_image": views,  # forward passes per image, over all models ("cost" in GoogLeNet Table 3)
        "models": [m.path for m in members],
        "model": name,
        "weights": [m.weights for m in members],
        "data": str(cfg.data.name),
        "split": split,
        "image_size": dm.image_size,
        "device": str(device),
        "images_per_s": round(len(data) / max(scoring_s, 1e-9), 2),
        "wall_s": round(time.time() - start, 2),
    }
    if "acc5" not in result:
        result["acc5"] = None  # fewer than 5 classes
    paper = paper_reference(first.name, str(cfg.data.name), dm.num_classes, crops, plans[0].mode,
                            list(plans[0].reference_scales()) if plans[0].parts() != ["single"] else None,
                            len(members))
    if paper is not None:
        result["paper"] = paper
    _write_and_print(result, run_dir, k)
    return result


def _protocol(result: dict[str, Any]) -> str:
    if result.get("views") == "train":
        return "views=train"
    return f"crops={result['crops']}, mode={result['mode']}"


def _accuracy(scorer, loader, num_classes: int, k: int, progress: bool, desc: str) -> tuple[float, float]:
    """Top-1 and top-k over the loader's images (torchmetrics), with progress."""
    acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
    acck = MulticlassAccuracy(num_classes, top_k=k, average="micro")
    for probs, labels, _, _ in scorer.run(loader, progress=progress, desc=desc):
        acc1.update(probs, labels)
        acck.update(probs, labels)
    return float(acc1.compute()), float(acck.compute())


def _write_and_print(result: dict[str, Any], run_dir, k: int) -> None:
    """eval.json, eval.md (the papers' table row) and the one-line summary."""
    header, row = markdown_row(result)
    result["markdown"] = row
    write_json(run_dir / "eval.json", result)
    (run_dir / "eval.md").write_text(header + "\n" + row + "\n")
    print(f"cnnbench eval: {result['model']} on {result['data']}/{result['split']} ({result['n_images']} images, "
          f"{_protocol(result)}, {result['views_per_image']} views/image) — "
          f"acc1 {result['acc1']:.4f}, acc{k} {result[f'acc{k}']:.4f} → {run_dir / 'eval.json'}", flush=True)
    print(header + "\n" + row, flush=True)

