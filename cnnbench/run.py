"""How a run is built from a composed config — the one place every command gets its objects from.

    resolve_paths(cfg)                   user paths (data.root …) made absolute against the launch directory
    build_datamodule(cfg, …)             the loaded `ImageDataModule` of cfg.data + cfg.augmentation
    build_module(cfg, dm, lr=None)       the `ClassificationModule` (model, optimizer, schedule, loss)
    build_trainer(cfg, run_dir, …)       a `lightning.Trainer` with the standard loggers, callbacks and
                                         atomic checkpoint writes

Commands (`cnnbench/commands/`) use these and never each other; docs/architecture.md shows the layers.
"""
from __future__ import annotations

import glob
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from cnnbench.errors import UserError
from cnnbench.hardware import num_devices  # (also exported here: run.num_devices)
from cnnbench.runtime import absolute, is_rank_zero

RUN_MARKERS = ("results.json", "eval.json", "metrics.csv")  # a directory holding one of these is a run


# -- paths -------------------------------------------------------------------------------------------
def resolve_paths(cfg: DictConfig) -> DictConfig:
    """`data.root` made absolute against the directory cnnbench was started from (Hydra changes the
    working directory of a job); a missing or null root is left as it is. Returns `cfg`, changed in place."""
    if OmegaConf.select(cfg, "data.root") is not None:  # None when absent, null or missing (???)
        with open_dict(cfg):
            cfg.data.root = absolute(str(cfg.data.root))
    return cfg


def resolve_init_from(cfg: DictConfig) -> DictConfig:
    """`init_from=<run dir>` → that run's best checkpoint (the newest finished run below it: results.json with a
    checkpoint), said in one line; a checkpoint file is left as it is. Returns `cfg`, changed in place."""
    value = cfg.get("init_from")
    if not value or not Path(absolute(str(value))).is_dir():
        return cfg
    try:
        run_dir, ckpt = latest_finished_run([str(value)])
    except UserError:
        raise UserError(f"init_from={value} is a directory with no finished training run in it (results.json "
                        "naming its checkpoint); pass a run dir that finished, or a .ckpt file") from None
    if is_rank_zero():
        print(f"cnnbench train: init_from={value} — using {ckpt} (finished run {run_dir})", flush=True)
    with open_dict(cfg):
        cfg.init_from = ckpt
    return cfg


def checkpoint_paths(value: Any) -> list[str]:
    """`ckpt_path=a.ckpt` or `ckpt_path=[a.ckpt,b.ckpt]` → absolute paths."""
    if value is None or value == "":  # cfg.get / OmegaConf.select give None for a missing (???) value
        raise UserError("ckpt_path is required: ckpt_path=path/to.ckpt or ckpt_path=[a.ckpt,b.ckpt] (an ensemble)")
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    if not items:
        raise UserError("ckpt_path=[] names no checkpoint")
    return [absolute(str(p)) for p in items]


def find_runs(pattern: str, cwd: Path | None = None) -> list[Path]:
    """Run directories matched by `pattern` (a glob; `**` allowed; a relative one from `cwd` when given), or found
    below matched folders."""
    if cwd is not None and not Path(pattern).is_absolute():
        pattern = str(cwd / pattern)
    found: set[Path] = set()
    for match in glob.glob(pattern, recursive=True):
        p = Path(match)
        if p.is_file() and p.name in RUN_MARKERS:
            found.add(p.parent.resolve())
        elif p.is_dir():
            for marker in RUN_MARKERS:
                found.update(f.parent.resolve() for f in p.rglob(marker))
    return sorted(found)


def finished_runs(patterns: list[str], cwd: Path) -> list[Path]:
    """The run dirs holding results.json under each glob (relative ones from `cwd`), in the order given, each once."""
    found = [r for p in patterns for r in find_runs(p, cwd) if (r / "results.json").is_file()]
    return list(dict.fromkeys(found))


# -- data and model ----------------------------------------------------------------------------------
def model_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.model, resolve=True)  # type: ignore[return-value]


