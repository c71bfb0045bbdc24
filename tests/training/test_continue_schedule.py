"""Continuing a run past its first length (docs/recipes.md, "Continuing a run"): the saved scheduler gives the
position, this run's config the shape — so a 10-step schedule continued to 20 steps ends where a 20-step run ends."""
from __future__ import annotations

import pytest
import torch

from cnnbench.training.optim import (
    REPLAYED,
    build_scheduler,
    keep_position_only,
    planned_steps,
    resume_at,
    saved_position,
    saved_schedule_name,
)

SCHEDULES = [{"name": "onecycle"}, {"name": "cosine", "warmup_steps": 2}, {"name": "poly", "power": 0.5},
             {"name": "poly", "power": 2.0, "min_lr_ratio": 0.1, "warmup_steps": 3},
             {"name": "multistep", "milestones_steps": [5, 15]}, {"name": "exponential", "decay_every_steps": 4},
             {"name": "exponential", "decay_every_steps": 3, "staircase": False, "warmup_steps": 2},
             {"name": "constant", "warmup_steps": 12}]


def _scheduler(cfg, total):
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    return optimizer, build_scheduler(optimizer, cfg, 0.1, total, steps_per_epoch=5)


def _continue(cfg, total, saved_opt, saved):
    """What training.module does with a checkpoint: the per-step compositions rebuilt for `total` and replayed to
    the saved step (on_load_checkpoint, on_train_start); one-cycle loaded without its horizon."""
    optimizer, scheduler = _scheduler(cfg, total)
    optimizer.load_state_dict(saved_opt)
    if cfg["name"] in REPLAYED:
        resume_at(scheduler, lambda o: build_scheduler(o, cfg, 0.1, total, steps_per_epoch=5), saved_position(saved))
    else:
        scheduler.load_state_dict(keep_position_only(saved))
    return optimizer, scheduler


def _run(optimizer, scheduler, steps):
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def _ids(cfg):
    return "-".join(str(v) for v in cfg.values())


@pytest.mark.parametrize("cfg", SCHEDULES, ids=_ids)
def test_a_continued_schedule_follows_the_longer_one_from_the_current_step(cfg):
    first_opt, first = _scheduler(cfg, 10)
    _run(first_opt, first, 10)
    saved_opt, saved = first_opt.state_dict(), first.state_dict()
    assert planned_steps(saved) == 10 and saved_schedule_name(saved) == cfg["name"]

    # the old horizon would raise for one-cycle ("Tried to step 11 times"), and end cosine and poly at step 10
    tail = _run(*_continue(cfg, 20, saved_opt, saved), 10)

    ref_opt, reference = _scheduler(cfg, 20)
    expected = _run(ref_opt, reference, 20)[10:]
    assert tail == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cfg", SCHEDULES, ids=_ids)
def test_the_same_length_resumes_exactly_as_before(cfg):
    opt, sched = _scheduler(cfg, 20)
    _run(opt, sched, 7)
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    expected = _run(opt, sched, 13)
    resumed = _run(*_continue(cfg, 20, saved_opt, saved), 13)
    if cfg["name"] in REPLAYED:
        assert resumed == expected  # replayed: the same floating-point operations, bit for bit
    else:
        assert resumed == pytest.approx(expected)


def test_loading_a_saved_composition_into_a_longer_one_is_not_enough():
    # why the compositions are replayed: cosine's next LR is computed from the current one, so the position
    # alone (last_epoch) would continue the 10-step curve's end, not the 20-step curve
    cfg = {"name": "cosine", "warmup_steps": 2}
    first_opt, first = _scheduler(cfg, 10)
    _run(first_opt, first, 10)
    opt, continued = _scheduler(cfg, 20)
    opt.load_state_dict(first_opt.state_dict())
    state = first.state_dict()
    for inner, fresh in zip(state["_schedulers"], continued.state_dict()["_schedulers"], strict=True):
        inner.update({k: v for k, v in fresh.items() if k not in ("last_epoch", "_step_count", "_last_lr")})
    continued.load_state_dict(state)
    ref_opt, reference = _scheduler(cfg, 20)
    assert _run(opt, continued, 10) != pytest.approx(_run(ref_opt, reference, 20)[10:], rel=1e-3)


def test_continuing_with_another_schedule_is_refused_in_one_line(tmp_path):
    from cnnbench.errors import UserError
    from tests.helpers import train_tiny

    first = train_tiny(tmp_path / "a", ["trainer.max_epochs=1"])
    with pytest.raises(UserError, match=r"trained with schedule=onecycle; schedule=cosine cannot continue it: pass "
                                        r"schedule=onecycle, or start a new run from its weights with init_from="):
        train_tiny(tmp_path / "b", [f"ckpt_path={first['run_dir']}/checkpoints/last.ckpt", "schedule=cosine",
                                    "trainer.max_epochs=2"])
