"""One training job's fit-then-test, with its failure records (docs/reliability.md): a signal stops at the end of
the batch with a checkpoint, a non-finite loss writes results.json with the reason, any other failure leaves
failed-rank<r>.json; and the DDP re-launch made to reach this same job."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict, read_write

from cnnbench.runtime import record_failure, write_json
from cnnbench.training.callbacks import NonFiniteLossError, Preemption, zoo_recipe

_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED")


@contextlib.contextmanager
def ddp_relaunch_context(cfg_task: str, run_dir: Path):
    """Make Lightning's re-launch of ranks 1…N-1 reach this same job.

    Lightning restarts extra ranks by re-running `sys.argv` plus `hydra.run.dir=<HydraConfig.run.dir>`.
    For a subcommand CLI under a multirun that would re-run the whole sweep in another directory, so
    for the duration of the job argv becomes `cnnbench <command> <this job's overrides>` and Hydra's
    run.dir the job's own output dir. Afterwards argv, Hydra's config and the DDP env are restored.
    """
    from hydra.core.hydra_config import HydraConfig

    saved_argv = list(sys.argv)
    saved_env = {k: os.environ.get(k) for k in _DDP_ENV}
    hc = HydraConfig.get() if HydraConfig.initialized() and "LOCAL_RANK" not in os.environ else None
    if hc is not None:
        sys.argv = [saved_argv[0], cfg_task, *hc.overrides.task]
        saved_dir = hc.run.dir
        with read_write(hc), open_dict(hc):
            hc.run.dir = str(run_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        if hc is not None:
            with read_write(hc), open_dict(hc):
                hc.run.dir = saved_dir
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def teardown_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def best_checkpoint(trainer) -> str | None:
    """The run's main checkpoint callback's best file (on val/acc1), else the first last.ckpt written."""
    cb = trainer.checkpoint_callback
    if cb is not None and cb.monitor == "val/acc1" and cb.best_model_path:
        return str(Path(cb.best_model_path).absolute())
    last = next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), None)
    return str(Path(last).absolute()) if last else None


@dataclass
class Outcome:
    """What fit-then-test left: the test metrics, the checkpoint they came from, why the run stopped early
    (a signal, an interrupt) and the last training loss."""
    test_metrics: dict[str, float] = field(default_factory=dict)
    best: str | None = None
    stopped: Any = None
    last_loss: Any = None


def fit_and_test(cfg: DictConfig, trainer, module, dm, ckpt_path: str | None, run_dir: Path) -> Outcome:
    """`trainer.fit`, then `trainer.test` on the best checkpoint — unless a signal stopped the run (its
    checkpoint is recorded instead)."""
    preempt = next(cb for cb in trainer.callbacks if isinstance(cb, Preemption))
    outcome = Outcome()
    with ddp_relaunch_context(str(cfg.get("task", "train")), run_dir):
        try:
            _fit(trainer, module, dm, ckpt_path, preempt)
            outcome.last_loss = trainer.callback_metrics.get("train/loss")
            if preempt.received:
                outcome.stopped = {"reason": f"signal {preempt.received}", "step": int(trainer.global_step),
                                   "checkpoint": preempt.saved, "resume": "rerun the same command with resume=auto"}
                outcome.best = preempt.saved
            else:
                outcome.stopped = "interrupted" if trainer.interrupted else None
                outcome.best = best_checkpoint(trainer)
                outcome.test_metrics = trainer.test(module, datamodule=dm, ckpt_path=outcome.best, verbose=False)[0]
        except NonFiniteLossError as err:
            record_nonfinite(cfg, trainer, err, ckpt_path, run_dir)
            raise
        except BaseException as err:  # any other failure (e.g. one DDP rank raising): say so in the run dir
            if not isinstance(err, SystemExit):
                record_failure(run_dir, int(trainer.global_rank), err, int(trainer.global_step))
            raise
        finally:
            teardown_distributed()
    return outcome


def _fit(trainer, module, dm, ckpt_path: str | None, preempt: Preemption) -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except SIGTERMException:
        preempt.received = preempt.received or "SIGTERM"


def record_nonfinite(cfg: DictConfig, trainer, err: Exception, ckpt_path: str | None, run_dir: Path) -> None:
    """results.json of a run stopped by a non-finite loss: the reason, the step, the last checkpoint and the
    zoo recipe that trains the model."""
    stopped = {"reason": "non-finite loss", "step": int(trainer.global_step), "message": str(err),
               "last_checkpoint": best_checkpoint(trainer), "recipe": zoo_recipe(str(cfg.model.name))}
    if trainer.is_global_zero:
        write_json(run_dir / "results.json", {"model": cfg.model.name, "data": str(cfg.data.name),
                                              "run_dir": str(run_dir), "stopped": stopped,
                                              "steps": int(trainer.global_step), "resumed_from": ckpt_path})
