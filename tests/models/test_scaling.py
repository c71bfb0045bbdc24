"""Compound scaling (Tan & Le 2019, §3.3, Eq. 3): φ-derived multipliers, presets, overrides, rounding."""
from __future__ import annotations

import math

import pytest

from cnnbench.models.scaling import (
    ALPHA,
    BETA,
    GAMMA,
    SCALING_KEYS,
    Scaling,
    resolve_scaling,
    round_filters,
    round_repeats,
)

B3_PRESET = {"width_mult": 1.2, "depth_mult": 1.4, "resolution": 300}


def test_default_bases_are_the_papers_grid_search_result():
    assert (ALPHA, BETA, GAMMA) == (1.2, 1.1, 1.15)
    # α·β²·γ² ≈ 2 (the search constraint); 1.920 for the chosen triple (§3.3)
    assert ALPHA * BETA**2 * GAMMA**2 == pytest.approx(1.92027, abs=1e-4)


def test_identity_without_scaling_or_preset():
    assert resolve_scaling(None) == Scaling(1.0, 1.0, 1.0, None)
    assert resolve_scaling({}) == Scaling(1.0, 1.0, 1.0, None)
    assert resolve_scaling(None).input_size(224) == 224


@pytest.mark.parametrize("phi", [0, 1, 2, 3.5, 7])
def test_phi_derives_depth_width_resolution(phi):
    s = resolve_scaling({"phi": phi})
    assert s.depth_mult == pytest.approx(1.2**phi)
    assert s.width_mult == pytest.approx(1.1**phi)
    assert s.resolution_mult == pytest.approx(1.15**phi)
    assert s.resolution is None
    assert s.input_size(224) == round(224 * 1.15**phi)


def test_phi_input_sizes_match_spec_table():
    # pure-φ models: resolution = round(224·1.15^φ)
    assert [resolve_scaling({"phi": p}).input_size(224) for p in range(1, 8)] == [258, 296, 341, 392, 451, 518, 596]


def test_custom_bases():
    s = resolve_scaling({"phi": 2, "alpha": 1.4, "beta": 1.2, "gamma": 1.3})
    assert (s.depth_mult, s.width_mult, s.resolution_mult) == pytest.approx((1.96, 1.44, 1.69))


def test_preset_is_used_when_nothing_given():
    s = resolve_scaling(None, B3_PRESET)
    assert (s.width_mult, s.depth_mult, s.resolution) == (1.2, 1.4, 300)
    assert s.input_size(224) == 300


def test_phi_overrides_preset():
    s = resolve_scaling({"phi": 1}, B3_PRESET)
    assert (s.width_mult, s.depth_mult) == pytest.approx((1.1, 1.2))
    assert s.resolution is None and s.input_size(224) == 258


def test_explicit_multipliers_override_phi_and_preset():
    s = resolve_scaling({"phi": 2, "width_mult": 2.0}, B3_PRESET)
    assert s.width_mult == 2.0 and s.depth_mult == pytest.approx(1.44)
    s = resolve_scaling({"depth_mult": 4.0}, B3_PRESET)  # Table 3 "scale by depth (d=4)"
    assert (s.width_mult, s.depth_mult, s.resolution) == (1.2, 4.0, 300)
    s = resolve_scaling({"phi": 3, "resolution": 320})
    assert s.input_size(224) == 320
    s = resolve_scaling({"resolution_mult": 2.0}, B3_PRESET)  # "scale by resolution (r=2)"
    assert s.resolution is None and s.input_size(224) == 448


def test_null_values_mean_not_given():
    cfg = {k: None for k in SCALING_KEYS}
    assert resolve_scaling(cfg, B3_PRESET) == resolve_scaling(None, B3_PRESET)
    cfg["phi"] = 2
    assert resolve_scaling(cfg).width_mult == pytest.approx(1.21)


def test_unknown_key_names_key_and_valid_ones():
    with pytest.raises(ValueError) as e:
        resolve_scaling({"phii": 1})
    msg = str(e.value)
    assert "phii" in msg
    for k in SCALING_KEYS:
        assert k in msg


@pytest.mark.parametrize(
    "bad", [{"width_mult": 0}, {"depth_mult": -1.0}, {"resolution": 0}, {"resolution": 2.5}, {"phi": "2"}, {"phi": 1, "alpha": 0}]
)
def test_invalid_values_rejected(bad):
    with pytest.raises(ValueError):
        resolve_scaling(bad)


def test_omegaconf_mapping_accepted():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"phi": 2, "alpha": None, "width_mult": None})
    assert resolve_scaling(cfg).depth_mult == pytest.approx(1.44)


@pytest.mark.parametrize(
    "channels, w, expected",
    [
        (32, 1.0, 32),
        (16, 1.1, 16),  # 17.6 → 16 (within 10%)
        (40, 1.1, 48),  # 44 → int(48)//8·8 = 48 (round half up)
        (1280, 1.1, 1408),
        (32, 1.2, 40),  # 38.4 → 40
        (24, 1.4, 32),  # 33.6 → 32
        (320, 2.0, 640),
        (1280, 2.0, 2560),
        (8, 0.25, 8),  # never below the divisor
        (64, 1.17, 72),  # 74.88 → 72 (≥ 90%)
    ],
)
def test_round_filters(channels, w, expected):
    got = round_filters(channels, w)
    assert got == expected
    assert got % 8 == 0 and got >= 0.9 * channels * w


def test_round_filters_bumps_when_rounding_loses_over_10_percent():
    # divisor 16: 20 rounds to 16, which is 80% of 20 → bumped to 32
    assert round_filters(20, 1.0, divisor=16) == 32
    assert round_filters(24, 1.0, divisor=16) == 32  # 24 → int(32)//16·16 = 32
    for c in range(1, 400):
        for w in (0.5, 0.75, 1.0, 1.1, 1.3, 1.9):
            r = round_filters(c, w)
            assert r % 8 == 0 and r >= 0.9 * c * w and r >= 8


@pytest.mark.parametrize(
    "repeats, d, expected",
    [(1, 1.0, 1), (1, 1.1, 2), (2, 1.1, 3), (3, 1.4, 5), (4, 3.1, 13), (3, 4.0, 12), (10, 1.1, 11), (2, 0.4, 1)],
)
def test_round_repeats_ceil(repeats, d, expected):
    assert round_repeats(repeats, d) == expected
    assert round_repeats(repeats, d) == math.ceil(round(repeats * d, 9))


def test_resnet50_scaling_hook():
    """Table 3's "scale ResNet-50" rows: `model=resnet50 model.scaling.phi=…` (same keys, same resolver)."""
    import inspect

    import torch

    from cnnbench.models import create_model, list_models
    from cnnbench.models.registry import _BUILDERS
    from cnnbench.profiling import count_params

    assert "resnet50" in list_models() and "scaling" in inspect.signature(_BUILDERS["resnet50"]).parameters
    with torch.device("meta"):
        base = count_params(create_model("resnet50"))
        deeper = count_params(create_model("resnet50", scaling={"depth_mult": 2.0}))
        wider = count_params(create_model("resnet50", scaling={"width_mult": 2.0}))
        compound = count_params(create_model("resnet50", scaling={"phi": 1}))
        with pytest.raises(ValueError, match="phii"):
            create_model("resnet50", scaling={"phii": 1})
    assert base < deeper and base < wider and base < compound
