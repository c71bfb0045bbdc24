"""`cnnbench train`: compose model + data + optimizer + schedule + hardware into a Lightning run."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from cnnbench.checkpoint import check_compatible, load_checkpoint, newest_loadable_checkpoint, record_of
from cnnbench.data import ImageDataModule
from cnnbench.errors import UserError
from cnnbench.hardware import check_devices, describe, machine_record, start_line
from cnnbench.run import build_datamodule, build_module, build_trainer, global_batch, resolve_paths
from cnnbench.runtime import (
    PROCESS_START,
    absolute,
    check_run_dir,
    estimate_checkpoint_bytes,
    record_failure,
    resolve_run_dir,
    write_json,
)
from cnnbench.training.callbacks import (
    NonFiniteLoss,
    NonFiniteLossError,
    Preemption,
    StuckAtChance,
    zoo_recipe,
)
from cnnbench.training.loggers import finish_loggers
from cnnbench.training.monitors import RunSpeed
from cnnbench.training.module import ClassificationModule

log = logging.getLogger("cnnbench")

_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED")


@contextlib.contextmanager
def _ddp_relaunch_context(cfg_task: str, run_dir: Path):
    """Make Lightning's re-launch of ranks 1…N-1 reach this same job.

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
    resume = cfg.get("resume")  # null or auto (cnnbench.config_schema)
    if ckpt:
        return absolute(str(ckpt))
    if resume == "auto":  # the newest loadable checkpoint of the run dir (also SLURM's hpc_ckpt_*.ckpt)
        return newest_loadable_checkpoint(run_dir)
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
    check_devices(cfg)                                         # 0. a device request this machine can meet
    hardware = describe(cfg)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        print(start_line(hardware), flush=True)
    dm, module = _build(cfg)                                   # 1. data and network
    ckpt_path = _prepare(cfg, run_dir, dm, module)             # 2. init_from, resume point, run-dir checks
    has_val = dm.val_split is not None and len(dm.val_split) > 0
    trainer = build_trainer(cfg, run_dir, callbacks=list(callbacks or []), has_val=has_val)  # 3. the trainer
    failed = True
    try:
        outcome = _fit_and_test(cfg, trainer, module, dm, ckpt_path, run_dir)  # 4. fit, then test the best weights
        results = _results(cfg, trainer, dm, module, outcome, ckpt_path, run_dir, start)  # 5. results.json
        results["hardware"] = hardware
        results["machine"] = machine_record()
        if trainer.is_global_zero:
            write_json(run_dir / "results.json", results)
            _report(results, outcome.stopped)
        failed = False
    finally:
        finish_loggers(trainer.loggers, failed)  # one W&B run per job, also when the job fails
    return results


