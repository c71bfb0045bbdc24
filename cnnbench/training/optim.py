"""Optimizers (`conf/optimizer/`) and learning-rate schedules (`conf/schedule/`).

Every schedule except `plateau` steps once per optimizer step; lengths are given in `*_steps` or `*_epochs`
(fractional epochs allowed) and converted with the run's optimizer steps per epoch.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cnnbench.choices import OPTIMIZERS, SCHEDULES
from cnnbench.errors import ConfigError

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
    if not no_decay:
        return [{"params": decay, "weight_decay": weight_decay}]
    # named, so the learning-rate monitor logs lr/decay and lr/no_decay (training/monitors.py)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp with TensorFlow-1 semantics (the Inception-v3/v4 and EfficientNet recipes; docs/recipes.md).

    Per parameter, with gradient g (plus coupled L2: g ← g + weight_decay·θ):

        ms  ← decay·ms + (1 − decay)·g²          ms starts at 1, not 0
        mom ← momentum·mom + lr·g / √(ms + ε)    ε inside the square root; lr inside the buffer
        θ   ← θ − mom

    Hand-written: torch.optim.RMSprop differs on all three points and no installed library provides this.
    """

    def __init__(self, params, lr: float = 0.01, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or not 0.0 <= decay < 1.0 or momentum < 0:
            raise ValueError(f"invalid rmsprop_tf settings: lr={lr}, decay={decay}, momentum={momentum}, eps={eps}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, mu, eps, wd = (group[k] for k in ("lr", "decay", "momentum", "eps", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("rmsprop_tf does not support sparse gradients")
                if wd:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if mu > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                ms = state["square_avg"]
                ms.mul_(rho).addcmul_(g, g, value=1.0 - rho)
                update = g / ms.add(eps).sqrt_()
                if mu > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(mu).add_(update, alpha=lr)
                    p.sub_(buf)
                else:
                    p.sub_(update, alpha=lr)
        return loss


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
    if name == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, decay=float(cfg.get("decay", 0.9)), momentum=float(cfg.get("momentum", 0.9)),
                         eps=float(cfg.get("eps", 1.0)))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                 eps=float(cfg.get("eps", 1e-8)))
    raise ConfigError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def global_batch_size(batch_size: int, devices: int, num_nodes: int, accumulate: int) -> int:
    """Images per optimizer step: per-device batch × devices × nodes × accumulated batches."""
    return int(batch_size) * int(devices) * int(num_nodes) * int(accumulate)


def accumulation_for(target_global_batch: int | None, per_step_batch: int) -> int:
    """Gradient accumulation that reaches `target_global_batch` with `per_step_batch` images per forward pass
    over all processes (hardware.target_global_batch). Must divide exactly, so the LR scaling stays honest."""
    if not target_global_batch:
        return 1
    target = int(target_global_batch)
    if target < per_step_batch or target % per_step_batch:
        raise ConfigError(
            f"hardware.target_global_batch={target} is not a multiple of batch_size × devices × nodes = "
            f"{per_step_batch}; choose a target divisible by {per_step_batch} (or change data.batch_size)")
    return target // per_step_batch


def scaled_lr(cfg: dict[str, Any], global_batch: int) -> float:
    """Linear scaling (Goyal et al. 2017): lr × global_batch / reference_batch when scale_lr=linear."""
    lr = float(cfg["lr"])
    mode = cfg.get("scale_lr", "none") or "none"
    if mode == "none":
        return lr
    if mode == "linear":
        return lr * global_batch / float(cfg.get("reference_batch", global_batch))
    raise ConfigError(f"optimizer.scale_lr={mode!r}; valid choices: linear, none")


def _steps(cfg: dict[str, Any], key: str, steps_per_epoch: float) -> int:
    """`<key>_steps` if given, else `<key>_epochs` × steps per epoch (fractional epochs allowed)."""
    steps = cfg.get(f"{key}_steps")
    if steps is not None:
        return int(steps)
    return int(round(float(cfg.get(f"{key}_epochs", 0) or 0) * steps_per_epoch))


def _period(cfg: dict[str, Any], key: str, steps_per_epoch: float) -> float:
    """Like _steps but keeps fractions (2.4 epochs × 390.6 steps is not a whole number of steps)."""
    steps = cfg.get(f"{key}_steps")
    if steps is not None:
        return float(steps)
    return float(cfg.get(f"{key}_epochs", 0) or 0) * steps_per_epoch


