"""`cnnbench predict ckpt_path=… image=…`: the top-k classes of an image, with the class names stored
in the checkpoint; `image=<folder>` classifies every image in it and writes a CSV. `crops=` and the
`eval.*` keys choose the test-time views as in `cnnbench eval`; a list of checkpoints is an ensemble.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cnnbench.errors import UserError
from cnnbench.evaluation.engine import FileReader, load_ensemble, plan_members, scoring
from cnnbench.evaluation.plan import make_plan
from cnnbench.run import checkpoint_paths
from cnnbench.runtime import absolute, resolve_run_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _images(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {target}")
        return files
    raise UserError(f"image not found: {target} (give an image file or a folder of images)")


def _plan(cfg: DictConfig, crops: int, rec: dict[str, Any]):
    # stored images of fixed-size datasets were resized, not cropped (crop_pct 1): a plain resize
    native = -1 if rec.get("crop_pct", 1.0) >= 1.0 else None
    gray = bool(rec["normalization"].get("mean")) and len(rec["normalization"]["mean"]) == 1
    return make_plan(cfg.eval, crops, rec, int(rec["image_size"]), native, gray=gray)


def predict(cfg: DictConfig, run_dir=None) -> list[dict[str, Any]]:
    if cfg.get("image") is None:  # absent, null or missing (???)
        raise UserError("image is required: image=path/to.jpg or image=path/to/folder")
    target = Path(absolute(str(cfg.image)))
    files = _images(target)
    crops = cfg.get("crops", 1)  # checked against CROP_CHOICES by make_plan
    members = load_ensemble(checkpoint_paths(cfg.ckpt_path), str(cfg.eval.get("weights", "averaged")))
    plans = plan_members(members, lambda m: _plan(cfg, crops, m.record))
    scorer, loader = scoring(cfg, members, plans, FileReader([str(f) for f in files]), len(files),
                             batch_size=int(cfg.get("batch_size", 64)), num_workers=int(cfg.get("num_workers", 0)),
                             pin_memory=False)
    classes = members[0].record["classes"]
    k = min(int(cfg.topk), len(classes))
    if k < 1:
        raise UserError(f"topk={cfg.topk}; it must be at least 1")
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    for probs, _, index, ok in scorer.run(loader, progress=len(files) > 1, desc="predict"):
        top = torch.topk(probs, k, dim=1)
        for j, i in enumerate(index):
            if not ok[j]:
                bad.append(str(files[i]))
                continue
            rows.append({"image": str(files[i]),
                         "top": [{"class": classes[c], "index": int(c), "prob": float(p)}
                                 for p, c in zip(top.values[j].tolist(), top.indices[j].tolist(), strict=True)]})
    name = "+".join(m.name for m in members)
    if target.is_file():
        if bad:
            raise UserError(f"cannot read image {target}")
        print(f"{target.name} — {name} ({members[0].record.get('data', '')}, crops={crops}):")
        for rank, row in enumerate(rows[0]["top"], 1):
            print(f"  {rank}. {row['class']:<20} {row['prob']:.4f}")
        return rows[0]["top"]
    out = Path(absolute(str(cfg.output))) if cfg.get("output") else resolve_run_dir(run_dir) / "predictions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + [h for r in range(1, k + 1) for h in (f"class{r}", f"prob{r}")])
        for row in rows:
            writer.writerow([row["image"]] + [v for t in row["top"] for v in (t["class"], f"{t['prob']:.6f}")])
    tmp.replace(out)
    for row in rows[:20]:
        print(f"{Path(row['image']).name}: {row['top'][0]['class']} ({row['top'][0]['prob']:.4f})")
    if len(rows) > 20:
        print(f"… {len(rows) - 20} more")
    if bad:
        print(f"cnnbench predict: skipped {len(bad)} unreadable file(s): {', '.join(bad[:5])}"
              + (" …" if len(bad) > 5 else ""), flush=True)
    print(f"cnnbench predict: {len(rows)} images, {name}, crops={crops} → {out}", flush=True)
    return rows

