"""Checkpoint files: atomic writes, safe loading (`torch.load(weights_only=True)`), which one
`resume=auto` picks, and rebuilding a module from one."""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cnnbench.errors import UserError
from cnnbench.runtime import absolute
from cnnbench.training.module import ClassificationModule

log = logging.getLogger("cnnbench")


class CheckpointError(UserError, ValueError):
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
            f"(use model={saved}, or fine-tune it with init_from=)"
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


# -- atomic writes -----------------------------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint writer, made atomic: temporary file in the same directory,
    flush + fsync, `os.replace` onto the final name, fsync of the directory. A crash or a failed
    write at any point leaves the previous file under that name untouched."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)


def remove_unfinished_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that never finished (`.<name>.ckpt.<random>.tmp` in
    checkpoints/: a job killed while `AtomicCheckpointIO` wrote, e.g. by SIGKILL, cannot remove its own) and
    return them. Only for the job that holds the run dir's lock, before its first write: nothing else can be
    writing them then. The finished checkpoints are never touched."""
    removed = []
    for tmp in sorted((Path(run_dir) / "checkpoints").glob(".*.ckpt.*.tmp")):
        if tmp.is_file():
            size = tmp.stat().st_size
            tmp.unlink()
            removed.append(tmp)
            log.info("removed %s (%.0f MB), the temporary file of a checkpoint write that never finished",
                     tmp, size / 1e6)
    return removed


# -- which checkpoint `resume=auto` picks ------------------------------------------------------------
def candidate_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints a run dir holds, newest first: checkpoints/*.ckpt and Lightning's SLURM
    `hpc_ckpt_*.ckpt`; on equal times last.ckpt wins. Temporary files are never listed."""
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.is_file() and not p.name.startswith(".")]
    found += [p for p in run_dir.glob("hpc_ckpt_*.ckpt") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")), reverse=True)


def newest_loadable_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint of the run dir that loads with weights_only=True (a damaged one is
    reported and skipped); None when there is none."""
    for path in candidate_checkpoints(run_dir):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            log.warning("resume=auto: skipping unreadable checkpoint %s (%s)", path, err)
            continue
        if "loops" in ckpt and "state_dict" in ckpt:
            return str(path)
        log.warning("resume=auto: skipping %s (no training state inside)", path)
    return None


def resume_checkpoint(ckpt_path: str | None, resume: str | None, run_dir: Path) -> str | None:
    """The checkpoint a run continues from: `ckpt_path=` as given, or with `resume=auto` the newest loadable
    checkpoint of the run dir (also SLURM's hpc_ckpt_*.ckpt); None starts from scratch."""
    if ckpt_path:
        return absolute(str(ckpt_path))
    if resume == "auto":
        return newest_loadable_checkpoint(run_dir)
    return None
