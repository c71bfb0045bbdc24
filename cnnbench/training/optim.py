"""Optimizers (`conf/optimizer/`) and per-iteration learning-rate schedules (`conf/schedule/`)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("onecycle", "cosine", "multistep", "constant")

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn: bool, no_decay_bias: bool) -> list[dict]:
    """Split parameters so BN parameters and/or biases get no weight decay (two separate switches)."""
    decay, no_decay = [], []
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            skip = (is_norm and no_decay_bn) or (not is_norm and name == "bias" and no_decay_bias)
            (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    name = cfg["name"]
    groups = param_groups(model, float(cfg.get("weight_decay", 0.0)), bool(cfg.get("no_decay_bn", False)),
                          bool(cfg.get("no_decay_bias", False)))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg.get("momentum", 0.0)),
                               nesterov=bool(cfg.get("nesterov", False)))
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=float(cfg.get("alpha", 0.99)), eps=float(cfg.get("eps", 1e-8)),
                                   momentum=float(cfg.get("momentum", 0.0)))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                 eps=float(cfg.get("eps", 1e-8)))
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def scaled_lr(cfg: dict[str, Any], global_batch: int) -> float:
    """Linear scaling (Goyal et al. 2017): lr × global_batch / reference_batch when scale_lr=linear."""
    lr = float(cfg["lr"])
    mode = cfg.get("scale_lr", "none") or "none"
    if mode == "none":
        return lr
    if mode == "linear":
        return lr * global_batch / float(cfg.get("reference_batch", global_batch))
    raise ValueError(f"optimizer.scale_lr={mode!r}; valid choices: linear, none")


def _steps(cfg: dict[str, Any], key: str, steps_per_epoch: float) -> int:
    """`<key>_steps` if given, else `<key>_epochs` × steps per epoch (fractional epochs allowed)."""
    steps = cfg.get(f"{key}_steps")
    if steps is not None:
        return int(steps)
    return int(round(float(cfg.get(f"{key}_epochs", 0) or 0) * steps_per_epoch))


class LRFactor:
    """Multiplier of the base LR at optimizer step `t` (picklable, plain state)."""

    def __init__(self, name: str, total_steps: int, warmup: int, milestones: list[int], gamma: float,
                 min_ratio: float) -> None:
        self.name, self.total, self.warmup = name, max(1, total_steps), warmup
        self.milestones, self.gamma, self.min_ratio = sorted(milestones), gamma, min_ratio

    def __call__(self, t: int) -> float:
        if self.warmup > 0 and t < self.warmup:
            return (t + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            return self.gamma ** sum(t >= m for m in self.milestones)
        if self.name == "cosine":
            progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        raise ValueError(self.name)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], lr: float, total_steps: int,
                    steps_per_epoch: float) -> torch.optim.lr_scheduler.LRScheduler:
    name = cfg["name"]
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(1, total_steps), pct_start=float(cfg.get("pct_start", 0.25)),
            div_factor=float(cfg.get("div_factor", 25.0)), final_div_factor=float(cfg.get("final_div_factor", 1e4)),
            cycle_momentum=bool(cfg.get("cycle_momentum", True)) and "momentum" in optimizer.defaults
            and optimizer.defaults.get("momentum", 0) > 0,
        )
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")
    milestones = []
    if name == "multistep":
        if cfg.get("milestones_steps") is not None:
            milestones = [int(m) for m in cfg["milestones_steps"]]
        else:
            milestones = [int(round(float(m) * steps_per_epoch)) for m in cfg.get("milestones_epochs") or []]
    factor = LRFactor(name, total_steps, _steps(cfg, "warmup", steps_per_epoch), milestones,
                      float(cfg.get("gamma", 0.1)), float(cfg.get("min_lr_ratio", 0.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
