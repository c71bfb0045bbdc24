"""metrics.csv in the run dir, kept across resumes; W&B runs finished at the end of each job.

Lightning's CSVLogger deletes an existing metrics.csv when its directory is reused; a resumed run
(`resume=auto`, SLURM requeue) would lose the curves of the first part. This writer appends instead.
"""
from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class RunDirCSVLogger(CSVLogger):
    """`<run dir>/metrics.csv`, appended to when the run dir is reused."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(save_dir=run_dir, name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def finish_loggers(loggers, failed: bool) -> None:
    """Finish the W&B run of a job (exit code 1 when it failed): wandb keeps one global run per process, so
    without this the next job of a multirun (or Optuna trial) would log into this job's run."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            import wandb

            wandb.finish(exit_code=1 if failed else 0)
            logger._experiment = None
