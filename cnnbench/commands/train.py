"""`cnnbench train`: compose model + data + optimizer + schedule + hardware into a Lightning run."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from cnnbench import reliability
from cnnbench.checkpoint import check_compatible, load_checkpoint, record_of
from cnnbench.data import ImageDataModule
from cnnbench.runtime import PROCESS_START, UserError, absolute, resolve_run_dir, write_json
from cnnbench.training.module import ClassificationModule, model_kwargs
from cnnbench.training.optim import scaled_lr

log = logging.getLogger("cnnbench")

_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED")


def _num_devices(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.get("devices", 1)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if devices in ("auto", -1, "-1"):
        return max(1, gpus) if accelerator != "cpu" else 1
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    if isinstance(devices, str):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return int(devices)


def build_strategy(cfg: DictConfig) -> Any:
    """DDP with the configured backend and process-group timeout when more than one process runs."""
    if cfg.trainer.get("strategy") is not None:
        return cfg.trainer.strategy
    hw = cfg.hardware
    processes = _num_devices(cfg.trainer) * int(cfg.trainer.get("num_nodes", 1))
    if hw.strategy == "ddp" or (hw.strategy == "auto" and processes > 1):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend=hw.get("backend"), timeout=timedelta(seconds=int(hw.ddp_timeout_s)))
    if hw.strategy not in ("auto", "ddp"):
        raise UserError(f"hardware.strategy={hw.strategy!r}; valid choices: auto, ddp")
    return "auto"


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    from cnnbench.training.loggers import RunDirCSVLogger

    loggers: list = [RunDirCSVLogger(str(run_dir))]  # run_dir/metrics.csv, always
    name = cfg.logger.name
    if name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        w = cfg.logger.wandb
        loggers.append(
            WandbLogger(
                project=w.project, entity=w.entity, save_dir=str(run_dir), mode=w.mode,
                name=cfg.get("run_name") or run_dir.name, tags=list(w.tags or []),
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        )
    elif name not in ("csv", "none"):
        raise UserError(f"logger={name!r}; valid choices: wandb, csv, none")
    return loggers


def build_callbacks(cfg: DictConfig, run_dir: Path, has_val: bool) -> list:
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

    ckpt_dir = run_dir / "checkpoints"
    callbacks: list = []
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    if has_val and cfg.checkpoint.monitor:
        callbacks.append(ModelCheckpoint(
            dirpath=ckpt_dir, filename="best-epoch{epoch:03d}-acc{val/acc1:.4f}", monitor=cfg.checkpoint.monitor,
            mode="max", save_last=bool(cfg.checkpoint.save_last), auto_insert_metric_name=False,
        ))
    else:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0))
    every = cfg.checkpoint.get("every_n_steps")
    if every:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:08d}", every_n_train_steps=int(every),
                                         save_top_k=1, monitor="step", mode="max", save_last=True,
                                         auto_insert_metric_name=False))
    # reliability (docs/reliability.md): RNG states in checkpoints, SIGTERM/SIGUSR1 → save and stop,
    # NaN/Inf loss → stop or skip, and (tests only) CNNBENCH_FAULT injection
    fault = reliability.FaultInjection.from_env()
    if fault is not None:
        callbacks.append(fault)
    callbacks += [reliability.RNGState(), reliability.Preemption(ckpt_dir),
                  reliability.NonFiniteLoss(str(cfg.loss.get("on_nonfinite", "stop")))]
    from cnnbench.training.recipe_callbacks import build_recipe_callbacks

    callbacks.extend(build_recipe_callbacks(cfg))  # ema: (weight averaging), conditional_warmup:
    return callbacks


@contextlib.contextmanager
def _ddp_relaunch_context(cfg_task: str, run_dir: Path):
    """Make Lightning's re-launch of ranks 1…N-1 reach this same job (pitfalls.md §1–2).

    Lightning restarts extra ranks by re-running `sys.argv` plus `hydra.run.dir=<HydraConfig.run.dir>`.
    For a subcommand CLI under a multirun that would re-run the whole sweep in another directory, so
    for the duration of the job argv becomes `cnnbench <command> <this job's overrides>` and Hydra's
    run.dir the job's own output dir. Afterwards argv, Hydra's config and the DDP env are restored.
    """
    from hydra.core.hydra_config import HydraConfig

    saved_argv = list(sys.argv)
    saved_env = {k: os.environ.get(k) for k in _DDP_ENV}
    patched = False
    if HydraConfig.initialized() and "LOCAL_RANK" not in os.environ:
        hc = HydraConfig.get()
        overrides = [o for o in hc.overrides.task]
        sys.argv = [saved_argv[0], cfg_task, *overrides]
        saved_dir = hc.run.dir
        with read_write(hc), open_dict(hc):
            hc.run.dir = str(run_dir)
        patched = True
    try:
        yield
    finally:
        sys.argv = saved_argv
        if patched:
            with read_write(hc), open_dict(hc):
                hc.run.dir = saved_dir
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _resolve_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    ckpt = cfg.get("ckpt_path")
    resume = cfg.get("resume")
    if resume not in (None, "auto"):
        raise UserError(f"resume={resume!r}; valid choices: auto (or leave unset)")
    if ckpt:
        return absolute(str(ckpt))
    if resume == "auto":  # the newest loadable checkpoint of the run dir (also SLURM's hpc_ckpt_*.ckpt)
        return reliability.newest_loadable_checkpoint(run_dir)
    return None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def train(cfg: DictConfig, run_dir: str | Path | None = None, callbacks: list | None = None) -> dict[str, Any]:
    """Run one training job; returns the results dict (also written to results.json by rank 0).

    `callbacks` adds Lightning callbacks (for in-process use, e.g. tests that stop a run early)."""
    # wall_s: the whole process for a single run (start-up included); per job in a multirun and in-process
    start = PROCESS_START if run_dir is None and not _in_multirun() else time.time()
    run_dir = resolve_run_dir(run_dir)
    with open_dict(cfg):
        cfg.data.root = absolute(cfg.data.root) if cfg.data.get("root") not in (None, "???") else cfg.data.root
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    dm = ImageDataModule(
        OmegaConf.to_container(cfg.data, resolve=True), OmegaConf.to_container(cfg.augmentation, resolve=True),
        cfg.model.name, seed=int(cfg.seed), model_kwargs=model_kwargs(OmegaConf.to_container(cfg.model, resolve=True)),
    ).load()

    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    trainer_kwargs.pop("strategy", None)
    global_batch = _global_batch(cfg, trainer_kwargs)
    optimizer_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
    lr = scaled_lr(optimizer_cfg, global_batch)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = ClassificationModule(
        model=model_cfg, num_classes=dm.num_classes, in_chans=dm.in_chans, normalization=dm.normalization,
        classes=dm.classes, image_size=dm.image_size, crop_pct=dm.crop_pct, data_name=str(cfg.data.name),
        optimizer=optimizer_cfg, schedule=OmegaConf.to_container(cfg.schedule, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True), lr=lr,
        channels_last=bool(cfg.hardware.get("channels_last", False)),
    )

    _init_from(cfg, module)

    ckpt_path = _resolve_resume(cfg, run_dir)
    if ckpt_path:
        record = record_of(load_checkpoint(ckpt_path), ckpt_path)  # refuses non-weights_only files
        check_compatible(record, ckpt_path, cfg.model.name, dm.num_classes)

    # an unwritable or full run dir is reported now, not at the first checkpoint
    reliability.check_run_dir(run_dir, reliability.estimate_checkpoint_bytes(module))

    has_val = dm.val_split is not None and len(dm.val_split) > 0
    if not has_val:
        trainer_kwargs["limit_val_batches"] = 0
    all_callbacks = build_callbacks(cfg, run_dir, has_val) + list(callbacks or [])
    trainer = L.Trainer(
        **trainer_kwargs,
        strategy=build_strategy(cfg),
        logger=build_loggers(cfg, run_dir),
        callbacks=all_callbacks,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the data module shards per rank itself (seeded, resumable)
        enable_model_summary=False,
        plugins=[reliability.AtomicCheckpointIO()],  # temp file + fsync + rename
    )
    preempt = next(cb for cb in all_callbacks if isinstance(cb, reliability.Preemption))
    nonfinite = next(cb for cb in all_callbacks if isinstance(cb, reliability.NonFiniteLoss))
    stopped = None
    test_metrics: dict[str, float] = {}
    best = None
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    with _ddp_relaunch_context(str(cfg.get("task", "train")), run_dir):
        try:
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
            except SIGTERMException:
                preempt.received = preempt.received or "SIGTERM"
            last_loss = trainer.callback_metrics.get("train/loss")
            if preempt.received:
                stopped = {"reason": f"signal {preempt.received}", "step": int(trainer.global_step),
                           "checkpoint": preempt.saved, "resume": "rerun the same command with resume=auto"}
                best = preempt.saved
            else:
                if trainer.interrupted:
                    stopped = "interrupted"
                best = _best_checkpoint(trainer)
                test_metrics = trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
        except reliability.NonFiniteLossError as err:
            stopped = {"reason": "non-finite loss", "step": int(trainer.global_step), "message": str(err),
                       "last_checkpoint": _best_checkpoint(trainer)}
            if trainer.is_global_zero:
                write_json(run_dir / "results.json", {"model": cfg.model.name, "data": str(cfg.data.name),
                                                      "run_dir": str(run_dir), "stopped": stopped,
                                                      "steps": int(trainer.global_step), "resumed_from": ckpt_path})
            raise
        except BaseException as err:  # any other failure (e.g. one DDP rank raising): say so in the run dir
            if not isinstance(err, SystemExit):
                reliability.record_failure(run_dir, int(trainer.global_rank), err, int(trainer.global_step))
            raise
        finally:
            _teardown_distributed()

    results = {
        "model": cfg.model.name,
        "data": str(cfg.data.name),
        "test/acc1": float(test_metrics.get("test/acc1", float("nan"))),
        "test/acc5": float(test_metrics.get("test/acc5", float("nan"))),
        "val/acc1": _best_val(trainer),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "wall_s": round(time.time() - start, 2),
        "checkpoint": best,
        "run_dir": str(run_dir),
        "lr_base": float(optimizer_cfg["lr"]),
        "lr_scaled": lr,
        "global_batch": global_batch,
        "skipped_images": dm.skipped_images,
        "skipped_steps": nonfinite.skipped,
        "train/loss_last": float(last_loss) if last_loss is not None else None,
        "n_train": len(dm.train_split),
        "n_test": len(dm.test_split),
        "resumed_from": ckpt_path,
    }
    if stopped:
        results["stopped"] = stopped
    if trainer.is_global_zero:
        write_json(run_dir / "results.json", results)
        _report(results, stopped)
    return results


def _global_batch(cfg: DictConfig, trainer_kwargs: dict[str, Any]) -> int:
    """devices × nodes × batch × accumulation; with `hardware.target_global_batch`, the accumulation that
    reaches the paper's global batch on fewer devices (set in trainer_kwargs and cfg)."""
    per_step = int(cfg.data.batch_size) * _num_devices(cfg.trainer) * int(cfg.trainer.get("num_nodes", 1))
    target_batch = cfg.hardware.get("target_global_batch")
    if target_batch:
        from cnnbench.training.optim import accumulation_for

        try:
            accumulate = accumulation_for(target_batch, per_step)
        except ValueError as e:
            raise UserError(str(e)) from None
        trainer_kwargs["accumulate_grad_batches"] = accumulate
        with open_dict(cfg):
            cfg.trainer.accumulate_grad_batches = accumulate
    return per_step * int(cfg.trainer.get("accumulate_grad_batches", 1))