def build_datamodule(cfg: DictConfig, *, data: dict[str, Any] | None = None,
                     augmentation: dict[str, Any] | None = None, model_name: str | None = None):
    """The loaded data module. `data` / `augmentation` replace cfg.data / cfg.augmentation (eval and
    analyze read test images with no augmentation); `model_name` names the model whose `model_info`
    settles image size and normalisation when cfg has no model group (a checkpoint's model)."""
    from cnnbench.data import ImageDataModule
    from cnnbench.training.module import model_kwargs

    data = OmegaConf.to_container(cfg.data, resolve=True) if data is None else data
    augmentation = OmegaConf.to_container(cfg.augmentation, resolve=True) if augmentation is None else augmentation
    kwargs = None
    if model_name is None:
        model_name = str(cfg.model.name)
        kwargs = model_kwargs(model_config(cfg))
    return ImageDataModule(data, augmentation, model_name, seed=int(cfg.seed), model_kwargs=kwargs).load()


def build_module(cfg: DictConfig, dm, lr: float | None = None):
    """The LightningModule of cfg.model/optimizer/schedule/loss for the data of `dm`; `lr` defaults to
    `optimizer.lr` scaled to the global batch (`optimizer.scale_lr`)."""
    from cnnbench.data.transforms import training_geometry
    from cnnbench.training.module import ClassificationModule
    from cnnbench.training.optim import scaled_lr

    optimizer_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
    if lr is None:
        lr = scaled_lr(optimizer_cfg, global_batch(cfg))
    return ClassificationModule(
        model=model_config(cfg), num_classes=dm.num_classes, in_chans=dm.in_chans, normalization=dm.normalization,
        classes=dm.classes, image_size=dm.image_size, crop_pct=dm.crop_pct, data_name=str(cfg.data.name),
        data_config=data_record(cfg),
        optimizer=optimizer_cfg, schedule=OmegaConf.to_container(cfg.schedule, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True), lr=lr,
        channels_last=bool(cfg.hardware.get("channels_last", False)),
        augmentation=training_geometry(OmegaConf.to_container(cfg.augmentation, resolve=True), dm.image_size),
    )


DATA_RECORD_KEYS = ("name", "root", "image_size", "in_chans", "val_split", "mean_mode", "num_classes")


