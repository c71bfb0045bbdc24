"""`cnnbench eval ckpt_path=… [crops=N] [eval.mode=…] [eval.views=train]`: accuracy of a checkpoint (or an
ensemble of checkpoints) on a split, with the papers' test-time protocols; writes eval.json and eval.md.

Protocols and their sources: `cnnbench.evaluation.crops`, `cnnbench.evaluation.plan` and docs/evaluation.md.
"""
from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig, open_dict
from torchmetrics.classification import MulticlassAccuracy

from cnnbench.checkpoint import check_compatible
from cnnbench.errors import UserError
from cnnbench.evaluation.cost import cost_line, seconds_per_image
from cnnbench.evaluation.engine import SplitReader, load_ensemble, plan_members, scoring
from cnnbench.evaluation.plan import make_plan, protocol_note
from cnnbench.evaluation.results import eval_record, markdown_row, summary_line
from cnnbench.models import model_info
from cnnbench.run import (
    build_datamodule,
    checkpoint_paths,
    data_for_checkpoint,
    latest_run_checkpoint,
    resolve_paths,
)
from cnnbench.runtime import resolve_run_dir, write_json

__all__ = ["evaluate"]


def evaluate(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    """Load → the data the checkpoint was trained on → view plans → cost line → score → eval.json, one line."""
    start = time.time()
    run_dir = resolve_run_dir(run_dir)
    crops, split, ev = cfg.get("crops", 1), str(cfg.get("split", "test")), cfg.eval  # values: config_schema
    members = load_ensemble(_checkpoints(cfg), str(ev.get("weights", "averaged")))
    dm, data, forced_size = _data(cfg, members, split)
    plans = _plans(members, ev, crops, forced_size, dm.native_size)
    note = protocol_note(ev, crops, members[0].record)
    if note:
        print(f"cnnbench eval: note: {note}", flush=True)
    scorer, loader = scoring(cfg, members, plans, SplitReader(data), len(data), batch_size=int(ev.get("batch_size", 256)),
                             num_workers=int(cfg.data.num_workers),
                             precision=str(cfg.get("trainer", {}).get("precision", "32-true")))
    k, name = min(int(cfg.get("topk", 5)), dm.num_classes), "+".join(m.name for m in members)
    views = str(ev.get("views", "protocol"))
    per_image = sum(plans[m.plan].views_per_image() for m in members)
    print(cost_line(views_per_image=per_image, n_images=len(data), crops=crops, split=split, model=name, views=views,
                    per_image_s=seconds_per_image(scorer, loader.dataset, per_image)), flush=True)
    t_scoring = time.time()
    acc1, acck = _accuracy(scorer, loader, dm.num_classes, k, bool(ev.get("progress", True)), f"eval {name}")
    result = eval_record(acc1=acc1, acck=acck, k=k, members=members, plans=plans, crops=crops, views=views,
                         scorer=scorer, data_name=str(cfg.data.name), split=split, n_images=len(data),
                         image_size=dm.image_size, num_classes=dm.num_classes, scoring_s=time.time() - t_scoring,
                         wall_s=time.time() - start)
    header, row = markdown_row(result)
    result["markdown"] = row
    write_json(run_dir / "eval.json", result)
    (run_dir / "eval.md").write_text(header + "\n" + row + "\n")
    print(summary_line(result, k, run_dir / "eval.json") + "\n" + header + "\n" + row, flush=True)
    return result


def _checkpoints(cfg: DictConfig) -> list[str]:
    """ckpt_path, or for bare `cnnbench eval` the newest finished training run's (the CLI does this first)."""
    if not cfg.get("ckpt_path"):
        ckpt = latest_run_checkpoint([str(r) for r in cfg.eval.get("latest_from") or ["outputs", "multirun"]])
        with open_dict(cfg):
            cfg.ckpt_path = ckpt
    return checkpoint_paths(cfg.get("ckpt_path"))


def _data(cfg: DictConfig, members: list, split: str):
    """The data module of the checkpoint's own data (or `data=`), unaugmented, and the split to score;
    `data.image_size` as forced on the command line (None: each checkpoint's own)."""
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
    return dm, data, forced_size


def _plans(members: list, ev: DictConfig, crops: int, forced_size: int | None, native_size: int | None) -> list:
    """Each member's view plan (`m.plan` indexes the returned list; members with equal plans share one)."""
    for m in members:
        size = int(forced_size) if forced_size is not None else int(m.record["image_size"])
        if size < model_info(m.name).min_input_size:
            raise UserError(f"data.image_size={size} is below the minimum input size "
                            f"{model_info(m.name).min_input_size} of model {m.name!r}")
    return plan_members(members, lambda m: make_plan(ev, crops, m.record, int(forced_size or m.record["image_size"]),
                                                     native_size))


def _accuracy(scorer, loader, num_classes: int, k: int, progress: bool, desc: str) -> tuple[float, float]:
    """Top-1 and top-k over the loader's images (torchmetrics), with progress."""
    acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
    acck = MulticlassAccuracy(num_classes, top_k=k, average="micro")
    for probs, labels, _, _ in scorer.run(loader, progress=progress, desc=desc):
        acc1.update(probs, labels)
        acck.update(probs, labels)
    return float(acc1.compute()), float(acck.compute())
