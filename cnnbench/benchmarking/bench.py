"""The benchmark of one config (`cnnbench benchmark`): cnnbench's own step — the real ClassificationModule in a
Lightning Trainer with the train command's callbacks and loggers — against the same network in the hand-written
`PlainLoop`, alternating round by round; and the data loader alone (`benchmark.mode=data`).

The objects of the run come from the run factory, handed in as `Builders` (cnnbench.run's build_datamodule,
build_module, build_trainer), so this module does not import the layer above it.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from cnnbench.benchmarking import (
    PlainLoop,
    matmul_peak,
    peak_mem_mb,
    reset_peak,
    set_optimizer_impl,
    step_times,
    summarize,
    sync,
)
from cnnbench.benchmarking.clock import RoundTimes, StepClock
from cnnbench.benchmarking.data_mode import check_file_sources, files_result, memory_result, with_train_rate
from cnnbench.benchmarking.loaders import Window
from cnnbench.benchmarking.precision import peak_key
from cnnbench.errors import UserError
from cnnbench.hardware import machine_record


class Builders(NamedTuple):
    """The run factory's builders: `datamodule(cfg)`, `module(cfg, dm, lr=…)`, `trainer(cfg, run_dir, …)`."""
    datamodule: Callable[..., Any]
    module: Callable[..., Any]
    trainer: Callable[..., L.Trainer]


def pick_device(cfg: DictConfig) -> torch.device:
    """The one device the benchmark runs on: the first GPU unless `trainer.accelerator=cpu` or none is visible."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} but no GPU is visible; valid choices here: cpu, auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from cnnbench.hardware import cpu_model

    name = cpu_model()  # /proc/cpuinfo's model name, else platform.processor()
    return "cpu" if name == "unknown" else name


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a torch.compile wrapper."""
    return getattr(model, "_orig_mod", model)


def network(cfg: DictConfig, dm) -> torch.nn.Module:
    """The run's network (cfg.model) for the data module's classes and channels, on the current default device."""
    from cnnbench.models import create_model
    from cnnbench.training.module import model_kwargs

    return create_model(cfg.model.name, num_classes=dm.num_classes, in_chans=dm.in_chans,
                        **model_kwargs(OmegaConf.to_container(cfg.model, resolve=True)))


def flops_per_image(cfg: DictConfig, dm) -> float:
    """2 × multiply-adds of one forward pass (cnnbench.profiling.count_macs, on the meta device if possible)."""
    from cnnbench.profiling import count_macs

    try:
        with torch.device("meta"):
            model = network(cfg, dm)
        macs = count_macs(model, dm.image_size, in_chans=dm.in_chans)
    except (NotImplementedError, RuntimeError):
        model = network(cfg, dm)
        macs = count_macs(model, dm.image_size, in_chans=dm.in_chans)
    return 2.0 * macs