def data_record(cfg: DictConfig) -> dict[str, Any]:
    """The data config a checkpoint records, so that `eval` without `data=` reads the same dataset."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {k: data[k] for k in DATA_RECORD_KEYS if k in data}  # type: ignore[index]


def latest_finished_run(roots: list[str]) -> tuple[Path, str]:
    """(run dir, checkpoint) of the newest training run under `roots` that finished (results.json with a
    checkpoint, not stopped early); a one-line error when there is none."""
    candidates = []
    for root in roots:
        for results in Path(absolute(root)).rglob("results.json"):
            try:
                import json

                data = json.loads(results.read_text())
            except (OSError, ValueError):
                continue
            ckpt = data.get("checkpoint")
            if ckpt and not data.get("stopped") and Path(ckpt).is_file():
                candidates.append((results.stat().st_mtime, results.parent, str(ckpt)))
    if not candidates:
        raise UserError(f"ckpt_path is not given and no finished training run was found under {', '.join(roots)}; "
                        "pass ckpt_path=path/to.ckpt (or eval.latest_from=<dir of runs>)")
    _, run_dir, ckpt = max(candidates)
    return run_dir, ckpt


_ANNOUNCED: set[str] = set()  # checkpoints `latest_run_checkpoint` has named in this process


def latest_run_checkpoint(roots: list[str], command: str = "eval") -> str:
    """`latest_finished_run`'s checkpoint for a command without ckpt_path=, saying which run it took — once per
    process and checkpoint: the CLI's check before Hydra and the command itself (and every job of an
    `eval -m` sweep) may each ask."""
    run_dir, ckpt = latest_finished_run(roots)
    if ckpt not in _ANNOUNCED:
        _ANNOUNCED.add(ckpt)
        print(f"cnnbench {command}: ckpt_path not given — using {ckpt} (newest finished run {run_dir})", flush=True)
    return ckpt


def data_for_checkpoint(cfg: DictConfig, record: dict[str, Any]) -> tuple[DictConfig, str]:
    """The data config eval/analyze use for a checkpoint, and one line saying where it came from.

    `data.name=checkpoint` (no `data=` given): the dataset group the checkpoint recorded, with its recorded
    values (root, image size, validation split …) and then every non-null `data.<key>=` of the command line.
    Otherwise cfg.data as given; the line says when it is not the dataset the checkpoint was trained on."""
    from cnnbench.config_paths import find_config

    recorded = dict(record.get("data_config") or {})
    trained_on = recorded.get("name") or record.get("data") or "?"
    if str(cfg.data.name) != "checkpoint":
        note = "" if trained_on == str(cfg.data.name) else \
            f"data={cfg.data.name} from the command line (the checkpoint was trained on {trained_on})"
        return cfg.data, note
    if not recorded:
        raise UserError(f"this checkpoint does not record its data config (trained on {trained_on!r}); "
                        f"pass data=<name>, e.g. data={trained_on}")
    group = find_config("data", str(recorded["name"]))
    if group is None:
        raise UserError(f"the checkpoint's data {recorded['name']!r} is not a data group here; pass data=<name>")
    data = OmegaConf.merge(OmegaConf.load(group), recorded,
                           {k: v for k, v in OmegaConf.to_container(cfg.data).items() if v is not None and k != "name"})
    return data, f"data={recorded['name']} from the checkpoint" + (f" (root {recorded['root']})"
                                                                     if recorded.get("root") else "")


# -- batch and devices -------------------------------------------------------------------------------
def global_batch(cfg: DictConfig) -> int:
    """devices × nodes × batch × accumulation; with `hardware.target_global_batch`, the accumulation that
    reaches the paper's global batch on fewer devices (written to cfg.trainer.accumulate_grad_batches)."""
    from cnnbench.training.optim import accumulation_for, global_batch_size

    devices, nodes = num_devices(cfg.trainer), int(cfg.trainer.get("num_nodes", 1))
    target_batch = cfg.hardware.get("target_global_batch")
    if target_batch:
        with open_dict(cfg):
            cfg.trainer.accumulate_grad_batches = accumulation_for(target_batch,
                                                                   int(cfg.data.batch_size) * devices * nodes)
    return global_batch_size(int(cfg.data.batch_size), devices, nodes, int(cfg.trainer.get("accumulate_grad_batches", 1)))


