"""What `hardware=auto|cpu` chooses on this machine, and the checks that a device request can be met.

- Precision: `${cnnbench_precision:auto}` in conf/hardware/auto.yaml resolves to bf16-mixed on a GPU; on a CPU
  with AVX512-BF16 or AMX to bf16-mixed (the main job's step ran 1.44× faster in bf16 there,
  docs/performance.md); on other CPUs (AVX2 only, where bf16 matmul is emulated and ~100× slower than fp32) to
  32-true. `trainer.precision=…` on the command line replaces the interpolation, so it always wins. One
  exception, decided by `train` once the network is built: on a CPU with AVX512-BF16 but no AMX a network with
  depthwise convolutions (EfficientNet) trains in fp32, 2.3× faster there (`fit_precision_to_model`).
- Pinned memory: `${cnnbench_pin_memory:}` is true when a GPU is visible (asynchronous host→GPU copies).
- `check_devices(cfg)`: `trainer.devices=8` on a machine with fewer GPUs, or `hardware=gpu|ddp` with none, is
  one line naming what is visible and the alternative — before any data is loaded (Lightning would otherwise
  start 8 gloo processes on the CPU, or raise a MisconfigurationException traceback).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnbench.errors import UserError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags with native bf16 matmul


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # the flags that set a CPU's speed class


@functools.cache
def cpu_model() -> str:
    """The `model name` of the first CPU in /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def machine_record() -> dict[str, Any]:
    """The machine a measurement ran on, written into results.json and benchmark.json: CPU model, cores this
    process may use, the ISA flags that matter for speed (and the kernel ISA torch uses, which
    `ATEN_CPU_CAPABILITY` can lower), torch version, intra-op threads, GPUs."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    record: dict[str, Any] = {
        "cpu_model": cpu_model(), "cpu_cores": cores,
        "cpu_flags": sorted(f for f in ISA_FLAGS if f in cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "gpus": [],
    }
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            record.setdefault("environment", {})[var] = os.environ[var]
    if torch.cuda.is_available():
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return record


def isa_lowered() -> bool:
    """True when the environment caps torch/oneDNN below AVX-512 (`ATEN_CPU_CAPABILITY=avx2`,
    `ONEDNN_MAX_CPU_ISA=AVX2`): the way to run as an AVX2-only CPU would, where bf16 is emulated."""
    import os

    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return aten in ("avx2", "default") or onednn.startswith(("AVX2", "SSE", "AVX_"))


def cpu_has_bf16() -> bool:
    return not isa_lowered() and any(flag in cpu_flags() for flag in BF16_FLAGS)


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def cpu_precision() -> tuple[str, str]:
    """(precision, reason) for training on this CPU."""
    if cpu_has_bf16():
        flag = next(f for f in BF16_FLAGS if f in cpu_flags())
        return "bf16-mixed", f"CPU has {flag}"
    if isa_lowered():
        return "32-true", "ISA capped at AVX2 by ATEN_CPU_CAPABILITY/ONEDNN_MAX_CPU_ISA (bf16 would be emulated)"
    return "32-true", "CPU has no AVX512-BF16/AMX (bf16 would be emulated)"


DEFERRED = "deferred"  # the precision placeholder inside `deferred_device_probe()`
_PROBE_DEFERRED = False  # inside `deferred_device_probe()`: the resolvers below do not count GPUs


@contextlib.contextmanager
def deferred_device_probe() -> Iterator[None]:
    """Compose without counting GPUs: `${cnnbench_precision:…}` and `${cnnbench_pin_memory:}` resolve to
    placeholders ("deferred", False) instead of importing torch. OmegaConf resolves an interpolation while it
    merges a later value over it (conf/eval.yaml's `trainer.precision` over hardware/auto.yaml's), so a
    compose alone would import torch; the CLI's argument checks compose a config that they only validate
    (they read no precision or pin_memory) and must stay ahead of torch. Resolvers are not cached, so the
    config resolves for real when read after the block."""
    global _PROBE_DEFERRED
    saved, _PROBE_DEFERRED = _PROBE_DEFERRED, True
    try:
        yield
    finally:
        _PROBE_DEFERRED = saved


def chosen_precision(kind: str = "auto") -> str:
    """The resolver behind `${cnnbench_precision:auto|cpu}`."""
    if _PROBE_DEFERRED:
        return DEFERRED
    if kind == "auto" and gpu_count() > 0:
        return "bf16-mixed"
    return cpu_precision()[0]


def chosen_pin_memory() -> bool:
    return False if _PROBE_DEFERRED else gpu_count() > 0


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("cnnbench_precision"):
        OmegaConf.register_new_resolver("cnnbench_precision", chosen_precision, use_cache=False)
    if not OmegaConf.has_resolver("cnnbench_pin_memory"):
        OmegaConf.register_new_resolver("cnnbench_pin_memory", chosen_pin_memory, use_cache=False)


def requested_devices(devices: Any) -> int | None:
    """How many devices `trainer.devices` names; None for auto / -1 (all that are visible)."""
    if devices in ("auto", -1, "-1", None):
        return None
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    if isinstance(devices, str):
        parts = [p for p in devices.split(",") if p.strip()]
        return len(parts) if "," in devices else int(devices)
    return int(devices)


def num_devices(trainer_cfg: DictConfig) -> int:
    """How many processes per node `trainer.devices` asks for (auto / -1: every visible GPU, else 1)."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    wanted = requested_devices(trainer_cfg.get("devices", 1))
    if wanted is not None:
        return wanted
    gpus = gpu_count() if accelerator in ("auto", "gpu", "cuda") else 0
    return max(1, gpus) if accelerator != "cpu" else 1