class Bench:
    """One benchmark: `run(modes)` → the dict written to benchmark.json (see cnnbench.commands.benchmark)."""

    def __init__(self, cfg: DictConfig, build: Builders) -> None:
        from cnnbench.training.optim import scaled_lr

        self.cfg, self.build = cfg, build
        b = cfg.benchmark
        self.warmup, self.steps, self.rounds = int(b.warmup), int(b.steps), int(b.rounds)
        self.impl = str(b.optimizer_impl)
        set_optimizer_impl(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), self.impl)  # validates the name
        self.precision = str(cfg.trainer.get("precision", "32-true"))  # checked by the config rules
        self.device = pick_device(cfg)
        if b.get("threads"):
            torch.set_num_threads(int(b.threads))
        self.channels_last = bool(cfg.hardware.get("channels_last", False))
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        self.dm = build.datamodule(cfg)
        self.batch = int(cfg.data.batch_size)
        self.optimizer_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
        self.lr = scaled_lr(self.optimizer_cfg, self.batch)  # one device, no accumulation: the batch is global
        self._module = None

    @property
    def window(self) -> Window:
        return Window(self.batch, self.warmup, self.steps, self.rounds, self.device)

    # -- the two sides -----------------------------------------------------------------------------
    @property
    def module(self):
        """The ClassificationModule (built on first use, after the matmul peak, as the command always did)."""
        if self._module is None:
            self._module = self.build.module(self.cfg, self.dm, lr=self.lr)
        return self._module

    def plain(self, train: bool) -> PlainLoop:
        """A separate copy of the network with the module's current weights, in the hand-written loop."""
        from cnnbench.training.module import Normalize
        from cnnbench.training.optim import build_optimizer

        cfg, dm, module = self.cfg, self.dm, self.module
        net = network(cfg, dm)
        net.load_state_dict(unwrap(module.model).state_dict())
        if bool(cfg.model.get("compile", False)):
            net = torch.compile(net)

        def make_optimizer(model):
            opt = build_optimizer(unwrap(model), self.optimizer_cfg, self.lr)
            set_optimizer_impl(opt, self.impl)
            return opt

        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return PlainLoop(net, Normalize(dm.normalization, dm.in_chans, layout), module.aux_weights, module.label_smoothing,
                         self.device, self.precision, self.channels_last, make_optimizer if train else None)

    def trainer(self, callbacks: list, scratch: Path, **overrides) -> L.Trainer:
        """The train command's trainer (same loggers and callbacks), pinned to one device, no validation."""
        return self.build.trainer(self.cfg, scratch, callbacks=callbacks, has_val=True, strategy="auto",
                                  accelerator="gpu" if self.device.type == "cuda" else "cpu", devices=1,
                                  num_nodes=1, num_sanity_val_steps=0, limit_val_batches=0, sync_batchnorm=False,
                                  **overrides)

    def batches(self, loader):
        """The loader's batches as the datamodule hands them to the step (its on_before_batch_transfer: the
        data.decode=gpu decode, the data.photometric=device ops)."""
        self.dm.batch_device = self.device
        for batch in loader:
            yield self.dm.on_before_batch_transfer(batch, 0)

    # -- modes -------------------------------------------------------------------------------------
    def alternate(self, plain_side, cnnbench_side, factor: int) -> dict[str, Any]:
        """`rounds` rounds of the plain loop and cnnbench's Lightning step, alternating which goes first;
        each side returns (step end times, CPU times) of warm-up + measured steps."""
        acc = RoundTimes()
        for r in range(self.rounds):
            for side in ("plain", "cnnbench") if r % 2 == 0 else ("cnnbench", "plain"):
                if side == "plain" and plain_side is None:
                    continue
                reset_peak(self.device)
                ends, cpu = plain_side() if side == "plain" else cnnbench_side()
                acc.add(side, step_times(ends, self.warmup), step_times(cpu, self.warmup), peak_mem_mb(self.device))
            acc.end_round()
        return self.result(acc, factor=factor)

    def _setup(self, stage: str) -> tuple[int, StepClock, PlainLoop | None]:
        """Steps per side (warm-up + measured), the clock of cnnbench's side and the plain loop (if asked)."""
        plain = self.plain(train=stage == "train") if self.cfg.benchmark.plain_loop else None
        return self.warmup + self.steps, StepClock(self.device, stage, self.impl), plain

    def _measured(self, clock: StepClock, run: Callable[[L.Trainer], Any], **trainer_args):
        """One window of cnnbench's side: a trainer in a scratch dir, `run(trainer)`, its loggers finished (one
        W&B run per measured window: the next window, or job of a -m sweep, starts its own)."""
        from cnnbench.training.loggers import finish_loggers

        with tempfile.TemporaryDirectory(prefix="cnnbench-bench-") as scratch:
            trainer = self.trainer([clock], Path(scratch), **trainer_args)
            try:
                run(trainer)
            finally:
                finish_loggers(trainer.loggers, failed=False)
        return clock.ends, clock.cpu

    def run_train(self) -> dict[str, Any]:
        n, clock, plain = self._setup("train")

        def cnnbench_side():
            # a real epoch-based run (so the LR schedule sees its usual length), stopped after n steps
            epochs = -(-n // max(1, len(self.dm.train_dataloader()))) + 1
            clock.stop_after = n
            return self._measured(clock, lambda t: t.fit(self.module, datamodule=self.dm), max_epochs=epochs,
                                  max_steps=-1, limit_train_batches=None)

        plain_side = (lambda: plain.run(self.batches(self.dm.train_dataloader()), n, train=True)) if plain else None
        return self.alternate(plain_side, cnnbench_side, factor=3)

    def run_eval(self) -> dict[str, Any]:
        n, clock, plain = self._setup("test")

        def cnnbench_side():
            return self._measured(clock, lambda t: t.test(self.module, datamodule=self.dm, verbose=False),
                                  limit_test_batches=n)

        plain_side = (lambda: plain.run(self.batches(self.dm.test_dataloader()), n, train=False)) if plain else None
        return self.alternate(plain_side, cnnbench_side, factor=1)

    def run_infer(self) -> dict[str, Any]:
        """Forward passes on one real batch already on the device (model compute, no loader)."""
        x, _ = next(iter(self.dm.test_dataloader()))
        x = x.to(self.device)
        module = self.module.to(self.device).eval()
        plain = self.plain(train=False) if self.cfg.benchmark.plain_loop else None
        autocast = (plain or PlainLoop(torch.nn.Identity(), torch.nn.Identity(), (), 0.0, self.device,
                                       self.precision, False)).autocast
        acc = RoundTimes()

        def ours_step():
            with autocast():
                module(x)

        if plain is not None:
            plain.model.eval()

        def plain_step():
            with plain.autocast():
                plain.model(plain.inputs(x))

        for r in range(self.rounds):
            for side in ("plain", "cnnbench") if r % 2 == 0 else ("cnnbench", "plain"):
                if side == "plain" and plain is not None:
                    self._timed(acc, side, plain_step)
                elif side == "cnnbench":
                    self._timed(acc, side, ours_step)
            acc.end_round()
        return self.result(acc, factor=1)

    def _timed(self, acc: RoundTimes, side: str, step: Callable[[], Any]) -> None:
        """warm-up + measured calls of `step` in inference mode, each ended by a device sync, into `acc`."""
        reset_peak(self.device)
        ends, cpu = [time.perf_counter()], [time.process_time()]
        with torch.inference_mode():
            for _ in range(self.warmup + self.steps):
                step()
                sync(self.device)
                ends.append(time.perf_counter())
                cpu.append(time.process_time())
        acc.add(side, step_times(ends, self.warmup), step_times(cpu, self.warmup), peak_mem_mb(self.device))

    def result(self, acc: RoundTimes, factor: int) -> dict[str, Any]:
        """Both sides' figures (`factor` × the forward FLOPs per image: 3 for a train step) and their ratios."""
        flops = self.flops_per_image * factor
        peak = self.peaks[peak_key(self.precision)]

        def figures(side: str) -> dict[str, Any]:
            f: dict[str, Any] = summarize(acc.wall[side], self.batch, acc.cpu[side])
            f.update(peak_mem_mb=round(acc.mem[side], 1), flops_per_s=flops * f["images_per_s"],
                     mfu=flops * f["images_per_s"] / peak)
            return f

        out = figures("cnnbench")
        out["batch_size"] = self.batch
        if acc.wall["plain"]:
            p = figures("plain")
            out["plain_loop"] = p
            out["ratio_vs_plain_loop"] = out["images_per_s"] / p["images_per_s"]
            out["ratio_per_round"] = acc.per_round
            out["ratio_spread"] = (max(acc.per_round) - min(acc.per_round)) if acc.per_round else None
            out["ratio_median_of_rounds"] = statistics.median(acc.per_round) if acc.per_round else None
            # the same ratio on process CPU time per step: robust to other jobs on a shared machine
            out["ratio_vs_plain_loop_cpu"] = p["cpu_ms"] / out["cpu_ms"]
        else:
            out["plain_loop"] = None
            out["ratio_vs_plain_loop"] = None
        return out

    def run_data(self, measure_train: bool = True) -> dict[str, Any]:
        """The loader rows, then (unless the train mode runs too) the model's train rate in the plain loop, for
        `× train`. Rows first: a loader worker forked from a process that has already run the model's train
        steps inherits its grown heap (copy-on-write of the parent's pages), which slowed one worker by
        several percent in a check on the same files (docs/performance.md)."""
        check_file_sources(self.cfg, self.dm)  # before any measurement: a bad choice costs nothing
        in_memory = self.dm.train_split.images is not None
        out = (memory_result if in_memory else files_result)(self.cfg, self.dm, self.window)
        if measure_train:
            plain = self.plain(train=True)
            ends, _ = plain.run(self.batches(self.dm.train_dataloader()), self.warmup + self.steps, train=True)
            with_train_rate(out, summarize(step_times(ends, self.warmup), self.batch)["images_per_s"])
        return out

    # -- everything ----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """What was measured and where: the keys of benchmark.json before `modes`."""
        return {
            "model": self.cfg.model.name, "data": str(self.cfg.data.name), "image_size": self.dm.image_size,
            "batch_size": self.batch, "precision": self.precision, "channels_last": self.channels_last,
            "compile": bool(self.cfg.model.get("compile", False)), "optimizer_impl": self.impl,
            "device": str(self.device), "device_name": device_name(self.device), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "num_workers": int(self.cfg.data.num_workers),
            "warmup": self.warmup, "steps": self.steps, "rounds": self.rounds,
            "macs_per_image": self.flops_per_image / 2, "peak_flops": self.peaks,
            "machine": machine_record(), "modes": {},
        }

    def train_precision(self) -> None:
        """The precision `train` would use for this network (cnnbench.hardware.fit_precision_to_model: fp32 for
        depthwise convolutions on a CPU with AVX512-BF16 but no AMX, where the precision is hardware=auto's)."""
        from cnnbench.hardware import fit_precision_to_model

        with torch.device("meta"):
            net = network(self.cfg, self.dm)
        info = {"accelerator": self.device.type, "precision": self.precision}
        fit_precision_to_model(self.cfg, info, net, str(self.cfg.model.name))
        self.precision = info["precision"]

    def run(self, modes: list[str]) -> dict[str, Any]:
        if "train" in modes:
            self.train_precision()
        size = self.cfg.benchmark.get("matmul_size")
        self.peaks = {"fp32": matmul_peak(self.device, torch.float32, size),
                      "bf16": matmul_peak(self.device, torch.bfloat16, size)}
        self.flops_per_image = flops_per_image(self.cfg, self.dm)
        result = self.header()
        for mode in sorted(modes, key=lambda m: m != "data"):  # the loader rows first (run_data says why)
            if mode == "data":
                result["modes"]["data"] = self.run_data(measure_train="train" not in modes)
            else:
                result["modes"][mode] = getattr(self, f"run_{mode}")()
        if "data" in result["modes"] and "train" in result["modes"]:
            with_train_rate(result["modes"]["data"], result["modes"]["train"]["images_per_s"])
        result["modes"] = {mode: result["modes"][mode] for mode in modes}  # in the order asked for
        return result


__all__ = ["Bench", "Builders", "device_name", "flops_per_image", "pick_device", "unwrap"]
