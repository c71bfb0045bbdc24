"""Measuring pieces behind `cnnbench benchmark`: matmul peak, step timers, the plain reference loop.

The plain loop is the reference with no framework in it: the same network (same weights), the same
data loader, the same loss (main head + weighted auxiliary heads) and the same optimizer, written as
forward / loss / backward / step. cnnbench's side is the real ClassificationModule in a Lightning
Trainer built with the train command's callbacks and loggers.
"""
from __future__ import annotations

import contextlib
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnbench.models import main_logits

OPTIMIZER_IMPLS = ("default", "foreach", "fused")


# -- peak FLOP/s ---------------------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, min_run_time: float = 0.5) -> float:
    """FLOP/s of a square matmul on this machine, now (torch.utils.benchmark's Timer, median of ≥ 10 blocks).

    The block size is set here from one timed call (each block ≈ min_run_time / 10): `blocked_autorange`
    sizes blocks from the timer's own overhead, which grows once Lightning is imported, and then picked
    blocks of 10⁵ calls (seconds per block for a small matmul)."""
    from torch.utils.benchmark import Timer

    n = int(size or (8192 if device.type == "cuda" else 1024))
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timer = Timer("torch.mm(a, b)", globals={"a": a, "b": b, "torch": torch}, num_threads=torch.get_num_threads())
    timer.timeit(1)  # warm-up
    once = max(timer.timeit(1).median, 1e-7)
    number = max(1, int(min_run_time / 10 / once))
    blocks = [timer.timeit(number).median for _ in range(10)]
    return 2.0 * n**3 / statistics.median(blocks)


# -- step timing ---------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mem_mb(device: torch.device) -> float:
    """GPU: peak allocated by torch since the last reset. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def step_times(ends: list[float], warmup: int) -> list[float]:
    """Seconds per step from the times at which steps ended, after dropping `warmup` steps."""
    ends = ends[warmup:]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def summarize(times: list[float], batch: int, cpu_times: list[float] | None = None) -> dict[str, float]:
    """Median step → step_ms and images/s; `cpu_ms` is the median process CPU time per step (all threads of
    this process, loader workers excluded) — on a shared machine it varies far less than wall time."""
    med = statistics.median(times)
    out = {"step_ms": 1e3 * med, "images_per_s": batch / med, "steps_timed": len(times)}
    if cpu_times:
        out["cpu_ms"] = 1e3 * statistics.median(cpu_times)
    return out


# -- the plain PyTorch loop ----------------------------------------------------------------------
class PlainLoop:
    """A hand-written train/eval loop over the same network and loader (the no-framework reference)."""

    def __init__(self, model: torch.nn.Module, normalize: torch.nn.Module, aux_weights: Iterable[float],
                 label_smoothing: float, device: torch.device, precision: str, channels_last: bool,
                 optimizer_factory: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None) -> None:
        self.model = model.to(device)
        self.normalize = normalize.to(device)
        self.aux_weights = tuple(aux_weights)
        self.label_smoothing = label_smoothing
        self.device = device
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.precision = precision
        self.optimizer = optimizer_factory(self.model) if optimizer_factory else None

    def autocast(self):
        """Lightning's forward context for this precision (cnnbench.benchmarking.precision)."""
        from cnnbench.benchmarking.precision import autocast

        return autocast(self.precision, self.device.type)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.to(self.device, non_blocking=True)
        with self.autocast():
            out = self.model(self.inputs(x))
            loss = F.cross_entropy(main_logits(out), y, label_smoothing=self.label_smoothing)
            if isinstance(out, (tuple, list)):
                for w, aux in zip(self.aux_weights, out[1:], strict=False):
                    loss = loss + w * F.cross_entropy(aux, y, label_smoothing=self.label_smoothing)
        return loss

    def train_step(self, batch) -> torch.Tensor:
        x, y = batch
        loss = self.loss(x, y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def run(self, loader, n_steps: int, train: bool) -> tuple[list[float], list[float]]:
        """Run up to n_steps batches; returns the wall and process-CPU times at which each ended
        (after a device sync)."""
        self.model.train(train)
        ends, cpu = [time.perf_counter()], [time.process_time()]
        context = contextlib.nullcontext() if train else torch.inference_mode()
        with context:
            for i, batch in enumerate(loader):
                if i >= n_steps:
                    break
                if train:
                    self.train_step(batch)
                else:
                    x, y = batch
                    with self.autocast():
                        logits = main_logits(self.model(self.inputs(x)))
                    _ = (logits.argmax(1) == y.to(self.device)).sum()
                sync(self.device)
                ends.append(time.perf_counter())
                cpu.append(time.process_time())
        return ends, cpu


def set_optimizer_impl(optimizer: torch.optim.Optimizer, impl: str) -> None:
    """Switch a built torch optimizer between its for-loop, foreach and fused implementations."""
    if impl not in OPTIMIZER_IMPLS:
        from cnnbench.errors import UserError

        raise UserError(f"benchmark.optimizer_impl={impl!r}; valid choices: {', '.join(OPTIMIZER_IMPLS)}")
    if impl == "default":
        return
    for group in optimizer.param_groups:
        if "foreach" in group:
            group["foreach"] = impl == "foreach"
        if impl == "fused":
            if "fused" not in group:
                from cnnbench.errors import UserError

                raise UserError(f"benchmark.optimizer_impl=fused: {type(optimizer).__name__} has no fused version")
            group["fused"] = True
            group["foreach"] = False


# -- sweeps --------------------------------------------------------------------------------------
SWEEP_COLUMNS = ("job", "model", "mode", "images_per_s", "step_ms", "peak_mem_mb", "mfu", "plain_images_per_s",
                 "ratio_vs_plain_loop")


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(sweep_dir.glob("*/benchmark.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        data = json.loads(path.read_text())
        for mode, r in data.get("modes", {}).items():
            if not isinstance(r, dict) or "images_per_s" not in r:
                continue
            rows.append({"job": path.parent.name, "model": data.get("model"), "mode": mode, **r,
                         "plain_images_per_s": (r.get("plain_loop") or {}).get("images_per_s")})
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return "—" if v is None else str(v)


def print_sweep(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    table = Table(title=title)
    for col in SWEEP_COLUMNS:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in SWEEP_COLUMNS])
    console.print(table)


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class BenchmarkSweepSummary(_HydraCallback):
    """After `cnnbench benchmark -m …`: one table of every job's benchmark.json (and summary.csv)."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        import csv

        sweep_dir = Path(config.hydra.sweep.dir)
        rows = sweep_rows(sweep_dir)
        if not rows:
            return
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        print_sweep(rows, f"benchmark summary — {sweep_dir}")
