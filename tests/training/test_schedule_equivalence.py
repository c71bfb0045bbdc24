"""The torch compositions of build_scheduler give, step for step, the LRs of the hand-written LambdaLR factor they
replaced (`LRFactor`, frozen below as it was: the behaviour being preserved), for every per-step schedule of
conf/schedule/, the variants the recipes use and the recipes themselves; checkpoints written with the old
LambdaLR state still resume."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnbench.training.optim import (
    REPLAYED,
    build_scheduler,
    keep_position_only,
    param_groups,
    planned_steps,
    resume_at,
    saved_position,
    saved_schedule_name,
)
from tests.helpers import CONF


# -- the reference: cnnbench/training/optim.py before the torch compositions, copied verbatim --------------------
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


def _steps(cfg, key, steps_per_epoch):
    steps = cfg.get(f"{key}_steps")
    if steps is not None:
        return int(steps)
    return int(round(float(cfg.get(f"{key}_epochs", 0) or 0) * steps_per_epoch))


def _period(cfg, key, steps_per_epoch):
    steps = cfg.get(f"{key}_steps")
    if steps is not None:
        return float(steps)
    return float(cfg.get(f"{key}_epochs", 0) or 0) * steps_per_epoch


def old_scheduler(optimizer, cfg, total_steps, steps_per_epoch):
    """The LambdaLR that build_scheduler returned for a per-step schedule (and one-cycle under 3 steps)."""
    name = cfg["name"]
    if name == "onecycle":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor("constant", total_steps, 0, [], 1.0, 0.0))
    milestones = []
    if name == "multistep":
        if cfg.get("milestones_steps") is not None:
            milestones = [int(m) for m in cfg["milestones_steps"]]
        else:
            milestones = [int(round(float(m) * steps_per_epoch)) for m in cfg.get("milestones_epochs") or []]
    decay_period = _period(cfg, "decay_every", steps_per_epoch) if name == "exponential" else 0.0
    factor = LRFactor(name, total_steps, _steps(cfg, "warmup", steps_per_epoch), milestones,
                      float(cfg.get("gamma", 0.1)), float(cfg.get("min_lr_ratio", 0.0)), decay_period=decay_period,
                      staircase=bool(cfg.get("staircase", True)), power=float(cfg.get("power", 1.0)),
                      warmup_start=float(cfg.get("warmup_start_ratio", 0.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
# -- end of the reference ----------------------------------------------------------------------------------------


def _optimizer(lr=0.4):
    """Two parameter groups (decay / no_decay), as a run with no_decay_bn has."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    return torch.optim.SGD(param_groups(net, 1e-4, True, False), lr=lr, momentum=0.9)


def _lrs(make, steps, lr=0.4):
    """The LRs of both groups (flat: step 0's two, step 1's two …) before each of `steps` optimizer steps and
    after the last, with warnings as errors."""
    opt = _optimizer(lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.extend(g["lr"] for g in opt.param_groups)
            opt.step()
            sched.step()
        out.extend(g["lr"] for g in opt.param_groups)
    return out


def _assert_same(cfg, total, steps_per_epoch, lr=0.4, label=""):
    new = _lrs(lambda o: build_scheduler(o, cfg, lr, total, steps_per_epoch), total, lr)
    old = _lrs(lambda o: old_scheduler(o, cfg, total, steps_per_epoch), total, lr)
    assert new == pytest.approx(old, rel=1e-9, abs=0.0), (label, cfg, total, steps_per_epoch)
    return new


def _conf(name, **overrides):
    return {**OmegaConf.to_container(OmegaConf.load(CONF / "schedule" / f"{name}.yaml")), **overrides}


VARIANTS = [
    _conf("constant"), _conf("constant", warmup_steps=7), _conf("constant", warmup_epochs=0.5),
    _conf("constant", warmup_steps=12, warmup_start_ratio=0.1), _conf("constant", warmup_steps=1),
    _conf("multistep"), _conf("multistep", milestones_epochs=[3, 6]),
    _conf("multistep", milestones_steps=[30, 60], gamma=0.2), _conf("multistep", milestones_steps=[0, 45, 45]),
    _conf("multistep", milestones_steps=[10, 30], warmup_steps=15),
    _conf("multistep", milestones_epochs=[1, 2.5], warmup_epochs=1, warmup_start_ratio=0.25),
    _conf("exponential"), _conf("exponential", decay_every_epochs=2.4, gamma=0.97),
    _conf("exponential", decay_every_epochs=2.4, gamma=0.97, warmup_epochs=5),
    _conf("exponential", decay_every_epochs=0.041, gamma=0.97, warmup_epochs=0.086),
    _conf("exponential", decay_every_epochs=0.416, gamma=0.96), _conf("exponential", decay_every_steps=20),
    _conf("exponential", decay_every_steps=20, warmup_steps=30, warmup_start_ratio=0.5),
    _conf("exponential", decay_every_steps=10, gamma=0.5, staircase=False),
    _conf("exponential", decay_every_epochs=2.4, gamma=0.97, staircase=False, warmup_epochs=1),
    _conf("cosine"), _conf("cosine", warmup_steps=10), _conf("cosine", warmup_epochs=1.5, min_lr_ratio=0.1),
    _conf("cosine", min_lr_ratio=0.01, warmup_steps=20, warmup_start_ratio=0.3), _conf("cosine", warmup_steps=5000),
    _conf("poly"), _conf("poly", power=1.0), _conf("poly", power=2.0, warmup_steps=10),
    _conf("poly", min_lr_ratio=0.05), _conf("poly", power=0.9, min_lr_ratio=0.05, warmup_epochs=2),
]
RUNS = [(100, 10.0), (390, 39.0), (1000, 7.0), (64, 64 / 3)]  # (total steps, optimizer steps per epoch)


def test_every_per_step_schedule_of_conf_schedule_is_covered():
    files = {p.stem for p in (CONF / "schedule").glob("*.yaml")}
    assert {v["name"] for v in VARIANTS} == files - {"onecycle", "plateau"} == set(REPLAYED)


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if v is not None))
@pytest.mark.parametrize("total,steps_per_epoch", RUNS)
def test_the_lr_of_every_step_is_the_old_factors(cfg, total, steps_per_epoch):
    lrs = _assert_same(cfg, total, steps_per_epoch)
    assert lrs[0::2] == lrs[1::2]  # every group follows the same factor


