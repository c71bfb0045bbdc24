"""Compound model scaling — Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs" (ICML 2019), §3.3.

Eq. 3 of the paper scales a baseline network by one coefficient φ:

    depth d = α^φ,   width w = β^φ,   resolution r = γ^φ,   with α·β²·γ² ≈ 2 (α, β, γ ≥ 1)

so FLOPs grow by about 2^φ. The small grid search of step 1 found α = 1.2, β = 1.1, γ = 1.15 for
EfficientNet-B0. B1–B7 were not built with one exact φ: their published coefficients are a
hand-rounded lookup table (the reference implementation's per-model coefficients), which a family passes here as `preset`.

A model's `scaling` option is a mapping with these keys (a missing key or a `None` value means
"not given", so a config may list every key with `null`):

    phi              compound coefficient; derives the three multipliers below (overrides a preset)
    alpha, beta, gamma   the bases of depth / width / resolution (default 1.2 / 1.1 / 1.15)
    width_mult       channel multiplier (overrides the derived / preset value)
    depth_mult       layer-repeat multiplier (overrides the derived / preset value)
    resolution_mult  input-side multiplier relative to the family's base resolution
    resolution       absolute input side in pixels (wins over resolution_mult)

Channels are rounded with `round_filters` (multiples of 8, never losing more than 10%) and stage
repeats with `round_repeats` (rounded up), as the paper's reference implementation does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cnnbench.errors import ConfigError

ALPHA = 1.2  # depth base (§3.3, step 1)
BETA = 1.1  # width base
GAMMA = 1.15  # resolution base

SCALING_KEYS = ("phi", "alpha", "beta", "gamma", "width_mult", "depth_mult", "resolution_mult", "resolution")


@dataclass(frozen=True)
class Scaling:
    """Resolved multipliers. `resolution`, when not None, is an absolute input side in pixels;
    otherwise the input side is the family's base resolution × `resolution_mult`."""

    width_mult: float = 1.0
    depth_mult: float = 1.0
    resolution_mult: float = 1.0
    resolution: int | None = None

    def input_size(self, base_resolution: int) -> int:
        """Input side for a family whose unscaled network runs at `base_resolution`."""
        if self.resolution is not None:
            return self.resolution
        return int(round(base_resolution * self.resolution_mult))


def _as_dict(mapping: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a mapping with keys {', '.join(SCALING_KEYS)}; got {type(mapping).__name__}")
    out = {str(k): v for k, v in mapping.items()}
    bad = sorted(set(out) - set(SCALING_KEYS))
    if bad:
        raise ConfigError(
            f"unknown {what} key(s) {', '.join(bad)}; valid keys: {', '.join(SCALING_KEYS)}"
        )
    return {k: v for k, v in out.items() if v is not None}


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"scaling {name} must be a number, got {value!r}")
    if not value > 0:
        raise ConfigError(f"scaling {name} must be > 0, got {value!r}")
    return float(value)


def resolve_scaling(scaling: Mapping[str, Any] | None, preset: Mapping[str, Any] | None = None) -> Scaling:
    """Turn a `scaling` option (plus a model's published `preset`, if any) into multipliers.

    Precedence, lowest first: identity (1, 1, 1) → `preset` → φ-derived (a given `phi` replaces
    the whole preset: d = α^φ, w = β^φ, r = γ^φ) → explicit `width_mult` / `depth_mult` /
    `resolution_mult` / `resolution`. `alpha`/`beta`/`gamma` only matter together with `phi`.
    An explicit `resolution_mult` drops a preset's absolute `resolution`.
    """
    given = _as_dict(scaling, "scaling")
    base = _as_dict(preset, "preset")
    if "phi" in base:
        raise ValueError("a preset gives published coefficients, not phi")

    width, depth, res_mult = 1.0, 1.0, 1.0
    resolution: Any = None
    if "phi" in given:
        phi = given["phi"]
        if isinstance(phi, bool) or not isinstance(phi, (int, float)):
            raise ConfigError(f"scaling phi must be a number, got {phi!r}")
        alpha = _positive("alpha", given.get("alpha", ALPHA))
        beta = _positive("beta", given.get("beta", BETA))
        gamma = _positive("gamma", given.get("gamma", GAMMA))
        depth, width, res_mult = alpha**phi, beta**phi, gamma**phi
    else:
        width = _positive("width_mult", base.get("width_mult", width))
        depth = _positive("depth_mult", base.get("depth_mult", depth))
        res_mult = _positive("resolution_mult", base.get("resolution_mult", res_mult))
        resolution = base.get("resolution")

    if "width_mult" in given:
        width = _positive("width_mult", given["width_mult"])
    if "depth_mult" in given:
        depth = _positive("depth_mult", given["depth_mult"])
    if "resolution_mult" in given:
        res_mult = _positive("resolution_mult", given["resolution_mult"])
        resolution = None
    if "resolution" in given:
        resolution = given["resolution"]
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
            raise ConfigError(f"scaling resolution must be a positive integer, got {resolution!r}")
    return Scaling(width_mult=width, depth_mult=depth, resolution_mult=res_mult, resolution=resolution)


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """`channels · width_mult` rounded to the nearest multiple of `divisor` (at least `divisor`),
    bumped up one step if rounding lost more than 10% of the unrounded value."""
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_width(channels: int, width_mult: float = 1.0, divisor: int = 8) -> int:
    """`round_filters` (multiples of `divisor`, never losing more than 10 %), except that `width_mult == 1`
    keeps the paper's channel counts as they are (some are not multiples of 8)."""
    return channels if width_mult == 1.0 else round_filters(channels, width_mult, divisor)


def width_mult_option(scaling: Mapping[str, Any] | None, family: str) -> float:
    """The width multiplier of a family that scales widths only (None → 1.0), read by `resolve_scaling`;
    any other key is refused rather than silently ignored. `family` names it in the error."""
    if scaling is None:
        return 1.0
    if not isinstance(scaling, Mapping):
        raise ConfigError(f"scaling must be a mapping such as {{width_mult: 0.5}} or null, got {scaling!r}")
    extra = sorted(set(scaling) - {"width_mult"})
    if extra:
        raise ConfigError(
            f"unsupported scaling key(s) {', '.join(map(str, extra))} for {family}; only width_mult is supported"
        )
    return resolve_scaling(scaling).width_mult


def round_repeats(repeats: int, depth_mult: float) -> int:
    """`repeats · depth_mult` rounded up. A product within 1e-9 of an integer counts as that integer,
    so float noise (1.1 · 10 = 11.000000000000002) does not add a layer."""
    return int(math.ceil(repeats * depth_mult - 1e-9))
