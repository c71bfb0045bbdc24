"""The Lightning callbacks every training run installs (docs/reliability.md lists each fault they handle):

- `RNGState`: every global RNG in each checkpoint, restored when a run resumes;
- `Preemption`: SIGTERM / SIGUSR1 / SIGUSR2 → finish the batch, write checkpoints/last.ckpt, stop;
- `NonFiniteLoss`: a NaN/Inf loss stops the run (`NonFiniteLossError`) or skips the update.

The recipe callbacks (weight averaging, conditional warm-up) live in `training/recipe_callbacks.py`.
"""
from __future__ import annotations

import contextlib
import logging
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from cnnbench.choices import NONFINITE_MODES
from cnnbench.errors import RunStopped

log = logging.getLogger("cnnbench")


class NonFiniteLossError(RunStopped):
    """A NaN/Inf training loss under `loss.on_nonfinite=stop` (exit code 3)."""


# -- RNG state ---------------------------------------------------------------------------------------
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



# -- preemption: SIGTERM / SIGUSR1 / SIGUSR2 --------------------------------------------------------------
class Preemption(Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2: finish the current batch, write checkpoints/last.ckpt, stop training.

    The handler only notes the signal; at the end of the running batch the checkpoint is written
    and then the handler that was installed before is called (Lightning's SIGTERM notifier, which
    stops the loops and the other ranks; under SLURM with auto-requeue, Lightning's SIGUSR1
    save-and-requeue handler; under hydra/launcher=submitit_slurm, which asks SLURM for SIGUSR2
    `signal_delay_s` before the time limit, submitit's checkpoint-and-requeue handler). Calling them only after the save keeps the checkpoint at a batch
    boundary. `train` then skips testing and records the stop in results.json."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")

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
            self._own_last(trainer, path)
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

    @staticmethod
    def _own_last(trainer, path: Path) -> None:
        """Record `path` as the last checkpoint of every ModelCheckpoint that writes last.ckpt into the same
        folder, before saving (their state goes into the file). A resumed run's ModelCheckpoint then keeps
        writing last.ckpt; otherwise it finds a last.ckpt it did not write and puts the newer state into
        last-v1.ckpt, leaving last.ckpt at the preemption step."""
        target = Path(path).resolve()
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if getattr(cb, "save_last", False) and dirpath and Path(dirpath).resolve() == target.parent:
                cb.last_model_path = str(target)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}



# -- non-finite loss ---------------------------------------------------------------------------------
class NonFiniteLoss(Callback):
    """`stop`: a NaN/Inf loss raises `NonFiniteLossError` naming the step before backward, so no
    update and no checkpoint of the bad state happens. `skip`: the update is dropped (gradients set
    to None, which every torch optimizer skips — no momentum or weight-decay step either) and the
    batch-norm running statistics of that forward pass are rolled back."""

    MODES = NONFINITE_MODES  # loss.on_nonfinite

    def __init__(self, mode: str = "stop") -> None:
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


class GradNorm(Callback):
    """`log_grad_norm=true`: the total 2-norm of the gradients as `train/grad_norm`, every `log_every_n_steps`,
    before gradient clipping (Lightning calls this hook before it clips), so a run with
    `trainer.gradient_clip_val` shows how much clipping shrinks each step."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        from lightning.pytorch.utilities import grad_norm

        if (trainer.global_step + 1) % max(1, int(trainer.log_every_n_steps)) and trainer.global_step:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            pl_module.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)


__all__ = ["RNGState", "Preemption", "NonFiniteLoss", "NonFiniteLossError", "GradNorm", "capture_rng", "restore_rng"]
