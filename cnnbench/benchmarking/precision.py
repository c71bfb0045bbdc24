"""`trainer.precision` for the benchmark's plain loop: the autocast of Lightning's own precision plugin, so both
sides of the comparison run the same mixed precision.

The benchmark takes the precisions in `cnnbench.choices.BENCHMARK_PRECISIONS` (fp32 and the two autocast modes,
with Lightning's short aliases); the rule is in `cnnbench.config_schema`.
"""
from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

# Lightning's short aliases → its unified names. Lightning keeps this table private
# (lightning.fabric.plugins.precision.precision._PRECISION_INPUT_STR_ALIAS_CONVERSION, used by the private
# lightning.fabric.connector._convert_precision_to_unified_args); no public function converts, so the three
# aliases the benchmark accepts are restated here (tests/commands/test_benchmark.py compares them with Lightning's).
ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
MIXED = ("16-mixed", "bf16-mixed")  # lightning.fabric.plugins.precision.MixedPrecision's precisions


def unified(precision: str) -> str:
    """Lightning's unified name of a precision (`bf16` → `bf16-mixed`)."""
    return ALIASES.get(str(precision), str(precision))


def autocast(precision: str, device_type: str) -> AbstractContextManager:
    """The forward context Lightning's precision plugin uses for `precision` on `device_type`: torch.autocast in
    bf16/fp16 for the mixed precisions (`MixedPrecision.forward_context`), nothing for 32-true."""
    name = unified(precision)
    if name not in MIXED:
        return contextlib.nullcontext()
    from lightning.fabric.plugins.precision import MixedPrecision

    return MixedPrecision(name, device_type).forward_context()  # (a 16-mixed plugin's GradScaler goes unused)


def peak_key(precision: str) -> str:
    """Which matmul peak MFU is measured against: `bf16` for the half-precision autocasts, else `fp32`."""
    return "bf16" if unified(precision) in MIXED else "fp32"


__all__ = ["ALIASES", "MIXED", "autocast", "peak_key", "unified"]
