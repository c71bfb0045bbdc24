"""Every option of every config group composes, and the composed config has what the code reads."""
from __future__ import annotations

import pytest

from tests.helpers import CONF, compose_cfg

GROUPS = ["model", "data", "optimizer", "schedule", "augmentation", "hardware", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_cfg("train", [f"{group}={option}"])
    node = cfg[group]
    if group == "hardware":
        assert cfg.hardware.name == option
        assert "accelerator" in cfg.trainer and "precision" in cfg.trainer
    else:
        assert node.name == option, f"{group}/{option}.yaml must set name: {option}"


def test_default_main_job():
    cfg = compose_cfg("train")
    assert cfg.model.name == "resnet20"
    assert cfg.data.name == "fashion_mnist"
    assert cfg.hardware.name == "auto"
    assert cfg.logger.name == "wandb" and cfg.logger.wandb.mode == "offline"


def test_trainer_node_passes_through():
    cfg = compose_cfg("train", ["trainer.devices=8", "trainer.max_epochs=3", "trainer.deterministic=true"])
    assert cfg.trainer.devices == 8 and cfg.trainer.max_epochs == 3 and cfg.trainer.deterministic is True


@pytest.mark.parametrize("hardware,flags,accelerator,precision,strategy",
                         [("cpu", ("avx2", "avx512f"), "cpu", "32-true", "auto"),  # bf16 would be emulated
                          ("cpu", ("avx2", "avx512_bf16"), "cpu", "bf16-mixed", "auto"),  # native bf16 matmul
                          ("cpu", ("avx2", "amx_bf16"), "cpu", "bf16-mixed", "auto"),
                          ("gpu", ("avx2",), "gpu", "bf16-mixed", "auto"),
                          ("ddp", ("avx2",), "gpu", "bf16-mixed", "ddp"),
                          ("ddp_cpu", ("avx512_bf16",), "cpu", "32-true", "ddp"),
                          ("multinode", ("avx512_bf16",), "auto", "32-true", "ddp")])
def test_hardware_options(hardware, flags, accelerator, precision, strategy, monkeypatch):
    """conf/hardware/<option>.yaml: the accelerator, precision and strategy each sets; hardware=cpu's precision
    follows the CPU's flags (cnnbench.hardware, docs/performance.md), here a CPU with the flags given."""
    from cnnbench import hardware as probe

    monkeypatch.setattr(probe, "cpu_flags", lambda: frozenset(flags))
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    cfg = compose_cfg("train", [f"hardware={hardware}"])
    assert cfg.trainer.accelerator == accelerator
    assert cfg.trainer.precision == precision
    assert cfg.hardware.strategy == strategy


def test_ddp_strategy_gets_timeout_and_backend():
    from lightning.pytorch.strategies import DDPStrategy

    from cnnbench.run import build_strategy

    cfg = compose_cfg("train", ["hardware=ddp_cpu", "hardware.ddp_timeout_s=123"])
    strategy = build_strategy(cfg)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._timeout.total_seconds() == 123
    assert strategy._process_group_backend == "gloo"
    assert build_strategy(compose_cfg("train", ["hardware=cpu"])) == "auto"


@pytest.mark.parametrize("command", ["train", "eval", "profile", "predict"])
def test_each_command_config_composes(command):
    extra = {"eval": ["ckpt_path=x.ckpt"], "predict": ["ckpt_path=x.ckpt", "image=a.jpg"]}.get(command, [])
    cfg = compose_cfg(command, extra)
    assert cfg.task == command


@pytest.mark.parametrize("command", ["train", "eval", "profile", "predict", "export", "report", "benchmark", "analyze",
                                     "stylize", "import-weights"])
def test_run_name_sets_the_run_dir_of_every_command(command):
    """`run_name=` gives `outputs/<task>/<run_name>`; without it a fresh timestamped dir. (benchmark.yaml inherits
    train.yaml: a second `hydra.run.dir` there once resolved, and cached, before `run_name=` was applied.)"""
    from hydra import compose, initialize_config_dir

    for name in ("first", "second"):  # the resolver caches: a second name in the same process must still count
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=command):
            cfg = compose(config_name=command, overrides=[f"run_name={command}-{name}"], return_hydra_config=True)
        assert cfg.hydra.run.dir == f"outputs/{cfg.task}/{command}-{name}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=command):
        cfg = compose(config_name=command, return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith(f"outputs/{cfg.task}/20")
