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
from cnnbench.models.layers import BATCH_NORMS

_NORM_TYPES = (*BATCH_NORMS, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


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


# Saved in every scheduler state that build_scheduler returns (an LRScheduler's state_dict is its __dict__): the
# schedule's name and the total steps it was built for, which the torch schedulers' own states do not hold
# (multistep and staircase exponential are both a MultiStepLR; a MultiStepLR has no total).
SCHEDULE_TAG = "cnnbench_schedule"
# the per-step compositions: a continued run replays them to the saved step (resume_at)
REPLAYED = ("constant", "multistep", "exponential", "cosine", "poly")
_LR = torch.optim.lr_scheduler


class SmoothExponential:
    """gamma^((t + offset) / period) at step t of the phase after a warm-up of `offset` steps: TF's
    exponential_decay(staircase=False) counted on the global step. Hand-written (a LambdaLR factor) because when
    SequentialLR hands over, torch's ExponentialLR starts again from the base LR, where this phase must start at
    gamma^(offset/period); without a warm-up build_scheduler uses ExponentialLR(gamma^(1/period))."""

    def __init__(self, gamma: float, period: float, offset: int) -> None:
        self.gamma, self.period, self.offset = gamma, period, offset

    def __call__(self, t: int) -> float:
        return self.gamma ** ((t + self.offset) / self.period)


class PolyToFloor:
    """min_ratio + (1 − min_ratio)·(1 − min(1, t/steps))^power: Caffe's poly decay ending at min_lr_ratio·lr.
    Hand-written (a LambdaLR factor) because torch's PolynomialLR always decays to 0: it has no floor; with
    min_lr_ratio 0 build_scheduler uses PolynomialLR."""

    def __init__(self, steps: int, power: float, min_ratio: float) -> None:
        self.steps, self.power, self.min_ratio = steps, power, min_ratio

    def __call__(self, t: int) -> float:
        return self.min_ratio + (1 - self.min_ratio) * (1 - min(1.0, t / self.steps)) ** self.power


def _warmup(optimizer: torch.optim.Optimizer, steps: int, start_ratio: float) -> _LR.LinearLR:
    """Linear warm-up, factor start + (1 − start)·(t + 1)/steps at step t < steps (1 at its last step; `start` is
    warmup_start_ratio). LinearLR runs from start_factor at step 0 to end_factor at total_iters, so the same ramp
    is start_factor = start + (1 − start)/steps over total_iters = steps − 1."""
    if not 0.0 <= start_ratio <= 1.0:
        raise ConfigError(f"schedule.warmup_start_ratio={start_ratio}: expected a number in [0, 1]")
    return _LR.LinearLR(optimizer, start_factor=start_ratio + (1.0 - start_ratio) / steps, end_factor=1.0,
                        total_iters=steps - 1)


def _decay_steps(period: float, total: int) -> list[int]:
    """The steps t ≤ total at which floor(t / period) goes up, once per unit (float-exact: each is the first t
    whose floor(t / period) reaches k)."""
    steps, t = [], 1
    for k in range(1, int(total / period) + 2):
        t = max(t, math.ceil(k * period) - 1)
        while math.floor(t / period) < k:
            t += 1
        if t > total:
            break
        steps.append(t)
    return steps


def _milestones(cfg: dict[str, Any], steps_per_epoch: float) -> list[int]:
    """multistep's milestones in optimizer steps (`milestones_steps`, else `milestones_epochs` × steps per epoch)."""
    if cfg.get("milestones_steps") is not None:
        return [int(m) for m in cfg["milestones_steps"]]
    return [int(round(float(m) * steps_per_epoch)) for m in cfg.get("milestones_epochs") or []]


def _decay(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], lr: float, total: int, warmup: int,
           steps_per_epoch: float):
    """The phase after a warm-up of `warmup` steps (its step 0 is global step `warmup`); None for constant.
    multistep and exponential count on the global step (TF's exponential_decay on global_step), so their
    milestones are shifted by the warm-up and those inside it all apply when the phase starts (its closed form);
    cosine and poly run from the end of the warm-up to `total`. Equal to the earlier hand-written factor up to
    step `total` (a run's last); past it staircase exponential stops decaying and cosine would rise again."""
    name, gamma = cfg["name"], float(cfg.get("gamma", 0.1))
    if name == "multistep":
        return _LR.MultiStepLR(optimizer, [max(0, m - warmup) for m in _milestones(cfg, steps_per_epoch)], gamma)
    if name == "exponential":
        period = _period(cfg, "decay_every", steps_per_epoch)
        if period <= 0:
            raise ConfigError("schedule=exponential needs schedule.decay_every_epochs or schedule.decay_every_steps > 0")
        if not bool(cfg.get("staircase", True)):
            if warmup == 0:
                return _LR.ExponentialLR(optimizer, gamma ** (1.0 / period))
            return _LR.LambdaLR(optimizer, SmoothExponential(gamma, period, warmup))
        if warmup == 0 and period.is_integer():
            return _LR.StepLR(optimizer, int(period), gamma)
        return _LR.MultiStepLR(optimizer, [max(0, t - warmup) for t in _decay_steps(period, total)], gamma)
    span, min_ratio, power = max(1, total - warmup), float(cfg.get("min_lr_ratio", 0.0)), float(cfg.get("power", 1.0))
    if name == "cosine":  # every parameter group starts at `lr` (param_groups sets no group LR)
        return _LR.CosineAnnealingLR(optimizer, T_max=span, eta_min=min_ratio * lr)
    if name == "poly":
        if min_ratio == 0.0:
            return _LR.PolynomialLR(optimizer, total_iters=span, power=power)
        return _LR.LambdaLR(optimizer, PolyToFloor(span, power, min_ratio))
    return None