# -- trainer -----------------------------------------------------------------------------------------
def build_strategy(cfg: DictConfig) -> Any:
    """DDP with the configured backend and process-group timeout when more than one process runs."""
    if cfg.trainer.get("strategy") is not None:
        return cfg.trainer.strategy
    hw = cfg.hardware
    processes = num_devices(cfg.trainer) * int(cfg.trainer.get("num_nodes", 1))
    if hw.strategy == "ddp" or (hw.strategy == "auto" and processes > 1):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend=hw.get("backend"), timeout=timedelta(seconds=int(hw.ddp_timeout_s)))
    return "auto"


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """run_dir/metrics.csv always; a W&B run too with `logger=wandb` — one per job: in a multirun it is named
    after the job (`run_name` or the job number) and grouped by the sweep dir, and `train` finishes it when
    the job ends (`cnnbench.training.loggers.finish_loggers`), so the next job starts its own run."""
    from cnnbench.training.loggers import RunDirCSVLogger

    loggers: list = [RunDirCSVLogger(str(run_dir))]
    if cfg.logger.name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        w = cfg.logger.wandb
        name, group = cfg.get("run_name") or run_dir.name, w.get("group")
        sweep = _sweep_job()
        if sweep is not None:
            sweep_dir, job = sweep
            name, group = cfg.get("run_name") or f"job{job}", group or sweep_dir
        loggers.append(
            WandbLogger(
                project=w.project, entity=w.entity, save_dir=str(run_dir), mode=w.mode, name=name, group=group,
                tags=list(w.tags or []), config=OmegaConf.to_container(cfg, resolve=True),
            )
        )
    return loggers


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`)."""
    return _sweep_job() is not None


def _sweep_job() -> tuple[str, int] | None:
    """(sweep dir, job number) inside a Hydra multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    return str(hc.sweep.dir), int(hc.job.num)


def build_callbacks(cfg: DictConfig, run_dir: Path, has_val: bool) -> list:
    """Progress (a bar, or a periodic line under a pipe), checkpointing (best on `checkpoint.monitor`, last,
    every N steps), the reliability callbacks (docs/reliability.md), the learning-rate and speed monitors
    (docs/observability.md) and the recipe's own (weight averaging, conditional warm-up)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from cnnbench.testing.faults import FaultInjection
    from cnnbench.training.callbacks import GradNorm, NonFiniteLoss, Preemption, RNGState, StuckAtChance
    from cnnbench.training.monitors import RunSpeed, lr_monitor, progress_callback
    from cnnbench.training.recipe_callbacks import build_recipe_callbacks

    ckpt_dir = run_dir / "checkpoints"
    callbacks: list = []
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(progress_callback())  # a bar on a terminal, a line every 30 s under a pipe
    # every checkpoint callback writes into one folder and shares its last.ckpt: overwritten, never versioned as
    # last-v1.ckpt (Lightning's version counter would keep a second full copy)
    checkpoint_in_run_dir = partial(ModelCheckpoint, dirpath=ckpt_dir, auto_insert_metric_name=False,
                                    enable_version_counter=False)
    if has_val and cfg.checkpoint.monitor:
        callbacks.append(checkpoint_in_run_dir(
            filename="best-epoch{epoch:03d}-acc{val/acc1:.4f}", monitor=cfg.checkpoint.monitor, mode="max",
            save_last=bool(cfg.checkpoint.save_last)))
    else:
        callbacks.append(checkpoint_in_run_dir(save_last=True, save_top_k=0))
    every = cfg.checkpoint.get("every_n_steps")
    if every:
        callbacks.append(checkpoint_in_run_dir(filename="step{step:08d}", every_n_train_steps=int(every),
                                               save_top_k=1, monitor="step", mode="max", save_last=True))
    fault = FaultInjection.from_env()  # CNNBENCH_FAULT: the fault tests only
    if fault is not None:
        callbacks.append(fault)
    callbacks += [RNGState(), Preemption(ckpt_dir), NonFiniteLoss(str(cfg.loss.get("on_nonfinite", "stop"))),
                  lr_monitor(), RunSpeed()]  # the schedule and the speed in every log (training/monitors.py)
    if cfg.get("log_grad_norm"):
        callbacks.append(GradNorm())
    stuck = cfg.get("stuck_at_chance") or {}
    if stuck.get("enabled", True):
        callbacks.append(StuckAtChance(after_steps=int(stuck.get("after_steps", 300)),
                                       window=int(stuck.get("window", 50))))
    callbacks.extend(build_recipe_callbacks(cfg))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, *, callbacks: list | tuple = (), has_val: bool = True,
                  **overrides: Any):
    """A Lightning Trainer from cfg.trainer (any `trainer.<name>=…` key), the strategy of cfg.hardware,
    the standard loggers and callbacks (`callbacks` appended) and atomic checkpoint writes. `overrides`
    replace trainer arguments (the benchmark pins one device); without a validation split no
    validation loop runs."""
    import lightning as L

    from cnnbench.checkpoint import AtomicCheckpointIO
    from cnnbench.console import quiet

    quiet()  # Lightning's advertisement and library-internal warnings (cnnbench/console.py)

    kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    kwargs.pop("strategy", None)
    if not has_val:
        kwargs["limit_val_batches"] = 0
    kwargs.update(overrides)
    if "strategy" not in kwargs:
        kwargs["strategy"] = build_strategy(cfg)
    return L.Trainer(
        **kwargs,
        logger=build_loggers(cfg, run_dir),
        callbacks=build_callbacks(cfg, run_dir, has_val) + list(callbacks),
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the data module shards per rank itself (seeded, resumable)
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],  # temp file + fsync + rename
    )


__all__ = ["in_multirun", "resolve_paths", "resolve_init_from", "checkpoint_paths", "find_runs", "finished_runs",
           "build_datamodule", "build_module", "build_trainer", "build_strategy", "build_loggers", "build_callbacks", "global_batch", "num_devices", "model_config"]
