"""A console to read: third-party noise we cannot fix at its source, silenced by its exact message.

- Lightning's "💡 Tip: … litlogger" advertisement (an INFO line on every Trainer) is dropped from every
  logging handler; the rest of Lightning's INFO lines (devices, precision, checkpoint restored) stay, in the
  console and in the job's .log file.
- Warnings raised inside libraries about their own internals (Lightning's pytree `LeafSpec` deprecation) and
  Lightning's note that a short run has fewer batches than `log_every_n_steps` are ignored.
- Lightning's warning that a mid-epoch checkpoint's "dataloader is not resumable" is ignored: Lightning looks for
  `state_dict` on the DataLoader only, while cnnbench keeps the epoch position in the data module's state (saved in
  every checkpoint) and its sampler skips exactly the batches already trained on (cnnbench.data.datamodule), so
  a mid-epoch resume trains on the same samples as an uninterrupted run.
- The best-checkpoint callback's warning that its `val/…` metric is missing, which Lightning gives at the end of
  an epoch that no validation closed (`trainer.max_steps` ending the run inside its first epoch): the run then
  has no best checkpoint, its summary says "best val acc1 n/a" and the test uses the last weights. Once a
  validation has run, Lightning raises on a missing key instead, so a `checkpoint.monitor` that names no logged
  metric still fails.
"""
from __future__ import annotations

import logging
import warnings

IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # lightning.pytorch.utilities._pytree on torch ≥ 2.10
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
    r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable.*",
    r"`ModelCheckpoint\(monitor='val/[\w/]+'\)` could not find the monitored key.*",
)
DROPPED_LOG_PREFIXES = ("💡 Tip:",)


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(DROPPED_LOG_PREFIXES)


def route_lightning_to_root() -> None:
    """Lightning logs through its own stderr handler with propagation off, so the job's .log file (Hydra's
    root file handler) never sees its lines. Where the root logger has handlers (inside a Hydra job), drop
    Lightning's handler and propagate: each line once in the console, and also in the .log file."""
    root = logging.getLogger()
    if not root.handlers:
        return
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("lightning", "lightning_fabric")]
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def quiet() -> None:
    """Install the filters (idempotent): on the handlers of the root logger and of Lightning's loggers."""
    route_lightning_to_root()
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("", "lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        for target in [logger, *logger.handlers]:
            if not any(isinstance(f, _DropAdvertisements) for f in target.filters):
                target.addFilter(_DropAdvertisements())


__all__ = ["quiet"]