def _gpus_seen(n: int) -> str:
    if n == 0:
        return "no GPU is visible (torch.cuda.device_count() = 0)"
    import torch

    names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
    return f"{n} GPU{'s' if n > 1 else ''} visible ({', '.join(names)})"


def check_devices(cfg: DictConfig) -> None:
    """Refuse, in one line, a device request this machine cannot meet (see the module docstring)."""
    hw_name = str(OmegaConf.select(cfg, "hardware.name", default="auto"))
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    wanted = requested_devices(OmegaConf.select(cfg, "trainer.devices", default="auto"))
    if accelerator not in ("gpu", "cuda") and (accelerator != "auto" or wanted is None or wanted <= 1):
        return  # nothing to check (and torch stays unloaded: the CLI runs this before Hydra starts the job)
    gpus = gpu_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise UserError(f"hardware={hw_name} needs a GPU but {_gpus_seen(0)}; on this machine use hardware=auto "
                        "or hardware=cpu (hardware=ddp_cpu trainer.devices=N for N CPU processes)")
    if accelerator in ("auto", "gpu", "cuda") and wanted is not None:
        if gpus == 0 and wanted > 1:
            raise UserError(f"trainer.devices={wanted} asks for {wanted} GPUs but {_gpus_seen(0)}; for {wanted} CPU "
                            f"processes use hardware=ddp_cpu trainer.devices={wanted}")
        if 0 < gpus < wanted:
            raise UserError(f"trainer.devices={wanted} asks for {wanted} GPUs but {_gpus_seen(gpus)}; use "
                            f"trainer.devices={gpus} (or fewer), or hardware=ddp_cpu trainer.devices={wanted} "
                            "for CPU processes")


def describe(cfg: DictConfig) -> dict[str, Any]:
    """What the run uses: hardware group, accelerator, devices, precision (and why), strategy."""
    gpus = gpu_count()
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    devices = num_devices(cfg.trainer) if on_gpu else requested_devices(cfg.trainer.get("devices")) or 1
    processes = devices * int(cfg.trainer.get("num_nodes", 1))
    strategy = cfg.trainer.get("strategy") or cfg.hardware.get("strategy", "auto")
    if strategy == "auto":
        strategy = "ddp" if processes > 1 else "single device"
    precision = str(cfg.trainer.precision)
    if on_gpu:
        reason = "GPU default" if precision == "bf16-mixed" else "as configured"
    else:
        auto_choice, why = cpu_precision()
        reason = why if precision == auto_choice else "as configured"
    return {"hardware": str(cfg.hardware.get("name", "?")), "accelerator": "gpu" if on_gpu else "cpu",
            "devices": devices, "num_nodes": int(cfg.trainer.get("num_nodes", 1)), "precision": precision,
            "precision_reason": reason, "strategy": str(strategy),
            "channels_last": bool(cfg.hardware.get("channels_last", False))}