def _init_from(cfg: DictConfig, module: ClassificationModule) -> None:
    """Fine-tuning: weights (averaged when present) from a checkpoint, a new head (`init_from=`)."""
    if (cfg.get("recipe") or {}).get("requires_init_from") and not cfg.get("init_from"):
        raise UserError("this recipe fine-tunes a trained network: give init_from=<path to a cnnbench .ckpt>")
    if not cfg.get("init_from"):
        return
    from cnnbench.training.recipe_callbacks import init_from_checkpoint

    if cfg.get("ckpt_path"):
        raise UserError("init_from= and ckpt_path= exclude each other: init_from starts a new run from "
                        "weights, ckpt_path resumes a run")
    init_from_checkpoint(module.model, absolute(str(cfg.init_from)), str(cfg.model.name),
                         new_head=bool(cfg.get("init_new_head", True)))


def _report(results: dict[str, Any], stopped: Any) -> None:
    if isinstance(stopped, dict) and stopped["reason"].startswith("signal"):
        print(f"cnnbench: {results['model']} stopped by {stopped['reason'][7:]} at step {stopped['step']}; "
              f"checkpoint {stopped['checkpoint']}; rerun with resume=auto to continue", flush=True)
    else:
        _summary_line(results)


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = None
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint):
            if cb.best_model_path and cb.monitor == "val/acc1":
                return str(Path(cb.best_model_path).absolute())
            if cb.last_model_path and best is None:
                best = str(Path(cb.last_model_path).absolute())
    return best


def _best_val(trainer: L.Trainer) -> float | None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor == "val/acc1" and cb.best_model_score is not None:
            return float(cb.best_model_score)
    return None


def _teardown_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _summary_line(r: dict[str, Any]) -> None:
    val = f"{r['val/acc1']:.4f}" if r["val/acc1"] is not None else "n/a"
    print(
        f"cnnbench: {r['model']} on {r['data']} — test acc1 {r['test/acc1']:.4f}, acc5 {r['test/acc5']:.4f}, "
        f"best val acc1 {val}, {r['epochs']} epochs in {r['wall_s']:.0f} s → {r['run_dir']}",
        flush=True,
    )


__all__ = ["train", "build_strategy", "model_kwargs"]
