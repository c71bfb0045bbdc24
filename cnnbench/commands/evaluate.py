"""`cnnbench eval ckpt_path=…`: accuracy of a checkpoint on a split, written to eval.json.

Single view (crops=1) here: the short side resized to image_size/crop_pct and a center crop.
Multi-crop protocols plug in through `cnnbench.evaluation`.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

from cnnbench.checkpoint import check_compatible, module_from_checkpoint
from cnnbench.data import ImageDataModule
from cnnbench.runtime import UserError, absolute, resolve_run_dir, write_json

SUPPORTED_CROPS = (1,)
ALL_CROPS = (1, 10, 12, 50, 144)


def evaluate(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    start = time.time()
    run_dir = resolve_run_dir(run_dir)
    crops = cfg.get("crops", 1)
    if crops not in ALL_CROPS:
        raise UserError(f"crops={crops!r}; valid choices: {', '.join(map(str, ALL_CROPS))}")
    if crops not in SUPPORTED_CROPS:
        raise UserError(f"crops={crops} is not implemented yet (available now: 1); see the evaluation issue")
    paths = cfg.ckpt_path
    if OmegaConf.is_list(paths):
        if len(paths) != 1:
            raise UserError("ensembles (a list of checkpoints) are not implemented yet: pass one ckpt_path")
        paths = paths[0]
    path = absolute(str(paths))
    module, record = module_from_checkpoint(path)
    with open_dict(cfg):
        if cfg.data.get("root") not in (None, "???"):
            cfg.data.root = absolute(cfg.data.root)
        if cfg.data.get("image_size") is None:
            cfg.data.image_size = record["image_size"]
    dm = ImageDataModule(OmegaConf.to_container(cfg.data, resolve=True), {"name": "none"},
                         record["model"]["name"], seed=int(cfg.seed)).load()
    check_compatible(record, path, None, dm.num_classes)
    split = cfg.get("split", "test")
    if split not in ("test", "val"):
        raise UserError(f"split={split!r}; valid choices: test, val")
    data = dm.test_split if split == "test" else dm.val_split
    if data is None:
        raise UserError("split=val but data.val_split is 0")
    with open_dict(dm.cfg):
        dm.cfg.batch_size = int(cfg.eval.batch_size)
    loader = dm._loader(data, train=False)
    k = min(int(cfg.get("topk", 5)), dm.num_classes)
    acc1 = MulticlassAccuracy(dm.num_classes, top_k=1, average="micro")
    acck = MulticlassAccuracy(dm.num_classes, top_k=k, average="micro")
    with torch.inference_mode():
        for x, y in tqdm(loader, desc=f"eval {record['model']['name']}", leave=False):
            logits = module(x)
            acc1.update(logits, y)
            acck.update(logits, y)
    result = {
        "acc1": float(acc1.compute()),
        "acc5" if k == 5 else f"acc{k}": float(acck.compute()),
        "n_images": len(data),
        "crops": crops,
        "mode": cfg.eval.get("mode", "crops"),
        "models": [path],
        "model": record["model"]["name"],
        "data": str(cfg.data.name),
        "split": split,
        "image_size": dm.image_size,
        "wall_s": round(time.time() - start, 2),
    }
    if module.info.paper_top1 is not None and record.get("data") == "imagenet":
        result["paper"] = {"acc1": module.info.paper_top1, "acc5": module.info.paper_top5}
    write_json(run_dir / "eval.json", result)
    print(f"cnnbench eval: {result['model']} on {result['data']}/{split} ({result['n_images']} images) — "
          f"acc1 {result['acc1']:.4f} → {run_dir / 'eval.json'}", flush=True)
    return result
