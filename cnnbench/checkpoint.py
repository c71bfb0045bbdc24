"""Loading checkpoints safely: everything goes through `torch.load(weights_only=True)`."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from cnnbench.training.module import ClassificationModule


class CheckpointError(ValueError):
    pass


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; a file needing arbitrary unpickling is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"refusing {path}: it needs arbitrary unpickling, which weights_only=True forbids ({first}). "
            "cnnbench only loads checkpoints of tensors and plain containers; re-save it from trusted code."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None


def record_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    record = ckpt.get("cnnbench")
    if not isinstance(record, dict):
        raise CheckpointError(f"{path} is not a cnnbench checkpoint (no 'cnnbench' record inside)")
    return record


def check_compatible(record: dict[str, Any], path: str | Path, model_name: str | None, num_classes: int | None) -> None:
    """A checkpoint of another model or class count is an error, named in one line."""
    saved = record["model"]["name"]
    if model_name is not None and saved != model_name:
        raise CheckpointError(
            f"checkpoint {path} holds model {saved!r}, but model={model_name!r} was requested "
            f"(use model={saved}, or fine-tune with init_from= when that lands)"
        )
    if num_classes is not None and record["num_classes"] != num_classes:
        raise CheckpointError(
            f"checkpoint {path} has {record['num_classes']} classes, the data has {num_classes} "
            "(a new head needs an explicit fine-tuning run)"
        )


def module_from_checkpoint(path: str | Path) -> tuple[ClassificationModule, dict[str, Any]]:
    """Rebuild the LightningModule of a checkpoint (eval mode) and return it with its record."""
    ckpt = load_checkpoint(path)
    record = record_of(ckpt, path)
    return module_from_loaded(ckpt, record, path), record


def module_from_loaded(ckpt: dict[str, Any], record: dict[str, Any], path: str | Path,
                       state_key: str = "state_dict") -> ClassificationModule:
    """The eval-mode module of an already-loaded checkpoint, with the weights stored under `state_key`
    (`state_dict`, or `current_model_state` for the raw weights of a weight-averaged run)."""
    model_cfg = dict(record["model"])
    model_cfg["compile"] = False
    module = ClassificationModule(
        model=model_cfg,
        num_classes=record["num_classes"],
        in_chans=record["in_chans"],
        normalization=record["normalization"],
        classes=record["classes"],
        image_size=record["image_size"],
        crop_pct=record.get("crop_pct", 1.0),
        data_name=record.get("data", ""),
    )
    state = {k.replace("model._orig_mod.", "model."): v for k, v in ckpt[state_key].items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"cannot load the weights of {path}: {str(err).splitlines()[0]}") from None
    module.eval()
    return module