def depthwise_convolutions(model: Any) -> int:
    """How many convolutions of `model` are depthwise (one group per channel: EfficientNet's MBConv, §3)."""
    from torch import nn

    return sum(1 for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels)


def precision_is_auto(cfg: DictConfig) -> bool:
    """Whether `trainer.precision` is hardware=auto|cpu's choice (the `${cnnbench_precision:…}` interpolation),
    not a value the user or a recipe set."""
    raw = OmegaConf.to_container(cfg.trainer, resolve=False).get("precision")  # type: ignore[union-attr]
    return isinstance(raw, str) and raw.startswith("${cnnbench_precision:")


def fit_precision_to_model(cfg: DictConfig, info: dict[str, Any], model: Any, name: str) -> str | None:
    """On a CPU with AVX512-BF16 but no AMX, the backward pass of depthwise convolutions is the slow path of
    bf16 (EfficientNet-B0's training step 2.3× slower than in fp32; docs/performance.md, "Training in bf16 on a
    CPU with AVX512-BF16 but no AMX"). A network with them trains in fp32 there when the precision is the
    hardware group's choice: `cfg.trainer.precision` and `info` are updated and None is returned. A bf16 the
    user set stays, and the returned line says what fp32 would give. Elsewhere (GPUs, AMX, fp32, networks
    without depthwise convolutions) nothing changes and None is returned."""
    if info["accelerator"] != "cpu" or not info["precision"].startswith("bf16"):
        return None
    if "avx512_bf16" not in cpu_flags() or "amx_bf16" in cpu_flags():
        return None
    depthwise = depthwise_convolutions(model)
    if not depthwise:
        return None
    if precision_is_auto(cfg):
        cfg.trainer.precision = "32-true"
        info["precision"] = "32-true"
        info["precision_reason"] = (f"{name} has {depthwise} depthwise convolutions, slow to train in bf16 on "
                                    "this CPU: AVX512-BF16 without AMX, EfficientNet-B0 2.3× faster in fp32")
        return None
    return (f"cnnbench: note: {name} has {depthwise} depthwise convolutions, whose backward pass is slow in "
            f"{info['precision']} on this CPU (AVX512-BF16, no AMX): EfficientNet-B0 trained 2.3× faster with "
            "trainer.precision=32-true (docs/performance.md)")


def busy_cpu_note(info: dict[str, Any]) -> str | None:
    """A CPU training on more than one intra-op thread while other jobs already fill the machine's cores: each
    OpenMP thread spins at every operator for a partner the other jobs keep descheduled, and a step runs many
    times slower than on one thread (GoogLeNet's 40×, ResNet-20's 4×, beside two trainings on two cores;
    docs/performance.md, "Two jobs on a 2-core machine: one thread each"). Returns the line that says so, or None
    on a GPU, on one thread, or where the 1-minute load average is below the machine's cores."""
    import os

    import torch

    threads = torch.get_num_threads()
    if info["accelerator"] != "cpu" or threads <= 1 or not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load < cores:
        return None
    return (f"cnnbench: note: the machine is busy (load average {load:.1f} on {cores} cores) and torch uses "
            f"{threads} threads; beside other jobs one thread is faster, up to 40× per step: start it with "
            "OMP_NUM_THREADS=1 (docs/performance.md)")


def start_line(info: dict[str, Any]) -> str:
    nodes = f" × {info['num_nodes']} nodes" if info["num_nodes"] > 1 else ""
    return (f"cnnbench: hardware={info['hardware']} → {info['devices']} {info['accelerator'].upper()} "
            f"device{'s' if info['devices'] > 1 else ''}{nodes}, precision {info['precision']} "
            f"({info['precision_reason']}), strategy {info['strategy']}")


__all__ = ["busy_cpu_note", "check_devices", "chosen_precision", "cpu_precision", "depthwise_convolutions",
           "describe", "fit_precision_to_model", "machine_record", "num_devices", "precision_is_auto",
           "register_resolvers", "start_line"]