def test_the_comparison_sees_a_one_step_shift():
    # the same warm-up but one step off (LinearLR over `steps` rather than steps − 1) is caught
    cfg = _conf("cosine", warmup_steps=10)
    shifted = _lrs(lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 10), torch.optim.lr_scheduler.CosineAnnealingLR(o, 90)],
        [10]), 100)
    assert shifted != pytest.approx(_lrs(lambda o: old_scheduler(o, cfg, 100, 10.0), 100), rel=1e-9)


def test_short_onecycle_is_the_same_constant():
    _assert_same({"name": "onecycle"}, 2, 1.0)


def test_which_torch_schedulers_make_each_schedule():
    lr_ = torch.optim.lr_scheduler
    kinds = {
        "constant": (_conf("constant"), lr_.ConstantLR), "warmup": (_conf("constant", warmup_steps=3), lr_.LinearLR),
        "multistep": (_conf("multistep"), lr_.MultiStepLR),
        "steplr": (_conf("exponential", decay_every_steps=4), lr_.StepLR),
        "staircase": (_conf("exponential"), lr_.MultiStepLR),  # 2 epochs × 7.3 steps: not a whole number
        "smooth": (_conf("exponential", staircase=False), lr_.ExponentialLR),
        "cosine": (_conf("cosine"), lr_.CosineAnnealingLR), "poly": (_conf("poly"), lr_.PolynomialLR),
        "cosine_warmup": (_conf("cosine", warmup_steps=3), lr_.SequentialLR),
    }
    for label, (cfg, kind) in kinds.items():
        assert type(build_scheduler(_optimizer(), cfg, 0.4, 100, 7.3)) is kind, label


def _recipes():
    out = []
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        text = path.read_text()
        if "override /schedule:" in text or "\nschedule:" in text:
            out.append(path.stem)
    return out


@pytest.fixture(scope="module")
def recipe_schedules():
    from tests.helpers import compose_cfg

    return {name: OmegaConf.to_container(compose_cfg("train", [f"experiment={name}"]).schedule, resolve=True)
            for name in _recipes()}


@pytest.mark.slow
def test_the_recipes_schedules_give_the_old_lrs(recipe_schedules):
    checked = set()
    for name, cfg in recipe_schedules.items():
        if cfg["name"] not in REPLAYED:
            continue
        for total, steps_per_epoch in ((300, 20.0), (2000, 100.0)):
            _assert_same(cfg, total, steps_per_epoch, label=name)
        checked.add(cfg["name"])
    assert checked == {"constant", "multistep", "exponential", "cosine"}, checked


# -- checkpoints written with the old LambdaLR(LRFactor) state ---------------------------------------------------
def _old_state(cfg, total, steps_per_epoch, steps):
    opt = _optimizer()
    sched = old_scheduler(opt, cfg, total, steps_per_epoch)
    for _ in range(steps):
        opt.step()
        sched.step()
    return sched.state_dict()


