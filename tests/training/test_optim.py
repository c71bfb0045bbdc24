"""Optimizers, weight-decay exclusions and per-iteration schedules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.training.optim import (
    RMSpropTF,
    accumulation_for,
    build_optimizer,
    build_scheduler,
    global_batch_size,
    param_groups,
    scaled_lr,
)


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


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "rmsprop_tf", "adamw"])
def test_optimizers_build(name):
    opt = build_optimizer(_net(), {"name": name, "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9}, 0.1)
    assert opt.param_groups[0]["lr"] == 0.1


def test_unknown_optimizer_names_choices():
    with pytest.raises(ValueError, match="valid choices: sgd, rmsprop, adamw, rmsprop_tf"):
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


# -- rmsprop_tf ---------------------------------------------------------------------------------------


def _three_steps(opt_factory, grads=(1.0, 2.0, -1.0)):
    theta = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = opt_factory([theta])
    out = []
    for g in grads:
        theta.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(float(theta.detach()))
    return out


def test_rmsprop_tf_matches_hand_computed_three_steps():
    # lr 0.1, decay 0.9, momentum 0.9, ε 1.0 (Inception-v4 §4); θ0 = 1, ms0 = 1, mom0 = 0; gradients 1, 2, −1.
    # step 1: ms = .9·1 + .1·1 = 1.0;   mom = 0.1·1/√2.0                 = 0.0707106781;  θ = 0.9292893219
    # step 2: ms = .9·1 + .1·4 = 1.3;   mom = .9·0.0707106781 + 0.2/√2.3 = 0.1955157050;  θ = 0.7337736169
    # step 3: ms = .9·1.3 + .1 = 1.27;  mom = .9·0.1955157050 − 0.1/√2.27 = 0.1095918033; θ = 0.6241818136
    got = _three_steps(lambda ps: RMSpropTF(ps, lr=0.1, decay=0.9, momentum=0.9, eps=1.0))
    assert got == pytest.approx([0.9292893219, 0.7337736169, 0.6241818136], abs=1e-9)
    # torch's RMSprop (ε outside the root, ms from 0, lr outside the buffer) lands elsewhere
    torch_rms = _three_steps(lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.9, momentum=0.9, eps=1.0))
    assert abs(torch_rms[-1] - got[-1]) > 1e-3


def test_rmsprop_tf_lr_lives_in_the_momentum_buffer():
    # after an LR cut, TF's buffer still carries lr_old·… terms: the next step is not simply rescaled
    theta = nn.Parameter(torch.tensor([0.0]))
    opt = RMSpropTF([theta], lr=1.0, decay=0.9, momentum=0.9, eps=1.0)
    theta.grad = torch.tensor([1.0])
    opt.step()
    opt.param_groups[0]["lr"] = 0.0
    before = float(theta.detach())
    opt.step()
    assert float(theta.detach()) - before == pytest.approx(-0.9 * (1.0 / 2.0 ** 0.5), rel=1e-6)


def test_rmsprop_tf_coupled_weight_decay_and_config():
    net = _net()
    opt = build_optimizer(net, {"name": "rmsprop_tf", "lr": 0.1, "decay": 0.9, "momentum": 0.0, "eps": 1e-3,
                                "weight_decay": 0.5, "no_decay_bn": True}, 0.1)
    assert isinstance(opt, RMSpropTF) and opt.defaults["eps"] == 1e-3
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.5]
    theta = nn.Parameter(torch.tensor([2.0]))
    opt = RMSpropTF([theta], lr=0.1, decay=0.9, momentum=0.0, eps=1.0, weight_decay=0.5)
    theta.grad = torch.tensor([0.0])
    opt.step()  # g = 0 + 0.5·2 = 1; ms = 1.0; step = 0.1·1/√2
    assert float(theta.detach()) == pytest.approx(2.0 - 0.1 / 2.0 ** 0.5)


# -- schedules ----------------------------------------------------------------------------------------


def test_exponential_fractional_epochs_staircase():
    # EfficientNet: ×0.97 every 2.4 epochs; at 10 steps/epoch the decay period is 24 steps
    lrs = _lrs({"name": "exponential", "gamma": 0.97, "decay_every_epochs": 2.4}, total=100)
    assert lrs[23] == 1.0 and lrs[24] == pytest.approx(0.97) and lrs[47] == pytest.approx(0.97)
    assert lrs[48] == pytest.approx(0.97 ** 2) and lrs[99] == pytest.approx(0.97 ** 4)


def test_exponential_with_warmup_counts_global_step():
    # 5 warmup epochs then 0.97^floor(step/24): the first post-warmup LR is already 0.97² (Tan & Le 2019 §5.2)
    lrs = _lrs({"name": "exponential", "gamma": 0.97, "decay_every_epochs": 2.4, "warmup_epochs": 5}, total=100)
    assert lrs[0] == pytest.approx(1 / 50) and lrs[49] == pytest.approx(1.0)
    assert lrs[50] == pytest.approx(0.97 ** 2)


def test_exponential_inception_and_googlenet_steps():
    inc = _lrs({"name": "exponential", "gamma": 0.94, "decay_every_steps": 20}, total=60)
    assert inc[19] == 1.0 and inc[20] == pytest.approx(0.94) and inc[59] == pytest.approx(0.94 ** 2)
    smooth = _lrs({"name": "exponential", "gamma": 0.5, "decay_every_steps": 10, "staircase": False}, total=20)
    assert smooth[5] == pytest.approx(0.5 ** 0.5)


def test_poly_and_missing_decay_period():
    lrs = _lrs({"name": "poly", "power": 0.5}, total=100)
    assert lrs[0] == 1.0 and lrs[75] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay_every_epochs"):
        _lrs({"name": "exponential", "gamma": 0.9})


def test_plateau_divides_by_ten_on_stalled_val_accuracy():
    opt = torch.optim.SGD(_net().parameters(), lr=0.1, momentum=0.9)
    sched = build_scheduler(opt, {"name": "plateau", "factor": 0.1, "patience_epochs": 1, "mode": "max"}, 0.1,
                            100, 10)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for acc in (0.5, 0.6, 0.6):
        sched.step(acc)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.step(0.6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_cifar_multistep_at_32k_48k_in_steps():
    opt = torch.optim.SGD(_net().parameters(), lr=0.1)
    sched = build_scheduler(opt, {"name": "multistep", "milestones_steps": [32000, 48000], "gamma": 0.1}, 0.1,
                            64000, 391)
    lrs = []
    for _ in range(48001):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[31999] == 0.1 and lrs[32000] == pytest.approx(0.01) and lrs[48000] == pytest.approx(0.001)


# -- batch arithmetic ---------------------------------------------------------------------------------


def test_linear_scaling_arithmetic_for_recipes():
    # EfficientNet: 0.256 at 4096 → 0.016 at 256 (0.016 × B/256; docs/recipes.md)
    eff = {"lr": 0.256, "scale_lr": "linear", "reference_batch": 4096}
    assert scaled_lr(eff, 256) == pytest.approx(0.016)
    assert scaled_lr(eff, global_batch_size(64, 2, 1, 8)) == pytest.approx(0.256 * 1024 / 4096)


def test_accumulation_reaches_target_global_batch():
    assert accumulation_for(4096, 128 * 8) == 4
    assert accumulation_for(None, 64) == 1
    assert accumulation_for(256, 256) == 1
    with pytest.raises(ValueError, match="target_global_batch=1000"):
        accumulation_for(1000, 64)


def test_batch_norms_name_every_batchnorm_of_torch_nn():
    # the public classes stand for torch's private _BatchNorm base (weight decay exclusion, bn overrides)
    from torch.nn.modules.batchnorm import _BatchNorm

    from cnnbench.models.layers import BATCH_NORMS

    torch_bns = {c for c in vars(nn).values() if isinstance(c, type) and issubclass(c, _BatchNorm)}
    assert torch_bns == set(BATCH_NORMS)
    assert not any(issubclass(c, BATCH_NORMS) for c in (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d))
