"""`cnnbench train`: compose model + data + optimizer + schedule + hardware into a Lightning run — build
(cnnbench.run), fit and test (training/fit.py), write results.json (training/results.py), one line."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from cnnbench.checkpoint import (
    check_compatible,
    load_checkpoint,
    record_of,
    remove_unfinished_writes,
    resume_checkpoint,
)
from cnnbench.hardware import (
    busy_cpu_note,
    check_devices,
    describe,
    fit_precision_to_model,
    machine_record,
    start_line,
)
from cnnbench.run import (
    build_datamodule,
    build_module,
    build_trainer,
    global_batch,
    in_multirun,
    resolve_init_from,
    resolve_paths,
)
from cnnbench.runtime import (
    PROCESS_START,
    check_run_dir,
    earlier_failure_records,
    estimate_checkpoint_bytes,
    is_rank_zero,
    resolve_run_dir,
    run_dir_lock,
    write_json,
)
from cnnbench.training.fit import fit_and_test
from cnnbench.training.loggers import finish_loggers
from cnnbench.training.recipe_callbacks import apply_init_from
from cnnbench.training.results import report_line, run_results


def train(cfg: DictConfig, run_dir: str | Path | None = None, callbacks: list | None = None) -> dict[str, Any]:
    """Run one training job; returns the results dict (also written to results.json by rank 0).

    `callbacks` adds Lightning callbacks (for in-process use, e.g. tests that stop a run early)."""
    # wall_s: the whole process for a single run (start-up included); per job in a multirun and in-process
    start = PROCESS_START if run_dir is None and not in_multirun() else time.time()
    run_dir = resolve_run_dir(run_dir)
    with run_dir_lock(run_dir):                                # one training job per run dir
        return _train(cfg, run_dir, start, callbacks)


def _train(cfg: DictConfig, run_dir: Path, start: float, callbacks: list | None) -> dict[str, Any]:
    check_devices(cfg)                                         # 0. a device request this machine can meet
    resolve_paths(cfg)                                         # 1. data and network
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    hardware = describe(cfg)                                   # the precision may depend on the network
    notes = [n for n in (fit_precision_to_model(cfg, hardware, module.model, str(cfg.model.name)),
                         busy_cpu_note(hardware)) if n]
    if notes:
        hardware["notes"] = notes                              # results.json keeps them
    if is_rank_zero():
        print(start_line(hardware), flush=True)
        for note in notes:
            print(note, flush=True)
    ckpt_path = _prepare(cfg, run_dir, dm, module)             # 2. init_from, resume point, run-dir checks
    has_val = dm.val_split is not None and len(dm.val_split) > 0
    trainer = build_trainer(cfg, run_dir, callbacks=list(callbacks or []), has_val=has_val)  # 3. the trainer
    failed = True
    try:
        outcome = fit_and_test(cfg, trainer, module, dm, ckpt_path, run_dir)  # 4. fit, then test the best weights
        results = run_results(cfg, trainer, dm, module, outcome, ckpt_path, run_dir, start, global_batch(cfg))
        results["hardware"] = hardware
        results["machine"] = machine_record()
        if trainer.is_global_zero:                             # 5. results.json and one line
            failures = earlier_failure_records(run_dir)       # an attempt before a resume
            if failures:
                results["earlier_failures"] = failures
            write_json(run_dir / "results.json", results)
            for failure in failures:                           # kept in results.json now
                (run_dir / failure["file"]).unlink(missing_ok=True)
            print(report_line(results), flush=True)
        failed = False
    finally:
        finish_loggers(trainer.loggers, failed)  # one W&B run per job, also when the job fails
    return results


def _prepare(cfg: DictConfig, run_dir: Path, dm, module) -> str | None:
    """Fine-tuning weights (`init_from=`), the checked checkpoint to resume from, no temporary file of a killed
    job's checkpoint write, and a run dir that can hold a checkpoint (an unwritable or full run dir is reported
    now, not at the first checkpoint)."""
    apply_init_from(resolve_init_from(cfg), module)  # a run dir → its best checkpoint
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), cfg.get("resume"), run_dir)  # resume: null | auto
    if ckpt_path:
        record = record_of(load_checkpoint(ckpt_path), ckpt_path)  # refuses non-weights_only files
        check_compatible(record, ckpt_path, cfg.model.name, dm.num_classes)
    if is_rank_zero():                                         # it holds the run dir's lock
        remove_unfinished_writes(run_dir)                      # a killed job's half-written checkpoint
    check_run_dir(run_dir, estimate_checkpoint_bytes(module))
    return ckpt_path


__all__ = ["train"]
