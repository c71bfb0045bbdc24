"""A training run's record (results.json) and its one-line summary."""
from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig

from cnnbench.training.callbacks import NonFiniteLoss, StuckAtChance
from cnnbench.training.fit import Outcome
from cnnbench.training.monitors import RunSpeed


def _callback(trainer, kind):
    return next((cb for cb in trainer.callbacks if isinstance(cb, kind)), None)


def best_val(trainer) -> float | None:
    """The best val/acc1 the main checkpoint callback saw."""
    cb = trainer.checkpoint_callback
    if cb is not None and cb.monitor == "val/acc1" and cb.best_model_score is not None:
        return float(cb.best_model_score)
    return None


def run_results(cfg: DictConfig, trainer, dm, module, outcome: Outcome, ckpt_path: str | None, run_dir,
                start: float, global_batch: int) -> dict[str, Any]:
    """What the run did: accuracies, length, wall time, the learning rate and batch, skipped images and steps,
    its speed (training/monitors.py), why it stopped early and the stuck-at-chance warning."""
    test, last_loss = outcome.test_metrics, outcome.last_loss
    results = {
        "model": cfg.model.name, "data": str(cfg.data.name), "seed": int(cfg.seed),
        "test/acc1": float(test.get("test/acc1", float("nan"))),
        "test/acc5": float(test.get("test/acc5", float("nan"))),
        "val/acc1": best_val(trainer),
        "epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
        "wall_s": round(time.time() - start, 2),
        "checkpoint": outcome.best, "run_dir": str(run_dir),
        "lr_base": float(cfg.optimizer.lr), "lr_scaled": module.lr, "global_batch": global_batch,
        "skipped_images": dm.skipped_images, "skipped_steps": _callback(trainer, NonFiniteLoss).skipped,
        "train/loss_last": float(last_loss) if last_loss is not None else None,
        "n_train": len(dm.train_split), "n_test": len(dm.test_split),
        "resumed_from": ckpt_path,
    }
    if outcome.stopped:
        results["stopped"] = outcome.stopped
    speed = _callback(trainer, RunSpeed)
    summary = speed.summary() if speed is not None else None
    if summary is not None:
        results["speed"] = summary  # means over the run
    stuck = _callback(trainer, StuckAtChance)
    if stuck is not None and stuck.report is not None:
        results["stuck_at_chance"] = stuck.report  # the warning line and its numbers (docs/reliability.md)
    return results


def report_line(results: dict[str, Any]) -> str:
    """The line `train` ends with: where a signal stopped it, or the accuracies, length and run dir."""
    stopped = results.get("stopped")
    if isinstance(stopped, dict) and stopped["reason"].startswith("signal"):
        return (f"cnnbench: {results['model']} stopped by {stopped['reason'][7:]} at step {stopped['step']}; "
                f"checkpoint {stopped['checkpoint']}; rerun with resume=auto to continue")
    r = results
    val = f"{r['val/acc1']:.4f}" if r["val/acc1"] is not None else "n/a"
    return (f"cnnbench: {r['model']} on {r['data']} — test acc1 {r['test/acc1']:.4f}, acc5 {r['test/acc5']:.4f}, "
            f"best val acc1 {val}, {r['epochs']} epoch{'' if r['epochs'] == 1 else 's'} in {r['wall_s']:.0f} s → {r['run_dir']}")
