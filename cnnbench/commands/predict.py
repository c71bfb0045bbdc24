"""`cnnbench predict ckpt_path=… image=…`: the top-k classes of one image, with class names."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cnnbench.checkpoint import module_from_checkpoint
from cnnbench.data.datamodule import load_image_file
from cnnbench.data.transforms import eval_transform
from cnnbench.runtime import UserError, absolute


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    image_path = absolute(str(cfg.image))
    if not Path(image_path).is_file():
        raise UserError(f"image not found: {image_path}")
    module, record = module_from_checkpoint(absolute(str(cfg.ckpt_path)))
    try:
        image = load_image_file(image_path)
    except Exception as err:  # noqa: BLE001 - PIL raises many types
        raise UserError(f"cannot read image {image_path}: {err}") from None
    size = record["image_size"]
    # Stored images of fixed-size datasets were resized, not cropped (crop_pct 1).
    view = eval_transform(size, None if record.get("crop_pct", 1.0) < 1.0 else -1, record.get("crop_pct", 1.0))
    array = view(image=image)["image"]
    if record["normalization"].get("mean") and len(record["normalization"]["mean"]) == 1:
        array = array.mean(axis=2, keepdims=True).round().astype("uint8")  # the model was trained on gray
    x = torch.from_numpy(array.transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        probs = torch.softmax(module(x), dim=1)[0]
    k = min(int(cfg.topk), probs.numel())
    top = torch.topk(probs, k)
    rows = [{"class": record["classes"][i], "index": int(i), "prob": float(p)}
            for p, i in zip(top.values.tolist(), top.indices.tolist())]
    print(f"{Path(image_path).name} — {record['model']['name']} ({record.get('data', '')}):")
    for rank, row in enumerate(rows, 1):
        print(f"  {rank}. {row['class']:<20} {row['prob']:.4f}")
    return rows
