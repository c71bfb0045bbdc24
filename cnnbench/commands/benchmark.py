"""`cnnbench benchmark model=X [benchmark.mode=train|infer|data|eval]`.

After warm-up, the median over repeated steps of images/s, step time, peak memory, achieved FLOP/s and
MFU against a square-matmul peak measured in the same run (fp32 and bf16). For train/infer/eval the
same network (same weights) with the same data loader also runs in a minimal hand-written PyTorch loop,
alternating round by round with cnnbench's own step (the real ClassificationModule in a Lightning
Trainer with the train command's callbacks and loggers); cnnbench's images/s is reported as a ratio of it.
`mode=data` measures the data loader alone per augmentation pipeline, source and worker count.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

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
from cnnbench.choices import BENCHMARK_MODES
from cnnbench.data import ImageDataModule
from cnnbench.errors import UserError
from cnnbench.hardware import machine_record
from cnnbench.run import build_datamodule, build_module, build_trainer, model_config, resolve_paths
from cnnbench.runtime import absolute, resolve_run_dir, write_json
from cnnbench.training.loggers import finish_loggers
from cnnbench.training.module import ClassificationModule, Normalize, model_kwargs
from cnnbench.training.optim import build_optimizer, scaled_lr

MODES = BENCHMARK_MODES
PRECISIONS = {"32-true": torch.float32, "32": torch.float32, "bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16,
              "16-mixed": torch.float16, "16": torch.float16}


def _modes(value: Any) -> list[str]:
    """benchmark.mode as a list (its values are checked by cnnbench.config_schema)."""
    return [value] if isinstance(value, str) else list(value)


def _device(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} but no GPU is visible; valid choices here: cpu, auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "_orig_mod", model)


def _flops_per_image(cfg: DictConfig, dm: ImageDataModule) -> float:
    """2 × multiply-adds of one forward pass (cnnbench.profiling.count_macs, on the meta device if possible)."""
    from cnnbench.models import create_model
    from cnnbench.profiling import count_macs

    kwargs = model_kwargs(model_config(cfg))
    try:
        with torch.device("meta"):
            model = create_model(cfg.model.name, num_classes=dm.num_classes, in_chans=dm.in_chans, **kwargs)
        macs = count_macs(model, dm.image_size, in_chans=dm.in_chans)
    except (NotImplementedError, RuntimeError):
        model = create_model(cfg.model.name, num_classes=dm.num_classes, in_chans=dm.in_chans, **kwargs)
        macs = count_macs(model, dm.image_size, in_chans=dm.in_chans)
    return 2.0 * macs


class _Bench:
    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        b = cfg.benchmark
        self.warmup, self.steps, self.rounds = int(b.warmup), int(b.steps), int(b.rounds)
        self.impl = str(b.optimizer_impl)
        set_optimizer_impl(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), self.impl)  # validates the name
        self.precision = str(cfg.trainer.get("precision", "32-true"))
        if self.precision not in PRECISIONS:
            raise UserError(f"trainer.precision={self.precision!r}; valid choices: {', '.join(PRECISIONS)}")
        self.device = _device(cfg)
        if b.get("threads"):
            torch.set_num_threads(int(b.threads))
        self.channels_last = bool(cfg.hardware.get("channels_last", False))
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        self.dm = build_datamodule(cfg)
        self.batch = int(cfg.data.batch_size)
        self.optimizer_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
        self.lr = scaled_lr(self.optimizer_cfg, self.batch)  # one device, no accumulation: the batch is global
        self._module: ClassificationModule | None = None

    # -- the two sides -----------------------------------------------------------------------------
    @property
    def module(self) -> ClassificationModule:
        if self._module is None:
            self._module = build_module(self.cfg, self.dm, lr=self.lr)
        return self._module

    def plain(self, train: bool) -> PlainLoop:
        """A separate copy of the network with the module's current weights, in the hand-written loop."""
        from cnnbench.models import create_model

        cfg, dm, module = self.cfg, self.dm, self.module
        net = create_model(cfg.model.name, num_classes=dm.num_classes, in_chans=dm.in_chans,
                           **model_kwargs(model_config(cfg)))
        net.load_state_dict(_unwrap(module.model).state_dict())
        if bool(cfg.model.get("compile", False)):
            net = torch.compile(net)

        def make_optimizer(model):
            opt = build_optimizer(_unwrap(model), self.optimizer_cfg, self.lr)
            set_optimizer_impl(opt, self.impl)
            return opt

        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return PlainLoop(net, Normalize(dm.normalization, dm.in_chans, layout), module.aux_weights, module.label_smoothing,
                         self.device, self.precision, self.channels_last, make_optimizer if train else None)

    def trainer(self, callbacks: list, scratch: Path, **overrides) -> L.Trainer:
        """The train command's trainer (same loggers and callbacks), pinned to one device, no validation."""
        return build_trainer(self.cfg, scratch, callbacks=callbacks, has_val=True, strategy="auto",
                             accelerator="gpu" if self.device.type == "cuda" else "cpu", devices=1, num_nodes=1,
                             num_sanity_val_steps=0, limit_val_batches=0, sync_batchnorm=False, **overrides)

    # -- modes -------------------------------------------------------------------------------------
    def _alternate(self, plain_side, cnnbench_side, factor: int) -> dict[str, Any]:
        """`rounds` rounds of the plain loop and cnnbench's Lightning step, alternating which goes first;
        each side returns (step end times, CPU times) of warm-up + measured steps."""
        acc = _Acc()
        for r in range(self.rounds):
            for side in ("plain", "cnnbench") if r % 2 == 0 else ("cnnbench", "plain"):
                if side == "plain" and plain_side is None:
                    continue
                reset_peak(self.device)
                ends, cpu = plain_side() if side == "plain" else cnnbench_side()
                acc.add(side, step_times(ends, self.warmup), step_times(cpu, self.warmup), peak_mem_mb(self.device))
            acc.end_round()
        return self._result(acc, factor=factor)

    def _setup(self, stage: str) -> tuple[int, _Clock, PlainLoop | None]:
        """Steps per side (warm-up + measured), the clock of cnnbench's side and the plain loop (if asked)."""
        plain = self.plain(train=stage == "train") if self.cfg.benchmark.plain_loop else None
        return self.warmup + self.steps, _Clock(self.device, stage, self.impl), plain

    def run_train(self) -> dict[str, Any]:
        n, clock, plain = self._setup("train")

        def cnnbench_side():
            with tempfile.TemporaryDirectory(prefix="cnnbench-bench-") as scratch:
                # a real epoch-based run (so the LR schedule sees its usual length), stopped after n steps
                epochs = -(-n // max(1, len(self.dm.train_dataloader()))) + 1
                trainer = self.trainer([clock], Path(scratch), max_epochs=epochs, max_steps=-1,
                                       limit_train_batches=None)
                clock.stop_after = n
                try:
                    trainer.fit(self.module, datamodule=self.dm)
                finally:  # one W&B run per measured window: the next window (or job of a -m sweep) starts its own
                    finish_loggers(trainer.loggers, failed=False)
            return clock.ends, clock.cpu

        plain_side = (lambda: plain.run(self._batches(self.dm.train_dataloader()), n, train=True)) if plain else None
        return self._alternate(plain_side, cnnbench_side, factor=3)

    def run_eval(self) -> dict[str, Any]:
        n, clock, plain = self._setup("test")

        def cnnbench_side():
            with tempfile.TemporaryDirectory(prefix="cnnbench-bench-") as scratch:
                trainer = self.trainer([clock], Path(scratch), limit_test_batches=n)
                try:
                    trainer.test(self.module, datamodule=self.dm, verbose=False)
                finally:
                    finish_loggers(trainer.loggers, failed=False)
            return clock.ends, clock.cpu

        plain_side = (lambda: plain.run(self._batches(self.dm.test_dataloader()), n, train=False)) if plain else None
        return self._alternate(plain_side, cnnbench_side, factor=1)

    def run_infer(self) -> dict[str, Any]:
        """Forward passes on one real batch already on the device (model compute, no loader)."""
        x, _ = next(iter(self.dm.test_dataloader()))
        x = x.to(self.device)
        module = self.module.to(self.device).eval()
        plain = self.plain(train=False) if self.cfg.benchmark.plain_loop else None
        autocast = (plain or PlainLoop(torch.nn.Identity(), torch.nn.Identity(), (), 0.0, self.device,
                                       self.precision, False)).autocast
        n = self.warmup + self.steps
        acc = _Acc()

        def timed(side, fn) -> None:
            reset_peak(self.device)
            ends, cpu = [time.perf_counter()], [time.process_time()]
            with torch.inference_mode():
                for _ in range(n):
                    fn()
                    sync(self.device)
                    ends.append(time.perf_counter())
                    cpu.append(time.process_time())
            acc.add(side, step_times(ends, self.warmup), step_times(cpu, self.warmup), peak_mem_mb(self.device))

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
                    timed(side, plain_step)
                elif side == "cnnbench":
                    timed(side, ours_step)
            acc.end_round()
        return self._result(acc, factor=1)

    def _result(self, acc: _Acc, factor: int) -> dict[str, Any]:
        flops = self.flops_per_image * factor
        peak = self.peaks["bf16" if PRECISIONS[self.precision] in (torch.bfloat16, torch.float16) else "fp32"]

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

    # -- data ----------------------------------------------------------------------------------------
    def run_data(self, measure_train: bool = True) -> dict[str, Any]:
        """The loader rows, then (unless the train mode runs too) the model's train rate in the plain loop, for
        `× train`. Rows first: a loader worker forked from a process that has already run the model's train
        steps inherits its grown heap (copy-on-write of the parent's pages), which slowed one worker by
        several percent in a check on the same files (docs/performance.md)."""
        self._check_sources()  # before any measurement: a bad choice costs nothing
        out = self._run_data_files() if self.dm.train_split.images is None else self._run_data_memory()
        if measure_train:
            plain = self.plain(train=True)
            ends, _ = plain.run(self._batches(self.dm.train_dataloader()), self.warmup + self.steps, train=True)
            with_train_rate(out, summarize(step_times(ends, self.warmup), self.batch)["images_per_s"])
        return out

    def _run_data_memory(self) -> dict[str, Any]:
        """In-memory data: its own copy ("memory") and a temporary ImageFolder of JPEGs written from it ("jpeg")
        through `benchmark.augmentations`."""
        b = self.cfg.benchmark
        rows = []
        with tempfile.TemporaryDirectory(prefix="cnnbench-jpeg-") as tmp:
            for source in b.sources:
                data_cfg = OmegaConf.to_container(self.cfg.data, resolve=True)
                if source == "jpeg":
                    _write_jpegs(self.dm, Path(tmp), int(b.jpeg_images))
                    data_cfg.update(name="imagefolder", root=tmp, mean_mode="channel", limit_train=None,
                                    limit_val=None, limit_test=None, on_bad_image="error",
                                    image_size=self.dm.image_size, val_split=0)
                for aug in b.augmentations:
                    aug_cfg = _augmentation(str(aug))
                    dm = ImageDataModule(data_cfg, aug_cfg, self.cfg.model.name, seed=int(self.cfg.seed),
                                         model_kwargs=model_kwargs(OmegaConf.to_container(self.cfg.model,
                                                                                          resolve=True))).load()
                    for workers in b.workers:
                        dm.cfg.num_workers = int(workers)
                        dm.cfg.persistent_workers = False
                        ips = _loader_rate(dm._loader(dm.train_split, train=True), self.warmup, self.steps)
                        rows.append({"source": source, "augmentation": str(aug), "workers": int(workers),
                                     "images_per_s": ips, "vs_train": None})
        if not rows:
            raise UserError(f"benchmark.sources={list(b.sources)} measured nothing; valid choices: memory, jpeg")
        # the common per-mode keys describe the configured loader (this data/augmentation/num_workers)
        configured = [r for r in rows if r["source"] == "memory" and r["augmentation"] == self.cfg.augmentation.name
                      and r["workers"] == int(self.cfg.data.num_workers)]
        ips = configured[0]["images_per_s"] if configured else max((r["images_per_s"] for r in rows), default=None)
        return {"images_per_s": ips, "step_ms": 1e3 * self.batch / ips if ips else None,
                "peak_mem_mb": round(peak_mem_mb(self.device), 1), "mfu": None, "plain_loop": None,
                "ratio_vs_plain_loop": None, "train_images_per_s": None, "ratio_vs_train": None, "loaders": rows,
                "batch_size": self.batch, "torch_threads": torch.get_num_threads()}

    def _check_sources(self) -> None:
        sources = [str(x) for x in self.cfg.benchmark.sources]
        for source in sources:
            if source not in ("memory", "jpeg"):
                raise UserError(f"benchmark.sources contains {source!r}; valid choices: memory, jpeg")
        if self.dm.train_split.images is None and "jpeg" not in sources:
            raise UserError(f"benchmark.sources={sources} measures nothing on file-backed data "
                            f"(data={self.cfg.data.name} has no in-memory copy); valid choices here: [jpeg]")

    def _batches(self, loader):
        """The loader's batches as the datamodule hands them to the step (its on_before_batch_transfer: the
        data.decode=gpu decode, the data.photometric=device ops)."""
        self.dm.batch_device = self.device
        for batch in loader:
            yield self.dm.on_before_batch_transfer(batch, 0)

    def _run_data_files(self) -> dict[str, Any]:
        """File-backed data: its own files through the paper train pipelines, the eval protocols and the
        OpenCV reference rows (cnnbench.benchmarking.loaders)."""
        from cnnbench.benchmarking.loaders import file_rows

        b = self.cfg.benchmark
        data_cfg = OmegaConf.to_container(self.cfg.data, resolve=True)
        data_cfg.update(root=absolute(data_cfg["root"]), image_size=self.dm.image_size, val_split=0)
        augmentations = [str(a) for a in b.get("file_augmentations", [])]
        protocols = [int(c) for c in b.get("protocols", [])]
        rows = file_rows(self, data_cfg, augmentations, [int(w) for w in b.workers], protocols, _augmentation)
        if not rows:
            raise UserError("benchmark.mode=data measured nothing; set benchmark.workers (e.g. [0, 1])")
        configured = [r for r in rows if r["kind"] == "train" and r["augmentation"] == self.cfg.augmentation.name
                      and r["workers"] == int(self.cfg.data.num_workers)]
        ips = configured[0]["images_per_s"] if configured else None
        return {"images_per_s": ips, "step_ms": 1e3 * self.batch / ips if ips else None,
                "peak_mem_mb": round(peak_mem_mb(self.device), 1), "mfu": None, "plain_loop": None,
                "ratio_vs_plain_loop": None, "train_images_per_s": None, "ratio_vs_train": None, "loaders": rows,
                "decode": self.dm.decode, "reduced_decode": bool(self.cfg.data.get("reduced_decode", True)),
                "photometric": self.dm.photometric,
                "files": len(self.dm.train_split), "batch_size": self.batch, "torch_threads": 1,
                "image_size": self.dm.image_size}

    # -- everything ----------------------------------------------------------------------------------
    def run(self, modes: list[str]) -> dict[str, Any]:
        size = self.cfg.benchmark.get("matmul_size")
        self.peaks = {"fp32": matmul_peak(self.device, torch.float32, size),
                      "bf16": matmul_peak(self.device, torch.bfloat16, size)}
        self.flops_per_image = _flops_per_image(self.cfg, self.dm)
        result: dict[str, Any] = {
            "model": self.cfg.model.name, "data": str(self.cfg.data.name), "image_size": self.dm.image_size,
            "batch_size": self.batch, "precision": self.precision, "channels_last": self.channels_last,
            "compile": bool(self.cfg.model.get("compile", False)), "optimizer_impl": self.impl,
            "device": str(self.device), "device_name": _device_name(self.device), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "num_workers": int(self.cfg.data.num_workers),
            "warmup": self.warmup, "steps": self.steps, "rounds": self.rounds,
            "macs_per_image": self.flops_per_image / 2, "peak_flops": self.peaks,
            "machine": machine_record(), "modes": {},
        }
        for mode in sorted(modes, key=lambda m: m != "data"):  # the loader rows first (run_data says why)
            if mode == "data":
                result["modes"]["data"] = self.run_data(measure_train="train" not in modes)
            else:
                result["modes"][mode] = getattr(self, f"run_{mode}")()
        if "data" in result["modes"] and "train" in result["modes"]:
            with_train_rate(result["modes"]["data"], result["modes"]["train"]["images_per_s"])
        result["modes"] = {mode: result["modes"][mode] for mode in modes}  # in the order asked for
        return result


def with_train_rate(data: dict[str, Any], train_images_per_s: float) -> None:
    """`× train` of every loader row and of the configured loader: its images/s ÷ the model's train rate."""
    data["train_images_per_s"] = train_images_per_s
    ips = data.get("images_per_s")
    data["ratio_vs_train"] = ips / train_images_per_s if ips else None
    for row in data["loaders"]:
        row["vs_train"] = row["images_per_s"] / train_images_per_s


class _Acc:
    """Step times of both sides across rounds, the per-round ratio and each side's peak memory."""

    def __init__(self) -> None:
        self.wall = {"plain": [], "cnnbench": []}
        self.cpu = {"plain": [], "cnnbench": []}
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


class _Clock(L.Callback):
    """Records when each train/test batch ends (after a device sync): wall and process CPU time."""

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


def _augmentation(name: str) -> dict[str, Any]:
    from cnnbench.config_paths import find_config, group_options

    path = find_config("augmentation", name)
    if path is None:
        valid = group_options("augmentation")
        raise UserError(f"benchmark.augmentations contains {name!r}; valid choices: {', '.join(valid)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def _write_jpegs(dm: ImageDataModule, root: Path, n: int) -> None:
    """root/train/<class>/*.jpg (first n training images) and a small root/val, as JPEG quality 90."""
    from PIL import Image

    split = dm.train_split
    n = min(n, len(split))
    for sub, index in (("train", range(n)), ("val", range(min(n, 10 * len(dm.classes))))):
        for i in index:
            image, label = split.images[i], int(split.labels[i])
            folder = root / sub / f"{label:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:06d}.jpg",
                                                                                    quality=90)


def _loader_rate(loader, warmup: int, steps: int) -> float:
    """Images/s a loader delivers over `steps` batches after `warmup` batches (window throughput)."""
    images, start = 0, None
    for i, (x, _) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        elif i > warmup:
            images += len(x)
        if i >= warmup + steps:
            break
    if start is None or images == 0:
        raise UserError(f"the loader has fewer than {warmup + 2} batches; lower benchmark.warmup/steps "
                        "or raise data.limit_train")
    return images / (time.perf_counter() - start)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def benchmark(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    run_dir = resolve_run_dir(run_dir)
    modes = _modes(OmegaConf.to_container(cfg.benchmark, resolve=True)["mode"])
    resolve_paths(cfg)
    bench = _Bench(cfg, run_dir)
    result = bench.run(modes)
    result["run_dir"] = str(run_dir)
    write_json(run_dir / "benchmark.json", result)
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    peaks = r["peak_flops"]
    title = (f"{r['model']} · {r['data']} {r['image_size']}² · batch {r['batch_size']} · {r['precision']}"
             f"{' · channels_last' if r['channels_last'] else ''}{' · compiled' if r['compile'] else ''} · "
             f"{r['device_name']} · matmul peak fp32 {peaks['fp32'] / 1e9:.0f} / bf16 {peaks['bf16'] / 1e9:.0f} "
             "GFLOP/s")
    table = Table(title=title)
    for col in ("mode", "", "images/s", "step ms", "CPU ms", "peak MB", "GFLOP/s", "MFU", "vs plain loop",
                "on CPU time"):
        table.add_column(col, justify="right")
    for mode, m in r["modes"].items():
        if mode == "data":
            continue
        spread = f" (±{m['ratio_spread'] / 2:.3f})" if m.get("ratio_spread") is not None else ""
        ratio = "—" if m.get("ratio_vs_plain_loop") is None else f"{m['ratio_vs_plain_loop']:.3f}{spread}"
        cpu_ratio = m.get("ratio_vs_plain_loop_cpu")
        table.add_row(mode, "cnnbench", f"{m['images_per_s']:,.0f}", f"{m['step_ms']:.1f}", f"{m['cpu_ms']:.1f}",
                      f"{m['peak_mem_mb']:,.0f}", f"{m['flops_per_s'] / 1e9:.1f}", f"{100 * m['mfu']:.1f}%", ratio,
                      "—" if cpu_ratio is None else f"{cpu_ratio:.3f}")
        p = m.get("plain_loop")
        if p:
            table.add_row("", "plain loop", f"{p['images_per_s']:,.0f}", f"{p['step_ms']:.1f}", f"{p['cpu_ms']:.1f}",
                          f"{p['peak_mem_mb']:,.0f}", f"{p['flops_per_s'] / 1e9:.1f}", f"{100 * p['mfu']:.1f}%", "1",
                          "1")
    if table.rows:
        console.print(table)
    data = r["modes"].get("data")
    if data and data["loaders"] and "kind" in data["loaders"][0]:
        device = data.get("photometric", "cpu") == "device"
        t = Table(title=f"{data['files']} files, {data['image_size']}², batch {data['batch_size']}, decode="
                        f"{data['decode']}" + (", photometric ops on the device" if device else "")
                        + f" — {r['model']} trains at {data['train_images_per_s']:,.0f} images/s")
        rounds = data["loaders"][0].get("rounds", 1)
        for col in ("kind", "pipeline", "workers", "images/s", "images/s per core",
                    "vs OpenCV reference" + (f" (range, {rounds} rounds)" if rounds > 1 else ""),
                    "÷ (workers × workers=0)", "× train") + (("device ms/image",) if device else ()):
            t.add_column(col, justify="right")
        for row in data["loaders"]:
            name = row["augmentation"] + (f" ({row['views_per_image']} views)" if row["views_per_image"] > 1 else "")
            lo, hi = row.get("vs_reference_range") or (row["vs_reference"],) * 2
            vs_ref = f"{row['vs_reference']:.2f}" + (f" ({lo:.2f}–{hi:.2f})" if rounds > 1 else "")
            t.add_row(row["kind"], name, str(row["workers"]), f"{row['images_per_s']:,.0f}",
                      f"{row['images_per_s_per_core']:,.0f}", vs_ref,
                      "—" if row.get("vs_workers0") is None else f"{row['vs_workers0']:.2f}",
                      "—" if row["vs_train"] is None else f"{row['vs_train']:.1f}",
                      *((f"{row['device_ms_per_image']:.3f}" if "device_ms_per_image" in row else "—",) if device else ()))
        console.print(t)
    elif data:
        t = Table(title=f"data loader alone vs train {data['train_images_per_s']:,.0f} images/s "
                        f"(batch {data['batch_size']}) — needs ≥ 2×")
        for col in ("source", "augmentation", "workers", "images/s", "× train"):
            t.add_column(col, justify="right")
        for row in data["loaders"]:
            t.add_row(row["source"], row["augmentation"], str(row["workers"]), f"{row['images_per_s']:,.0f}",
                      f"{row['vs_train']:.1f}")
        console.print(t)
