"""Fault handling for training runs: atomic checkpoint writes, resume-point selection, RNG capture,
preemption signals, non-finite losses, run-dir checks, failure records and test-only fault injection.

Everything here plugs into Lightning through its own extension points (a `CheckpointIO` plugin and
callbacks); docs/reliability.md lists each fault, the test that injects it and the outcome.
"""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from cnnbench.runtime import UserError, write_json

log = logging.getLogger("cnnbench")

FAULT_ENV = "CNNBENCH_FAULT"


class RunStopped(Exception):
    """A run stopped on purpose (non-finite loss …): one line on stderr and `exit_code`."""

    exit_code = 3


class NonFiniteLossError(RunStopped):
    pass


# -- 1. atomic checkpoint writes ---------------------------------------------------------------------
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
            with _suppress():
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return True


# -- 2. which checkpoint `resume=auto` picks ---------------------------------------------------------
def candidate_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints a run dir holds, newest first: checkpoints/*.ckpt and Lightning's SLURM
    `hpc_ckpt_*.ckpt`; on equal times last.ckpt wins. Temporary files are never listed."""
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.is_file() and not p.name.startswith(".")]
    found += [p for p in run_dir.glob("hpc_ckpt_*.ckpt") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")), reverse=True)


def newest_loadable_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint of the run dir that loads with weights_only=True (a damaged one is
    reported and skipped); None when there is none."""
    from cnnbench.checkpoint import CheckpointError, load_checkpoint

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


# -- 3. RNG state ------------------------------------------------------------------------------------
def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def capture_rng() -> dict[str, Any]:
    """Every global RNG as tensors and plain containers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _python_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(Callback):
    """Saves torch/numpy/python (and CUDA) RNG states in every checkpoint and restores them when a
    run resumes, at the start of training (after the loaders exist: they draw from their own
    generator, not the global one)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None


# -- 4. preemption: SIGTERM / SIGUSR1 ----------------------------------------------------------------
class Preemption(Callback):
    """On SIGTERM or SIGUSR1: finish the current batch, write checkpoints/last.ckpt, stop training.

    The handler only notes the signal; at the end of the running batch the checkpoint is written
    and then the handler that was installed before is called (Lightning's SIGTERM notifier, which
    stops the loops and the other ranks; under SLURM with auto-requeue, Lightning's SIGUSR1
    save-and-requeue handler). Calling them only after the save keeps the checkpoint at a batch
    boundary. `train` then skips testing and records the stop in results.json."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self, ckpt_dir: Path) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.received: str | None = None
        self.saved: str | None = None
        self.step: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received and self.saved is None:
            self.step = int(trainer.global_step)
            path = self.ckpt_dir / "last.ckpt"
            trainer.save_checkpoint(str(path))
            self.saved = str(path)
            log.warning("cnnbench: %s received — saved %s at step %d; rerun with resume=auto to continue",
                        self.received, path, self.step)
            signum = getattr(signal, self.received)
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, None)
            # stop now: letting the epoch run out would write an end-of-epoch last.ckpt over this one
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, previous in self._previous.items():
            with _suppress():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


# -- 5. non-finite loss ------------------------------------------------------------------------------
class NonFiniteLoss(Callback):
    """`stop`: a NaN/Inf loss raises `NonFiniteLossError` naming the step before backward, so no
    update and no checkpoint of the bad state happens. `skip`: the update is dropped (gradients set
    to None, which every torch optimizer skips — no momentum or weight-decay step either) and the
    batch-norm running statistics of that forward pass are rolled back."""

    def __init__(self, mode: str = "stop") -> None:
        if mode not in ("stop", "skip"):
            raise UserError(f"loss.on_nonfinite={mode!r}; valid choices: stop, skip")
        self.mode = mode
        self.skipped: list[int] = []
        self._bad = False
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._bad = False
        if self.mode == "skip":
            self._buffers = [(b, b.detach().clone()) for b in pl_module.buffers() if b.is_floating_point()]

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        step, epoch = int(trainer.global_step), int(trainer.current_epoch)
        value = float(loss.detach().float().reshape(-1)[0])
        if self.mode == "stop":
            raise NonFiniteLossError(
                f"non-finite training loss ({value}) at step {step} (epoch {epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}); "
                "the last good checkpoint is kept (loss.on_nonfinite=skip drops such steps instead)"
            )
        self._bad = True

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._bad:
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        for live, saved in self._buffers:
            live.copy_(saved)
        self.skipped.append(int(trainer.global_step))
        log.warning("cnnbench: non-finite loss at step %d — update skipped (loss.on_nonfinite=skip)",
                    int(trainer.global_step))


# -- 6. test-only fault injection --------------------------------------------------------------------
class FaultInjection(Callback):
    """Reads `CNNBENCH_FAULT=<kind>@<step>[:rank<r>]` (kinds: sigkill, sigterm, sigusr1, raise, nan).

    For the fault tests only: it lets a subprocess run kill itself mid-epoch, raise on one DDP rank
    or produce a NaN loss at an exact step. Without the variable the callback is not installed."""

    KINDS = ("sigkill", "sigterm", "sigusr1", "raise", "nan")

    def __init__(self, spec: str) -> None:
        kind, _, rest = spec.partition("@")
        step, _, rank = rest.partition(":")
        if kind not in self.KINDS or not step.isdigit() or (rank and not rank.startswith("rank")):
            raise UserError(f"{FAULT_ENV}={spec!r}; expected <kind>@<step>[:rank<r>], kinds: {', '.join(self.KINDS)}")
        self.kind, self.step = kind, int(step)
        self.rank = int(rank[4:]) if rank else None
        self.fired = False

    @classmethod
    def from_env(cls) -> FaultInjection | None:
        spec = os.environ.get(FAULT_ENV)
        return cls(spec) if spec else None

    def _due(self, trainer) -> bool:
        return (not self.fired and int(trainer.global_step) == self.step
                and (self.rank is None or trainer.global_rank == self.rank))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kind == "nan" and self._due(trainer):
            self.fired = True
            original = pl_module.training_step

            def poisoned(*args, **kwargs):
                del pl_module.training_step  # back to the class method for the next step
                out = original(*args, **kwargs)
                out["loss"] = out["loss"] * float("nan")
                return out

            pl_module.training_step = poisoned
        elif self.kind == "raise" and self._due(trainer):
            self.fired = True
            raise RuntimeError(f"injected fault on rank {trainer.global_rank} at step {self.step}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # global_step has already advanced: the fault lands after `step` completed optimizer steps
        if self.kind in ("sigkill", "sigterm", "sigusr1") and self._due(trainer):
            self.fired = True
            os.kill(os.getpid(), getattr(signal, self.kind.upper()))


# -- 7. run dir checks -------------------------------------------------------------------------------
def estimate_checkpoint_bytes(module: torch.nn.Module) -> int:
    """Weights + optimizer state (up to two moments) + averaged copy: a generous bound."""
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    n += sum(b.numel() * b.element_size() for b in module.buffers())
    return 4 * n + (1 << 20)


def check_run_dir(run_dir: Path, need_bytes: int) -> None:
    """Fail before training when the run dir cannot be written or lacks room for a checkpoint."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=run_dir)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise UserError(f"run dir {run_dir} is not writable ({err.strerror or err}); "
                        "pick another with hydra.run.dir=… or run_name=…") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise UserError(f"run dir {run_dir} has {free / 2**20:.1f} MiB free, a checkpoint needs about "
                        f"{need_bytes / 2**20:.1f} MiB; free space or pick another run dir")


# -- 8. failure records ------------------------------------------------------------------------------
def record_failure(run_dir: Path, rank: int, err: BaseException, step: int | None) -> Path:
    """`failed-rank<r>.json` in the run dir: what was raised, where, at which step."""
    path = Path(run_dir) / f"failed-rank{rank}.json"
    text = " ".join(str(err).split()) or type(err).__name__
    with _suppress():
        write_json(path, {
            "rank": rank, "pid": os.getpid(), "step": step, "error": type(err).__name__, "message": text[:2000],
            "traceback": traceback.format_exception(type(err), err, err.__traceback__)[-6:],
        })
    return path


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


__all__ = [
    "AtomicCheckpointIO", "RNGState", "Preemption", "NonFiniteLoss", "NonFiniteLossError", "RunStopped",
    "FaultInjection", "check_run_dir", "estimate_checkpoint_bytes", "newest_loadable_checkpoint",
    "candidate_checkpoints", "record_failure", "capture_rng", "restore_rng",
]
