"""Test-only fault injection: `CNNBENCH_FAULT=<kind>@<step>[:rank<r>]` makes a training subprocess kill
itself, raise on one DDP rank, produce a NaN loss or wait for a signal from outside at an exact step (the
fault tests in tests/reliability/).

Without the environment variable nothing here is installed (`FaultInjection.from_env()` returns None).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from cnnbench.errors import UserError

FAULT_ENV = "CNNBENCH_FAULT"
PAUSE_LIMIT_S = 300.0  # `pause` gives up (and raises) when no signal came in this long


class FaultInjection(Callback):
    """Reads `CNNBENCH_FAULT=<kind>@<step>[:rank<r>]` (kinds: sigkill, sigterm, sigusr1, sigusr2, raise, nan,
    pause).

    For the fault tests only: it lets a subprocess run kill itself mid-epoch, raise on one DDP rank
    or produce a NaN loss at an exact step. `pause` holds the run after `<step>` optimizer steps, with
    `paused-step<step>.pid` (this process's id) in the run dir, until a signal that `Preemption` traps
    arrives from outside (a test's `kill -USR2 <pid>`): a mid-epoch preemption at a known step whatever
    the sender is. Without the variable the callback is not installed."""

    KINDS = ("sigkill", "sigterm", "sigusr1", "sigusr2", "raise", "nan", "pause")

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
        if self.kind in ("sigkill", "sigterm", "sigusr1", "sigusr2") and self._due(trainer):
            self.fired = True
            os.kill(os.getpid(), getattr(signal, self.kind.upper()))
        elif self.kind == "pause" and self._due(trainer):
            self.fired = True
            self._pause(trainer)

    def _pause(self, trainer) -> None:
        """Wait for `Preemption` to note a signal (its handler runs in this main thread, between sleeps)."""
        from cnnbench.training.callbacks import Preemption

        preempt = next(cb for cb in trainer.callbacks if isinstance(cb, Preemption))
        pid_file = Path(trainer.default_root_dir) / f"paused-step{self.step}.pid"
        tmp = pid_file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, pid_file)  # the reader never sees an empty file
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while preempt.received is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{FAULT_ENV}=pause@{self.step}: no signal within {PAUSE_LIMIT_S:.0f} s")
            time.sleep(0.02)


__all__ = ["FAULT_ENV", "FaultInjection"]
