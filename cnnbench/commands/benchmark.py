"""`cnnbench benchmark model=X [benchmark.mode=train|infer|data|eval]`.

After warm-up, the median over repeated steps of images/s, step time, peak memory, achieved FLOP/s and
MFU against a square-matmul peak measured in the same run (fp32 and bf16). For train/infer/eval the
same network (same weights) with the same data loader also runs in a minimal hand-written PyTorch loop,
alternating round by round with cnnbench's own step (the real ClassificationModule in a Lightning
Trainer with the train command's callbacks and loggers); cnnbench's images/s is reported as a ratio of it.
`mode=data` measures the data loader alone per augmentation pipeline, source and worker count.

The machinery is `cnnbench.benchmarking` (bench.py: the measurements, table.py: the printed tables); the
values of `benchmark.*` and `trainer.precision` are checked by `cnnbench.config_schema` before this runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnbench.benchmarking.bench import Bench, Builders
from cnnbench.benchmarking.table import print_result
from cnnbench.run import build_datamodule, build_module, build_trainer, resolve_paths
from cnnbench.runtime import resolve_run_dir, write_json


def make_bench(cfg: DictConfig, run_dir: str | Path | None = None) -> Bench:
    """The benchmark of `cfg`, its data module, module and trainers built by the run factory."""
    return Bench(cfg, Builders(datamodule=build_datamodule, module=build_module, trainer=build_trainer))


def benchmark(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    run_dir = resolve_run_dir(run_dir)
    mode = OmegaConf.to_container(cfg.benchmark, resolve=True)["mode"]
    modes = [mode] if isinstance(mode, str) else list(mode)
    resolve_paths(cfg)
    result = make_bench(cfg, run_dir).run(modes)
    result["run_dir"] = str(run_dir)
    write_json(run_dir / "benchmark.json", result)
    print_result(result)
    return result
