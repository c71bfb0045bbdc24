"""What a run is doing, in its logs (docs/observability.md):

- the learning rate and momentum per logging step: Lightning's `LearningRateMonitor` (`lr_monitor`);
- the speed of the training step and of the loader, the share of time spent waiting for data, each epoch's wall
  time and the peak memory: `RunSpeed`, whose means over the run go to results.json;
- progress as a periodic line when stderr is not a terminal (a pipe, a log file, a batch job): `LineProgress`,
  instead of a bar that writes thousands of carriage-return updates into the file.
"""
from __future__ import annotations

import math
import resource
import sys
import time
from collections import deque
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.callbacks.progress import ProgressBar

from cnnbench.progress import duration, is_terminal

SPEED_KEYS = ("speed/train_images_per_s", "speed/step_images_per_s", "speed/loader_images_per_s",
              "speed/data_wait_share")


def lr_monitor() -> LearningRateMonitor:
    """`lr` (`lr/<group>` where the optimizer has named parameter groups) and `lr-momentum` per logging step."""
    return LearningRateMonitor(logging_interval="step", log_momentum=True)


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else 1


def peak_memory_mb(device: torch.device) -> float:
    """The CUDA allocator's peak on a GPU; the process's peak resident set (Linux: KiB) on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RunSpeed(Callback):
    """Times each training step (`on_train_batch_start` → `on_train_batch_end`: forward, backward, update) and
    the wait before it (the previous step's end → this step's start: the loader's `next`, the host-to-device copy
    and any checkpoint written at the previous step). Logged every step as means over the last
    `log_every_n_steps` steps, so each logged row covers the steps since the one before:

    - `speed/train_images_per_s`: images over step + wait time (the loop's rate);
    - `speed/step_images_per_s`: images over step time (the rate without the loader);
    - `speed/loader_images_per_s`: images over wait time (a lower bound of what the loader can deliver; absent
      when the loader never made the step wait);
    - `speed/data_wait_share`: wait over step + wait;
    - per epoch: `time/epoch_s` (its wall time, validation included), `time/val_s`, `memory/peak_mb`. An epoch
      that a resumed run entered mid-way (Lightning does not call `on_train_epoch_start` for it) has no
      `time/epoch_s`: this process saw only its remainder.
    """

    def __init__(self) -> None:
        self.images = 0
        self.step_s = 0.0
        self.wait_s = 0.0
        self.epoch_s: list[float] = []
        self.peak_mb = 0.0
        self._window: deque[tuple[int, float, float]] = deque()
        self._last_end: float | None = None
        self._start = 0.0
        self._epoch_t0: float | None = None
        self._val_t0: float | None = None
        self._val_s = 0.0

    def _now(self, trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_t0 = self._last_end = self._now(trainer)
        self._val_s = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._now(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = self._now(trainer)
        images, step = _batch_size(batch), end - self._start
        wait = max(0.0, self._start - self._last_end) if self._last_end is not None else 0.0
        self._last_end = end
        self.images += images
        self.step_s += step
        self.wait_s += wait
        self._window.append((images, step, wait))
        while len(self._window) > max(1, int(trainer.log_every_n_steps)):
            self._window.popleft()
        pl_module.log_dict(self._rates(*map(sum, zip(*self._window, strict=True))), on_step=True, on_epoch=False)

    @staticmethod
    def _rates(images: float, step: float, wait: float) -> dict[str, float]:
        rates = {"speed/train_images_per_s": images / max(step + wait, 1e-9),
                 "speed/step_images_per_s": images / max(step, 1e-9),
                 "speed/data_wait_share": wait / max(step + wait, 1e-9)}
        if wait > 0:
            rates["speed/loader_images_per_s"] = images / wait
        return rates

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t0 is not None:
            self._val_s += time.perf_counter() - self._val_t0
            self._val_t0 = None
        self._last_end = time.perf_counter()  # a validation inside the epoch is not the loader's wait

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.peak_mb = max(self.peak_mb, peak_memory_mb(trainer.strategy.root_device))
        logged = {"time/val_s": self._val_s, "memory/peak_mb": self.peak_mb}
        if self._epoch_t0 is not None:  # None: resumed mid-epoch, the epoch's start was another process's
            logged["time/epoch_s"] = time.perf_counter() - self._epoch_t0
            self.epoch_s.append(logged["time/epoch_s"])
        self._epoch_t0 = None
        pl_module.log_dict(logged, on_step=False, on_epoch=True)

    def summary(self) -> dict[str, float | None] | None:
        """Means over this process's part of the run (results.json `speed`); None before the first step."""
        if not self.images:
            return None
        rates = self._rates(self.images, self.step_s, self.wait_s)
        return {
            "train_images_per_s": round(rates["speed/train_images_per_s"], 1),
            "step_images_per_s": round(rates["speed/step_images_per_s"], 1),
            "loader_images_per_s": round(rates["speed/loader_images_per_s"], 1) if self.wait_s > 0 else None,
            "data_wait_share": round(rates["speed/data_wait_share"], 4),
            "epoch_s": round(sum(self.epoch_s) / len(self.epoch_s), 2) if self.epoch_s else None,
            "peak_memory_mb": round(self.peak_mb, 1) if self.peak_mb else None,
        }


class LineProgress(ProgressBar):
    """Progress for a pipe or a log file: one line every `every_s` seconds and at each epoch's end (epoch,
    step of the run, loss, images/s, elapsed, estimated time left), with validation's top-1 — where a terminal
    gets Lightning's bar."""

    def __init__(self, every_s: float = 30.0, stream=None) -> None:
        super().__init__()
        self.every_s = float(every_s)
        self.stream = stream
        self._enabled = True
        self._t0 = 0.0
        self._last = 0.0
        self._step0 = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, file=self.stream or sys.stderr, flush=True, **kwargs)

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self._last = time.perf_counter()
        self._step0 = int(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self.print(self.line(trainer, pl_module, now))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._last = now = time.perf_counter()
        self.print(self.line(trainer, pl_module, now))

    def on_validation_end(self, trainer, pl_module) -> None:
        acc = trainer.callback_metrics.get("val/acc1")
        if not trainer.sanity_checking and acc is not None:
            self.print(f"epoch {trainer.current_epoch + 1}: val/acc1 {float(acc):.4f}")

    def line(self, trainer, pl_module, now: float) -> str:
        step, total = int(trainer.global_step), trainer.estimated_stepping_batches
        elapsed = now - self._t0
        done = step - self._step0
        parts = [f"epoch {trainer.current_epoch + 1}/{planned_epochs(trainer)}"]
        if isinstance(total, (int, float)) and total not in (0, float("inf")):
            parts.append(f"step {step}/{int(total)} ({100 * step / total:.0f}%)")
            if done > 0:
                parts.append(f"eta {duration(elapsed / done * (total - step))}")
        else:
            parts.append(f"step {step}")
        metrics = trainer.callback_metrics
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.4f}")
        if "speed/train_images_per_s" in metrics:
            parts.append(f"{float(metrics['speed/train_images_per_s']):.0f} img/s")
        parts.append(f"elapsed {duration(elapsed)}")
        return "train: " + " · ".join(parts)


def planned_epochs(trainer) -> int | str:
    """The epochs this run will enter: `max_epochs`, or fewer where `max_steps` ends it first ("?" when neither
    bounds it)."""
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    per_epoch = getattr(trainer, "num_training_batches", None)
    if max_steps and isinstance(per_epoch, int) and per_epoch > 0:
        accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
        by_steps = math.ceil(max_steps / math.ceil(per_epoch / accumulate))
        epochs = min(epochs, by_steps) if epochs else by_steps
    return epochs if epochs else "?"


def progress_callback(every_s: float = 30.0, stream=None) -> ProgressBar:
    """Lightning's bar on a terminal (stderr), a periodic line otherwise."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    if is_terminal(stream):
        return TQDMProgressBar(refresh_rate=20)
    return LineProgress(every_s=every_s, stream=stream)
