"""Optimizers, weight-decay exclusions and per-iteration schedules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.training.optim import build_optimizer, build_scheduler, param_groups, scaled_lr


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("no_bn,no_bias,expected_no_decay", [(False, False, 0), (True, False, 2), (False, True, 2),
                                                             (True, True, 4)])
def test_no_decay_switches(no_bn, no_bias, expected_no_decay):
    groups = param_groups(_net(), 1e-4, no_bn, no_bias)
    no_decay = sum(len(g["params"]) for g in groups if g["weight_decay"] == 0.0)
    decay = sum(len(g["params"]) for g in groups if g["weight_decay"] > 0)
    assert no_decay == expected_no_decay
    assert decay + no_decay == 6


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adamw"])
def test_optimizers_build(name):
    opt = build_optimizer(_net(), {"name": name, "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9}, 0.1)
    assert opt.param_groups[0]["lr"] == 0.1


def test_unknown_optimizer_names_choices():
    with pytest.raises(ValueError, match="valid choices: sgd, rmsprop, adamw"):
        build_optimizer(_net(), {"name": "lamb", "lr": 0.1}, 0.1)


def _lrs(cfg, total=100, steps_per_epoch=10, lr=1.0):
    opt = torch.optim.SGD(_net().parameters(), lr=lr, momentum=0.9)
    sched = build_scheduler(opt, cfg, lr, total, steps_per_epoch)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_in_steps_and_epochs_agree():
    by_steps = _lrs({"name": "multistep", "milestones_steps": [30, 60], "gamma": 0.1})
    by_epochs = _lrs({"name": "multistep", "milestones_epochs": [3, 6], "gamma": 0.1})
    assert by_steps == by_epochs
    assert by_steps[29] == 1.0 and by_steps[30] == pytest.approx(0.1) and by_steps[60] == pytest.approx(0.01)


def test_cosine_with_warmup():
    lrs = _lrs({"name": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.0})
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5, abs=0.02)
    assert lrs[-1] < 0.01


def test_onecycle_peaks_at_lr():
    lrs = _lrs({"name": "onecycle", "pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4})
    assert lrs[0] == pytest.approx(1 / 25)
    assert max(lrs) == pytest.approx(1.0, rel=1e-3)
    assert lrs.index(max(lrs)) in (24, 25)
    assert lrs[-1] < 1e-3


def test_constant_and_fractional_warmup_epochs():
    lrs = _lrs({"name": "constant", "warmup_epochs": 0.5})
    assert lrs[4] == pytest.approx(1.0) and lrs[3] < 1.0 and lrs[50] == 1.0


def test_linear_lr_scaling():
    cfg = {"lr": 0.1, "scale_lr": "linear", "reference_batch": 256}
    assert scaled_lr(cfg, 512) == pytest.approx(0.2)
    assert scaled_lr({**cfg, "scale_lr": "none"}, 512) == 0.1