@pytest.mark.parametrize("cfg", [_conf("cosine", warmup_steps=10), _conf("multistep", milestones_steps=[30, 60]),
                                 _conf("exponential", decay_every_steps=20)], ids=lambda c: c["name"])
def test_old_states_are_read_and_resumed_on_the_new_schedule(cfg):
    state = _old_state(cfg, 100, 10.0, 40)
    assert saved_schedule_name(state) == cfg["name"] and planned_steps(state) == 100
    assert saved_position(state) == 40
    # continued to 200 steps: the new schedule for 200 steps from step 40, as a run built for 200 steps
    opt = _optimizer()
    sched = build_scheduler(opt, cfg, 0.4, 200, 10.0)
    resume_at(sched, lambda o: build_scheduler(o, cfg, 0.4, 200, 10.0), saved_position(state))
    tail = []
    for _ in range(160):
        tail.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = _lrs(lambda o: old_scheduler(o, cfg, 200, 10.0), 200)[0::2][40:200]
    assert tail == pytest.approx(expected, rel=1e-9)


def test_an_old_short_onecycle_state_keeps_its_position_only():
    state = _old_state({"name": "onecycle"}, 2, 1.0, 2)
    assert saved_schedule_name(state) == "constant" and planned_steps(state) == 2
    kept = keep_position_only(state)
    assert kept["lr_lambdas"] == [None, None] and kept["last_epoch"] == 2


def test_new_states_name_their_schedule_and_total():
    opt = _optimizer()
    state = build_scheduler(opt, _conf("exponential", warmup_steps=3), 0.4, 77, 10.0).state_dict()
    assert set(state) >= {"_schedulers", "_milestones"}  # a SequentialLR
    assert saved_schedule_name(state) == "exponential" and planned_steps(state) == 77 and saved_position(state) == 0
    multistep = build_scheduler(opt, _conf("multistep"), 0.4, 77, 10.0).state_dict()
    assert saved_schedule_name(multistep) == "multistep"  # also a MultiStepLR, told apart by the tag


def _logged_lrs(run_dir):
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return {int(row["step"]): float(row["lr"]) for row in csv.DictReader(f) if row.get("lr")}


@pytest.mark.slow
def test_a_run_continues_new_and_old_checkpoints_on_its_configs_schedule(tmp_path):
    """Through Lightning: a 1-epoch multistep run continued to 2 epochs, from its own checkpoint and from the same
    checkpoint with the scheduler state the old code wrote (LambdaLR of LRFactor), logs the LRs of a 2-epoch run
    of the old factor from the saved step on, with no scheduler warning."""
    from cnnbench.checkpoint import load_checkpoint
    from tests.helpers import train_tiny

    overrides = ["schedule=multistep", "schedule.milestones_epochs=[1.5]", "schedule.warmup_steps=3",
                 "schedule.gamma=0.5"]
    cfg = {"name": "multistep", "milestones_epochs": [1.5], "milestones_steps": None, "warmup_steps": 3, "gamma": 0.5}
    first = train_tiny(tmp_path / "a", overrides + ["trainer.max_epochs=1"])
    new_ckpt = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(new_ckpt)
    state, step = ckpt["lr_schedulers"][0], int(ckpt["global_step"])
    assert saved_schedule_name(state) == "multistep" and planned_steps(state) == step == saved_position(state)

    base = [g["initial_lr"] for g in ckpt["optimizer_states"][0]["param_groups"]]
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in base])
    old = old_scheduler(opt, cfg, step, float(step))
    for _ in range(step):
        opt.step()
        old.step()
    ckpt["lr_schedulers"] = [old.state_dict()]
    old_ckpt = tmp_path / "old.ckpt"
    torch.save(ckpt, old_ckpt)

    reference = _lrs(lambda o: old_scheduler(o, cfg, 2 * step, float(step)), 2 * step, lr=base[0])[0::2]
    for name, path in (("new", new_ckpt), ("old", old_ckpt)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_tiny(tmp_path / name, overrides + [f"ckpt_path={path}", "trainer.max_epochs=2", "logger=csv",
                                                     "trainer.log_every_n_steps=1"])
        assert not [w for w in caught if "lr_scheduler" in str(w.filename) or "scheduler" in str(w.message)]
        logged = _logged_lrs(tmp_path / name)
        assert sorted(logged) == list(range(step, 2 * step)), name
        assert [logged[t] for t in range(step, 2 * step)] == pytest.approx(reference[step:2 * step], rel=1e-9)
        assert len(set(logged.values())) == 2  # the milestone at 1.5 epochs falls inside the continued epoch