def _build(cfg: DictConfig) -> tuple[ImageDataModule, ClassificationModule]:
    resolve_paths(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule(cfg)
    return dm, build_module(cfg, dm)


def _prepare(cfg: DictConfig, run_dir: Path, dm: ImageDataModule, module: ClassificationModule) -> str | None:
    """Fine-tuning weights (`init_from=`), the checked checkpoint to resume from, and a run dir that can
    hold a checkpoint (an unwritable or full run dir is reported now, not at the first checkpoint)."""
    _init_from(cfg, module)
    ckpt_path = _resolve_resume(cfg, run_dir)
    if ckpt_path:
        record = record_of(load_checkpoint(ckpt_path), ckpt_path)  # refuses non-weights_only files
        check_compatible(record, ckpt_path, cfg.model.name, dm.num_classes)
    check_run_dir(run_dir, estimate_checkpoint_bytes(module))
    return ckpt_path


@dataclass
class _Outcome:
    test_metrics: dict[str, float] = field(default_factory=dict)
    best: str | None = None
    stopped: Any = None
    last_loss: Any = None


def _fit_and_test(cfg: DictConfig, trainer: L.Trainer, module: ClassificationModule, dm: ImageDataModule,
                  ckpt_path: str | None, run_dir: Path) -> _Outcome:
    """`trainer.fit`, then `trainer.test` on the best checkpoint — unless a signal stopped the run (its
    checkpoint is recorded instead). A non-finite loss writes results.json with the reason and re-raises;
    any other failure leaves failed-rank<r>.json in the run dir."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    preempt = next(cb for cb in trainer.callbacks if isinstance(cb, Preemption))
    outcome = _Outcome()
    with _ddp_relaunch_context(str(cfg.get("task", "train")), run_dir):
        try:
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
            except SIGTERMException:
                preempt.received = preempt.received or "SIGTERM"
            outcome.last_loss = trainer.callback_metrics.get("train/loss")
            if preempt.received:
                outcome.stopped = {"reason": f"signal {preempt.received}", "step": int(trainer.global_step),
                                   "checkpoint": preempt.saved, "resume": "rerun the same command with resume=auto"}
                outcome.best = preempt.saved
            else:
                if trainer.interrupted:
                    outcome.stopped = "interrupted"
                outcome.best = _best_checkpoint(trainer)
                outcome.test_metrics = trainer.test(module, datamodule=dm, ckpt_path=outcome.best, verbose=False)[0]
        except NonFiniteLossError as err:
            _record_nonfinite(cfg, trainer, err, ckpt_path, run_dir)
            raise
        except BaseException as err:  # any other failure (e.g. one DDP rank raising): say so in the run dir
            if not isinstance(err, SystemExit):
                record_failure(run_dir, int(trainer.global_rank), err, int(trainer.global_step))
            raise
        finally:
            _teardown_distributed()
    return outcome


def _record_nonfinite(cfg: DictConfig, trainer: L.Trainer, err: Exception, ckpt_path: str | None,
                      run_dir: Path) -> None:
    stopped = {"reason": "non-finite loss", "step": int(trainer.global_step), "message": str(err),
               "last_checkpoint": _best_checkpoint(trainer), "recipe": zoo_recipe(str(cfg.model.name))}
    if trainer.is_global_zero:
        write_json(run_dir / "results.json", {"model": cfg.model.name, "data": str(cfg.data.name),
                                              "run_dir": str(run_dir), "stopped": stopped,
                                              "steps": int(trainer.global_step), "resumed_from": ckpt_path})


def _results(cfg: DictConfig, trainer: L.Trainer, dm: ImageDataModule, module: ClassificationModule,
             outcome: _Outcome, ckpt_path: str | None, run_dir: Path, start: float) -> dict[str, Any]:
    nonfinite = next(cb for cb in trainer.callbacks if isinstance(cb, NonFiniteLoss))
    test_metrics, last_loss = outcome.test_metrics, outcome.last_loss
    results = {
        "model": cfg.model.name,
        "data": str(cfg.data.name),
        "seed": int(cfg.seed),
        "test/acc1": float(test_metrics.get("test/acc1", float("nan"))),
        "test/acc5": float(test_metrics.get("test/acc5", float("nan"))),
        "val/acc1": _best_val(trainer),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "wall_s": round(time.time() - start, 2),
        "checkpoint": outcome.best,
        "run_dir": str(run_dir),
        "lr_base": float(cfg.optimizer.lr),
        "lr_scaled": module.lr,
        "global_batch": global_batch(cfg),
        "skipped_images": dm.skipped_images,
        "skipped_steps": nonfinite.skipped,
        "train/loss_last": float(last_loss) if last_loss is not None else None,
        "n_train": len(dm.train_split),
        "n_test": len(dm.test_split),
        "resumed_from": ckpt_path,
    }
    if outcome.stopped:
        results["stopped"] = outcome.stopped
    speed = next((cb for cb in trainer.callbacks if isinstance(cb, RunSpeed)), None)
    if speed is not None and speed.summary() is not None:
        results["speed"] = speed.summary()  # means over the run (training/monitors.py)
    stuck = next((cb for cb in trainer.callbacks if isinstance(cb, StuckAtChance)), None)
    if stuck is not None and stuck.report is not None:
        results["stuck_at_chance"] = stuck.report  # the warning line and its numbers (docs/reliability.md)
    return results


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
                         new_head=bool(cfg.get("init_new_head", True)),
                         model_cfg=OmegaConf.to_container(cfg.model, resolve=True))


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


__all__ = ["train"]
