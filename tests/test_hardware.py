"""hardware=auto|cpu: the precision and memory settings chosen per machine, and device requests refused in one
line (cnnbench/hardware.py). GPUs are simulated by patching torch.cuda's device count."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cnnbench import hardware
from cnnbench.errors import UserError
from tests.helpers import compose_cfg


@pytest.fixture
def gpus(monkeypatch):
    def set_count(n: int):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100")
    return set_count


@pytest.fixture
def cpu(monkeypatch):
    def set_flags(*flags: str):
        getattr(hardware.cpu_flags, "cache_clear", lambda: None)()
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    return set_flags


def test_auto_on_a_gpu_machine_takes_the_gpu_settings(gpus, cpu):
    gpus(8)
    cpu("avx2")
    cfg = compose_cfg("train", ["model=inception_v4", "trainer.devices=8"])
    hardware.check_devices(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.pin_memory is True and cfg.hardware.channels_last is True
    info = hardware.describe(cfg)
    assert (info["accelerator"], info["devices"], info["strategy"]) == ("gpu", 8, "ddp")
    assert "8 GPU devices, precision bf16-mixed" in hardware.start_line(info)


def test_auto_without_gpu_keeps_memory_unpinned_and_precision_by_cpu(gpus, cpu):
    gpus(0)
    cpu("avx2", "avx512f")
    cfg = compose_cfg("train")
    assert cfg.trainer.precision == "32-true" and cfg.data.pin_memory is False
    assert "no AVX512-BF16" in hardware.describe(cfg)["precision_reason"]
    cpu("avx2", "avx512f", "avx512_bf16")
    cfg = compose_cfg("train")
    assert cfg.trainer.precision == "bf16-mixed"
    assert hardware.describe(cfg)["precision_reason"] == "CPU has avx512_bf16"
    assert compose_cfg("train", ["hardware=cpu"]).trainer.precision == "bf16-mixed"
    cpu("amx_bf16")
    assert compose_cfg("train", ["hardware=cpu"]).trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("group", ["auto", "cpu"])
def test_depthwise_network_trains_in_fp32_on_a_cpu_with_avx512_bf16_without_amx(gpus, cpu, group):
    """EfficientNet's depthwise convolutions train 2.3× slower in bf16 on an AVX512-BF16 CPU without AMX
    (docs/performance.md): the hardware group's choice becomes fp32 for it, with the reason in the start line;
    networks without them, CPUs with AMX and GPUs keep bf16."""
    from cnnbench.models import create_model

    with torch.device("meta"):
        effnet, resnet = create_model("efficientnet_b0", num_classes=10), create_model("resnet20")
    gpus(0)
    cpu("avx2", "avx512f", "avx512_bf16")
    cfg = compose_cfg("train", ["model=efficientnet_b0", f"hardware={group}"])
    info = hardware.describe(cfg)
    assert info["precision"] == "bf16-mixed" and hardware.precision_is_auto(cfg)
    assert hardware.fit_precision_to_model(cfg, info, effnet, "efficientnet_b0") is None
    assert cfg.trainer.precision == "32-true" and info["precision"] == "32-true"
    line = hardware.start_line(info)
    assert "precision 32-true (efficientnet_b0 has 16 depthwise convolutions" in line  # one per MBConv block
    for network, flags in ((resnet, ("avx512f", "avx512_bf16")), (effnet, ("avx512_bf16", "amx_bf16", "amx_tile"))):
        cpu(*flags)
        cfg = compose_cfg("train", [f"hardware={group}"])
        info = hardware.describe(cfg)
        assert hardware.fit_precision_to_model(cfg, info, network, "n") is None
        assert cfg.trainer.precision == info["precision"] == "bf16-mixed"


def test_bf16_the_user_set_stays_with_a_note_for_a_depthwise_network(gpus, cpu):
    from cnnbench.models import create_model

    with torch.device("meta"):
        effnet = create_model("efficientnet_b0", num_classes=10)
    gpus(0)
    cpu("avx2", "avx512f", "avx512_bf16")
    cfg = compose_cfg("train", ["model=efficientnet_b0", "trainer.precision=bf16-mixed"])
    info = hardware.describe(cfg)
    assert not hardware.precision_is_auto(cfg)
    note = hardware.fit_precision_to_model(cfg, info, effnet, "efficientnet_b0")
    assert note.startswith("cnnbench: note: efficientnet_b0 has 16 depthwise convolutions")
    assert "trainer.precision=32-true" in note and "docs/performance.md" in note
    assert cfg.trainer.precision == info["precision"] == "bf16-mixed"
    gpus(1)  # on a GPU nothing changes and nothing is said
    cfg = compose_cfg("train", ["model=efficientnet_b0"])
    info = hardware.describe(cfg)
    assert hardware.fit_precision_to_model(cfg, info, effnet, "efficientnet_b0") is None
    assert cfg.trainer.precision == "bf16-mixed"


def test_command_line_precision_overrides_the_choice(gpus, cpu):
    gpus(2)
    cpu("avx512_bf16")
    cfg = compose_cfg("train", ["trainer.precision=32-true"])
    assert cfg.trainer.precision == "32-true"
    assert hardware.describe(cfg)["precision_reason"] == "as configured"


def test_more_devices_than_gpus_is_one_line_naming_gpus_and_alternative(gpus):
    gpus(0)
    with pytest.raises(UserError, match=r"trainer.devices=8 asks for 8 GPUs but no GPU is visible.*"
                                        r"hardware=ddp_cpu trainer.devices=8"):
        hardware.check_devices(compose_cfg("train", ["trainer.devices=8"]))
    gpus(2)
    with pytest.raises(UserError, match=r"2 GPUs visible \(NVIDIA H100\); use trainer.devices=2"):
        hardware.check_devices(compose_cfg("train", ["trainer.devices=8"]))
    hardware.check_devices(compose_cfg("train", ["trainer.devices=2"]))  # met: no error
    hardware.check_devices(compose_cfg("train", ["hardware=ddp_cpu", "trainer.devices=8"]))  # CPU processes


@pytest.mark.parametrize("group", ["gpu", "ddp"])
def test_gpu_groups_without_gpu_are_one_line(gpus, group):
    gpus(0)
    with pytest.raises(UserError, match=f"hardware={group} needs a GPU but no GPU is visible"):
        hardware.check_devices(compose_cfg("train", [f"hardware={group}"]))


@pytest.mark.skipif(torch.cuda.device_count() >= 8, reason="this machine has 8 GPUs")
@pytest.mark.slow
def test_cli_devices_8_is_refused_before_a_run_dir_exists(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "train", "model=inception_v4", "trainer.devices=8"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.devices=8 asks for 8 GPUs" in lines[0], proc.stderr
    assert not any(tmp_path.iterdir())  # no outputs/ made


def test_machine_record_names_the_cpu_class(cpu, monkeypatch):
    """results.json and benchmark.json carry the machine: CPU model, cores, the ISA flags that set its speed
    class, the kernel ISA torch uses, torch version and threads (read from torch at the time of the record:
    torch's answers are replaced here by values no real torch gives)."""
    cpu("avx2", "fma", "avx512f", "avx512_bf16", "sse4_2")
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch, "__version__", "0.0.test")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "TESTISA")
    monkeypatch.setattr(hardware, "cpu_model", lambda: "Test CPU 9000")
    record = hardware.machine_record()
    assert record["cpu_flags"] == ["avx2", "avx512_bf16", "avx512f"]  # only the speed-class flags, sorted
    assert record["torch"] == "0.0.test" and record["torch_threads"] == 7
    assert record["cpu_cores"] >= 1 and record["cpu_model"] == "Test CPU 9000"
    assert record["torch_cpu_capability"] == "TESTISA"
    assert "environment" not in record