def _per_step(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], lr: float, total: int,
              steps_per_epoch: float):
    """Warm-up (LinearLR), then the decay, chained by SequentialLR at the end of the warm-up."""
    warmup = _steps(cfg, "warmup", steps_per_epoch)
    decay = _decay(optimizer, cfg, lr, total, max(0, warmup), steps_per_epoch)
    if warmup <= 0:
        return decay or _LR.ConstantLR(optimizer, factor=1.0, total_iters=0)  # factor 1: the LR as it is
    ramp = _warmup(optimizer, warmup, float(cfg.get("warmup_start_ratio", 0.0)))
    if decay is None:  # constant: LinearLR stays at its end factor 1 after the ramp
        return ramp
    return _LR.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


def planned_steps(state: dict[str, Any]) -> int | None:
    """The total steps a saved scheduler state was built for: its SCHEDULE_TAG, one-cycle's total_steps, or the
    total of an `LRFactor` state (the LambdaLR of checkpoints written before the torch compositions)."""
    if isinstance(state.get(SCHEDULE_TAG), dict):
        total = state[SCHEDULE_TAG].get("total_steps")
        return None if total is None else int(total)
    if "total_steps" in state:
        return int(state["total_steps"])
    lambdas = state.get("lr_lambdas") or []
    if lambdas and isinstance(lambdas[0], dict) and "total" in lambdas[0]:
        return int(lambdas[0]["total"])
    return None


def saved_schedule_name(state: dict[str, Any]) -> str | None:
    """The `schedule.name` a saved scheduler state was built from (None when it cannot tell): its SCHEDULE_TAG, or
    for older checkpoints the OneCycleLR / ReduceLROnPlateau keys or the name in the LRFactor state."""
    if isinstance(state.get(SCHEDULE_TAG), dict):
        return state[SCHEDULE_TAG].get("name")
    if "_schedule_phases" in state or "total_steps" in state:
        return "onecycle"
    if "patience" in state and "cooldown" in state:
        return "plateau"
    lambdas = state.get("lr_lambdas") or []
    if lambdas and isinstance(lambdas[0], dict):
        return lambdas[0].get("name")
    return None


def saved_position(state: dict[str, Any]) -> int:
    """The optimizer steps a saved per-step scheduler had taken (SequentialLR's and every LRScheduler's last_epoch)."""
    return int(state["last_epoch"])


