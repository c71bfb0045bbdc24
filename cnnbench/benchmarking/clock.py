"""The benchmark's timers: when each step of cnnbench's Lightning side ended (`StepClock`), and both sides' step
times gathered round by round (`RoundTimes`)."""
from __future__ import annotations

import statistics
import time

import lightning as L
import torch

from cnnbench.benchmarking import set_optimizer_impl, sync


class RoundTimes:
    """Step times of both sides ("plain", "cnnbench") across rounds, the per-round ratio plain ÷ cnnbench of
    the median step time, and each side's peak memory."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {"plain": [], "cnnbench": []}
        self.cpu: dict[str, list[float]] = {"plain": [], "cnnbench": []}
        self.mem = {"plain": 0.0, "cnnbench": 0.0}
        self.per_round: list[float] = []
        self._round: dict[str, list[float]] = {}

    def add(self, side: str, wall: list[float], cpu: list[float], mem: float) -> None:
        self.wall[side] += wall
        self.cpu[side] += cpu
        self.mem[side] = max(self.mem[side], mem)
        self._round[side] = wall

    def end_round(self) -> None:
        if "plain" in self._round and "cnnbench" in self._round:
            self.per_round.append(statistics.median(self._round["plain"]) / statistics.median(self._round["cnnbench"]))
        self._round = {}


class StepClock(L.Callback):
    """Records when each train/test batch ends (after a device sync): wall and process CPU time. With
    `stop_after` set, stops the fit after that many train steps; on train start, switches the trainer's
    optimizers to `impl` (cnnbench.benchmarking.set_optimizer_impl)."""

    def __init__(self, device: torch.device, stage: str, impl: str) -> None:
        self.device, self.stage, self.impl = device, stage, impl
        self.ends: list[float] = []
        self.cpu: list[float] = []
        self.stop_after: int | None = None

    def _start(self) -> None:
        self.ends, self.cpu = [time.perf_counter()], [time.process_time()]

    def _tick(self) -> None:
        sync(self.device)
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def on_train_start(self, trainer, pl_module) -> None:
        for opt in trainer.optimizers:
            set_optimizer_impl(opt, self.impl)
        self._start()

    def on_test_start(self, trainer, pl_module) -> None:
        self._start()

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        self._tick()
        if self.stop_after is not None and len(self.ends) > self.stop_after:
            trainer.should_stop = True

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self._tick()


__all__ = ["RoundTimes", "StepClock"]