def test_an_isa_capped_to_avx2_runs_fp32_like_an_avx2_cpu(cpu, monkeypatch):
    """`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` emulates the AVX2-only class: bf16 would be emulated
    there, so the CPU precision is fp32 even though the flags show AVX512-BF16; the record says so."""
    cpu("avx2", "avx512f", "avx512_bf16")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert hardware.cpu_precision()[0] == "bf16-mixed"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    precision, reason = hardware.cpu_precision()
    assert precision == "32-true" and "ONEDNN_MAX_CPU_ISA" in reason
    assert hardware.machine_record()["environment"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"


@pytest.mark.parametrize(("accelerator", "threads", "load", "said"), [
    ("cpu", 2, 2.3, True),    # two other jobs on two cores: the measured case
    ("cpu", 2, 1.2, False),   # a core to spare
    ("cpu", 1, 4.0, False),   # one thread already
    ("gpu", 8, 9.0, False),   # the GPU does the work
])
def test_a_multithreaded_cpu_training_on_a_busy_machine_is_told_to_use_one_thread(monkeypatch, accelerator,
                                                                                  threads, load, said):
    """docs/performance.md: beside two trainings a 2-thread step was up to 40× slower than a 1-thread one."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    note = hardware.busy_cpu_note({"accelerator": accelerator})
    if said:
        assert note.startswith("cnnbench: note: the machine is busy (load average 2.3 on 2 cores)")
        assert "torch uses 2 threads" in note and "OMP_NUM_THREADS=1" in note and "docs/performance.md" in note
    else:
        assert note is None