def keep_position_only(state: dict[str, Any]) -> dict[str, Any]:
    """A saved one-cycle state without its horizon, so that loading it into a freshly built OneCycleLR keeps the
    fresh one's shape (built for this run's total steps) and takes only the position (step count, last LR);
    OneCycleLR computes each step's LR from the step count alone. A run continued past its first length
    (`trainer.max_epochs` raised) thus follows one-cycle rebuilt for the new total from the current step
    (docs/recipes.md); with the same length nothing changes. The per-step compositions (REPLAYED) are resumed by
    resume_at instead; ReduceLROnPlateau has no horizon and is left whole. A LambdaLR state (an older constant)
    keeps its position, its `lr_lambdas` set to None so the fresh factors stay."""
    state.pop("total_steps", None)       # OneCycleLR
    state.pop("_schedule_phases", None)  # OneCycleLR's phase ends, derived from total_steps
    state.pop(SCHEDULE_TAG, None)        # the fresh scheduler's own name and total
    if "lr_lambdas" in state:
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state


def resume_at(scheduler, rebuild, position: int) -> None:
    """Put a freshly built per-step `scheduler` at `position` steps: replay a twin, built by `rebuild(optimizer)`
    on a shadow optimizer with the same initial LRs, for `position` steps, load its state and set the optimizer's
    LRs to its. Replayed because torch's chainable schedulers compute each LR from the previous one: the
    continued run follows the schedule of this run's config and length from the saved step (docs/recipes.md,
    "Continuing a run"), and with nothing changed the same LRs, bit for bit, as a run never stopped. About 3 µs a
    step (a few seconds for a million)."""
    groups = scheduler.optimizer.param_groups
    shadow = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": g.get("initial_lr", g["lr"])}
                              for g in groups])
    twin = rebuild(shadow)
    shadow.step()  # torch warns when a scheduler steps before its optimizer
    for _ in range(position):
        twin.step()
    scheduler.load_state_dict(twin.state_dict())
    for group, lr in zip(groups, twin.get_last_lr(), strict=True):
        group["lr"] = lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], lr: float, total_steps: int,
                    steps_per_epoch: float):
    """The LR schedule of `cfg`, stepped once per optimizer step (plateau: once per validation), made of torch's
    schedulers: a LinearLR warm-up chained by SequentialLR to MultiStepLR, StepLR, ExponentialLR,
    CosineAnnealingLR or PolynomialLR (a LambdaLR factor only where none is equal: SmoothExponential after a
    warm-up, PolyToFloor), ConstantLR, OneCycleLR or ReduceLROnPlateau. Tagged with SCHEDULE_TAG."""
    name, total = cfg["name"], max(1, int(total_steps))
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")
    if name == "plateau":
        # ÷factor when the monitored metric stops improving (He et al. §3.4: "divided by 10 when the error
        # plateaus"); monitoring val/acc1 in mode max is monitoring the validation error in mode min.
        return _LR.ReduceLROnPlateau(
            optimizer, mode=str(cfg.get("mode", "max")), factor=float(cfg.get("factor", 0.1)),
            patience=int(cfg.get("patience_epochs", 5)), threshold=float(cfg.get("threshold", 1e-4)),
            min_lr=float(cfg.get("min_lr", 0.0)), cooldown=int(cfg.get("cooldown_epochs", 0)))
    if name == "onecycle" and total_steps < 3:  # too short for a warm-up and an anneal phase: constant LR
        name, scheduler = "constant", _LR.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "onecycle":
        # each phase needs at least one step (OneCycleLR divides by the phase length)
        pct = min(max(float(cfg.get("pct_start", 0.25)), 1.5 / total_steps), 1.0 - 1.5 / total_steps)
        scheduler = _LR.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct,
            div_factor=float(cfg.get("div_factor", 25.0)), final_div_factor=float(cfg.get("final_div_factor", 1e4)),
            cycle_momentum=bool(cfg.get("cycle_momentum", True)) and "momentum" in optimizer.defaults
            and optimizer.defaults.get("momentum", 0) > 0,
        )
    else:
        scheduler = _per_step(optimizer, cfg, lr, total, steps_per_epoch)
    setattr(scheduler, SCHEDULE_TAG, {"name": name, "total_steps": total})
    return scheduler
