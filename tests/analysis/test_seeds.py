"""cnnbench/analysis/seeds.py: arms over seeds, the decision rule, mean curves with their range."""
from __future__ import annotations

import math

import pytest

from cnnbench.analysis.seeds import arm_curves, arms, decide, mean_curve, stats
from cnnbench.errors import UserError


def _row(label: str, seed: int, test_err: float, val=None) -> dict:
    return {"label": label, "seed": seed, "run_dir": f"runs/{label}/{seed}", "test_err": test_err,
            "curves": {"train": [(5, test_err)], "val": val or [(10, test_err), (20, test_err / 2)]}}


def test_stats_uses_the_sample_standard_deviation():
    s = stats([0.1, 0.2, 0.3])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.2)
    assert s["std"] == pytest.approx(0.1)  # n − 1 in the denominator: sqrt(0.02 / 2)
    assert stats([0.5])["std"] is None


def test_arms_group_runs_that_differ_only_in_their_seed():
    rows = [_row("resnet20", 43, 0.20), _row("resnet20", 42, 0.22), _row("resnet56", 42, 0.18)]
    table = arms(rows, metrics=("test_err",))
    assert list(table) == ["resnet20", "resnet56"]
    assert table["resnet20"]["seeds"] == [42, 43]
    assert table["resnet20"]["test_err"]["mean"] == pytest.approx(0.21)
    assert table["resnet56"]["test_err"]["n"] == 1


def _table(a: list[float], b: list[float]) -> dict:
    rows = [_row("aux_logits=True", 42 + i, v) for i, v in enumerate(a)]  # as Hydra's sweeper writes it
    rows += [_row("aux_logits=false", 42 + i, v) for i, v in enumerate(b)]
    return arms(rows, metrics=("test_err",))


def test_decide_reproduced_when_the_gap_exceeds_twice_the_pooled_std():
    v = decide(_table([0.20, 0.21, 0.22], [0.30, 0.31, 0.32]), "aux_logits=true < aux_logits=false")
    assert v["pooled_std"] == pytest.approx(0.01)
    assert v["gap_in_paper_direction"] == pytest.approx(0.10)
    assert v["verdict"] == "reproduced" and v["seeds"] == [3, 3]


def test_decide_contradicted_and_not_resolved():
    table = _table([0.30, 0.31, 0.32], [0.20, 0.21, 0.22])
    assert decide(table, "aux_logits=true < aux_logits=false")["verdict"] == "contradicted"
    noisy = _table([0.20, 0.30, 0.25], [0.22, 0.32, 0.27])  # gap 2 points, pooled std 5 points
    v = decide(noisy, "aux_logits=true < aux_logits=false")
    assert v["verdict"] == "not resolved"
    assert v["threshold"] == pytest.approx(2 * math.sqrt((0.05 ** 2 + 0.05 ** 2) / 2))


def test_decide_one_seed_is_not_resolved():
    v = decide(_table([0.2], [0.3]), "aux_logits=true < aux_logits=false")
    assert v["verdict"] == "not resolved (one seed)" and v["threshold"] is None


def test_expectation_sides_must_match_exactly_one_arm():
    rows = [_row("irv2 residual_scale=0.1 gradient_clip_val=2.0", 42, 0.2),
            _row("irv2 residual_scale=0.1 gradient_clip_val=null", 42, 0.2),
            _row("irv2 residual_scale=1.0 gradient_clip_val=2.0", 42, 0.3)]
    table = arms(rows, metrics=("test_err",))
    with pytest.raises(UserError, match="matches 2 arms"):
        decide(table, "residual_scale=0.1 < residual_scale=1.0")
    v = decide(table, "residual_scale=0.1 gradient_clip_val=2.0 < residual_scale=1.0 gradient_clip_val=2.0")
    assert v["lower_per_paper"].endswith("clip_val=2.0") and v["verdict"] == "not resolved (one seed)"
    with pytest.raises(UserError, match="write '<arm A> < <arm B>'"):
        decide(table, "residual_scale=0.1 > residual_scale=1.0")


def test_mean_curve_averages_the_common_iterations_and_keeps_the_range():
    curve = mean_curve([[(10, 0.5), (20, 0.3)], [(10, 0.7), (20, 0.1), (30, 0.0)]])
    assert curve == [(10, pytest.approx(0.6), 0.5, 0.7), (20, pytest.approx(0.2), 0.1, 0.3)]
    curves = arm_curves([_row("a", 42, 0.4), _row("a", 43, 0.2)])
    assert curves["a"]["val"][0] == (10, pytest.approx(0.3), 0.2, 0.4)
