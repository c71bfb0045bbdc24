"""Weight averaging (Polyak / EMA) through Lightning's `WeightAveraging` callback.

GoogLeNet §6 uses Polyak averaging for the final model; the Inception-v4 paper (§4) evaluates "a running
average of the parameters"; EfficientNet's reference code keeps an EMA with decay 0.9999 and
`num_updates = global_step` (decay_t = min(decay, (1 + t) / (10 + t))) over the weights and the BN statistics.

Lightning's callback does the bookkeeping: validation runs on the averaged weights, every checkpoint written
during `fit` holds the averaged weights in `state_dict` and the raw ones in `current_model_state` (plus
`averaging_state`), and at the end of training the module holds the averaged weights. Testing a checkpoint
after fit evaluates its `state_dict`, i.e. the averaged weights (see `EMA.on_load_checkpoint`).
"""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import WeightAveraging

from cnnbench.errors import ConfigError


class EMADecay:
    """`avg_fn` for `torch.optim.swa_utils.AveragedModel`: θ̄ ← θ̄ + (1 − d)(θ − θ̄), with
    d = min(decay, (1 + n)/(10 + n)) when `warmup` (TF's ExponentialMovingAverage(num_updates=n)), else d = decay.

    Computed with tensors only, so a GPU run never waits on the host."""

    def __init__(self, decay: float, warmup: bool) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema.decay={decay}; valid: 0 ≤ decay < 1")
        self.decay, self.warmup = float(decay), bool(warmup)

    def effective(self, num_updates: torch.Tensor) -> torch.Tensor:
        n = num_updates.to(torch.float32)
        if not self.warmup:
            return torch.full_like(n, self.decay)
        return torch.clamp((1.0 + n) / (10.0 + n), max=self.decay)

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = self.effective(num_averaged).to(averaged.device)
        if not averaged.is_floating_point():  # e.g. BN's num_batches_tracked: follow the model
            return current.clone()
        return averaged + (current - averaged) * (1.0 - d).to(averaged.dtype)


class EMA(WeightAveraging):
    """Exponential moving average of the weights (and, with `use_buffers`, of BN's running statistics),
    updated every `every_n_steps` optimizer steps from `start_step` on."""

    def __init__(self, decay: float = 0.9999, warmup: bool = True, every_n_steps: int = 1, start_step: int = 0,
                 device: str | None = None, use_buffers: bool = True) -> None:
        if int(every_n_steps) < 1:
            raise ConfigError(f"ema.every_n_steps={every_n_steps}; valid: an integer ≥ 1")
        super().__init__(device=device, use_buffers=use_buffers, avg_fn=EMADecay(decay, warmup))
        self.decay, self.every_n_steps, self.start_step = float(decay), int(every_n_steps), int(start_step)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if step_idx is None:
            return False
        return step_idx >= self.start_step and (step_idx - self.start_step) % self.every_n_steps == 0

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Lightning's callback would load the raw weights (current_model_state) into the module whenever a
        # checkpoint is read; outside fit (trainer.test/validate on the best checkpoint) the module must keep
        # the averaged weights of state_dict, which is what gets evaluated.
        from lightning.pytorch.trainer.states import TrainerFn

        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


def build_averaging(cfg: dict[str, Any] | None) -> list:
    """The `ema:` node of train.yaml → [] or [EMA(...)]."""
    if not cfg or not cfg.get("enabled", False):
        return []
    return [EMA(decay=float(cfg.get("decay", 0.9999)), warmup=bool(cfg.get("warmup", True)),
                every_n_steps=int(cfg.get("every_n_steps", 1)), start_step=int(cfg.get("start_step", 0)),
                device=cfg.get("device"), use_buffers=bool(cfg.get("use_buffers", True)))]


__all__ = ["EMA", "EMADecay", "build_averaging"]
