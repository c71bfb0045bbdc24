"""Continuing a run past its first length (docs/recipes.md, "Continuing a run"): the saved scheduler gives the
position, this run's config the shape — so a 10-step schedule continued to 20 steps ends where a 20-step run ends."""
from __future__ import annotations

import pytest
import torch

from cnnbench.training.optim import build_scheduler, keep_position_only, planned_steps, saved_schedule_name

SCHEDULES = [{"name": "onecycle"}, {"name": "cosine", "warmup_steps": 2}, {"name": "poly", "power": 0.5},
             {"name": "multistep", "milestones_steps": [5, 15]}, {"name": "exponential", "decay_every_steps": 4}]


def _scheduler(cfg, total):
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    return optimizer, build_scheduler(optimizer, cfg, 0.1, total, steps_per_epoch=5)


def _run(optimizer, scheduler, steps):
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("cfg", SCHEDULES, ids=lambda c: c["name"])
def test_a_continued_schedule_follows_the_longer_one_from_the_current_step(cfg):
    first_opt, first = _scheduler(cfg, 10)
    _run(first_opt, first, 10)
    saved_opt, saved = first_opt.state_dict(), first.state_dict()
    assert planned_steps(saved) == 10 and saved_schedule_name(saved) == cfg["name"]

    opt, continued = _scheduler(cfg, 20)
    opt.load_state_dict(saved_opt)
    continued.load_state_dict(keep_position_only(saved))
    tail = _run(opt, continued, 10)  # the old horizon would raise here for one-cycle ("Tried to step 11 times")

    ref_opt, reference = _scheduler(cfg, 20)
    expected = _run(ref_opt, reference, 20)[10:]
    assert tail == pytest.approx(expected)


def test_the_same_length_resumes_exactly_as_before():
    cfg = {"name": "onecycle"}
    opt, sched = _scheduler(cfg, 20)
    _run(opt, sched, 7)
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    expected = _run(opt, sched, 13)
    opt2, again = _scheduler(cfg, 20)
    opt2.load_state_dict(saved_opt)
    again.load_state_dict(keep_position_only(saved))
    assert _run(opt2, again, 13) == pytest.approx(expected)


def test_continuing_with_another_schedule_is_refused_in_one_line(tmp_path):
    from cnnbench.errors import UserError
    from tests.helpers import train_tiny

    first = train_tiny(tmp_path / "a", ["trainer.max_epochs=1"])
    with pytest.raises(UserError, match=r"trained with schedule=onecycle; schedule=cosine cannot continue it: pass "
                                        r"schedule=onecycle, or start a new run from its weights with init_from="):
        train_tiny(tmp_path / "b", [f"ckpt_path={first['run_dir']}/checkpoints/last.ckpt", "schedule=cosine",
                                    "trainer.max_epochs=2"])