class LRFactor:
    """Multiplier of the base LR at optimizer step `t` (picklable, plain state)."""

    def __init__(self, name: str, total_steps: int, warmup: int, milestones: list[int], gamma: float,
                 min_ratio: float, decay_period: float = 0.0, staircase: bool = True, power: float = 1.0,
                 warmup_start: float = 0.0) -> None:
        self.name, self.total, self.warmup = name, max(1, total_steps), warmup
        self.milestones, self.gamma, self.min_ratio = sorted(milestones), gamma, min_ratio
        self.decay_period, self.staircase, self.power = decay_period, staircase, power
        self.warmup_start = warmup_start

    def __call__(self, t: int) -> float:
        if self.warmup > 0 and t < self.warmup:
            return self.warmup_start + (1.0 - self.warmup_start) * (t + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            return self.gamma ** sum(t >= m for m in self.milestones)
        if self.name == "exponential":
            # Counted on the global step, warmup included (as TF's exponential_decay on global_step).
            periods = t / self.decay_period if self.decay_period > 0 else 0.0
            return self.gamma ** (math.floor(periods) if self.staircase else periods)
        progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
        if self.name == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.name == "poly":
            return self.min_ratio + (1 - self.min_ratio) * (1 - progress) ** self.power
        raise ValueError(self.name)


def planned_steps(state: dict[str, Any]) -> int | None:
    """The total steps a saved scheduler state was built for (one-cycle, or an `LRFactor` schedule)."""
    if "total_steps" in state:
        return int(state["total_steps"])
    lambdas = state.get("lr_lambdas") or []
    if lambdas and isinstance(lambdas[0], dict) and "total" in lambdas[0]:
        return int(lambdas[0]["total"])
    return None


def saved_schedule_name(state: dict[str, Any]) -> str | None:
    """The `schedule.name` a saved scheduler state was built from (None when it cannot tell)."""
    if "_schedule_phases" in state or "total_steps" in state:
        return "onecycle"
    if "patience" in state and "cooldown" in state:
        return "plateau"
    lambdas = state.get("lr_lambdas") or []
    if lambdas and isinstance(lambdas[0], dict):
        return lambdas[0].get("name")
    return None


def keep_position_only(state: dict[str, Any]) -> dict[str, Any]:
    """A saved scheduler state without its horizon, so that loading it into a freshly built scheduler keeps the
    fresh one's shape (built for this run's total steps) and takes only the position (step count, last LR).
    A run continued past its first length (`trainer.max_epochs` raised) thus follows one-cycle, cosine or poly
    rebuilt for the new total from the current step (docs/recipes.md); with the same length nothing changes.
    ReduceLROnPlateau has no horizon and is left whole."""
    state.pop("total_steps", None)       # OneCycleLR
    state.pop("_schedule_phases", None)  # OneCycleLR's phase ends, derived from total_steps
    if "lr_lambdas" in state:            # LambdaLR: None keeps the fresh LRFactor (its total, warm-up, milestones)
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], lr: float, total_steps: int,
                    steps_per_epoch: float):
    """A per-step LambdaLR (or OneCycleLR), or ReduceLROnPlateau for `plateau` (stepped per validation)."""
    name = cfg["name"]
    if name == "onecycle" and total_steps < 3:  # too short for a warm-up and an anneal phase: constant LR
        return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor("constant", total_steps, 0, [], 1.0, 0.0))
    if name == "onecycle":
        # each phase needs at least one step (OneCycleLR divides by the phase length)
        pct = min(max(float(cfg.get("pct_start", 0.25)), 1.5 / total_steps), 1.0 - 1.5 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct,
            div_factor=float(cfg.get("div_factor", 25.0)), final_div_factor=float(cfg.get("final_div_factor", 1e4)),
            cycle_momentum=bool(cfg.get("cycle_momentum", True)) and "momentum" in optimizer.defaults
            and optimizer.defaults.get("momentum", 0) > 0,
        )
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")
    if name == "plateau":
        # ÷factor when the monitored metric stops improving (He et al. §3.4: "divided by 10 when the error
        # plateaus"); monitoring val/acc1 in mode max is monitoring the validation error in mode min.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=str(cfg.get("mode", "max")), factor=float(cfg.get("factor", 0.1)),
            patience=int(cfg.get("patience_epochs", 5)), threshold=float(cfg.get("threshold", 1e-4)),
            min_lr=float(cfg.get("min_lr", 0.0)), cooldown=int(cfg.get("cooldown_epochs", 0)))
    milestones = []
    if name == "multistep":
        if cfg.get("milestones_steps") is not None:
            milestones = [int(m) for m in cfg["milestones_steps"]]
        else:
            milestones = [int(round(float(m) * steps_per_epoch)) for m in cfg.get("milestones_epochs") or []]
    decay_period = _period(cfg, "decay_every", steps_per_epoch) if name == "exponential" else 0.0
    if name == "exponential" and decay_period <= 0:
        raise ConfigError("schedule=exponential needs schedule.decay_every_epochs or schedule.decay_every_steps > 0")
    factor = LRFactor(name, total_steps, _steps(cfg, "warmup", steps_per_epoch), milestones,
                      float(cfg.get("gamma", 0.1)), float(cfg.get("min_lr_ratio", 0.0)), decay_period=decay_period,
                      staircase=bool(cfg.get("staircase", True)), power=float(cfg.get("power", 1.0)),
                      warmup_start=float(cfg.get("warmup_start_ratio", 0.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
