"""Test-time evaluation: multi-crop protocols, multi-scale and dense evaluation, ensembles.

The names below load on first use (PEP 562), so that `cnnbench.evaluation.choices` imports without torch or
OpenCV (the CLI checks `crops=` and the `eval.*` choices before either is loaded)."""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"AGGREGATES": "choices", "CROP_CHOICES": "choices", "aggregate_views": "aggregate", "average": "aggregate",
          "View": "crops", "protocol_views": "crops", "whole_views": "crops"}

__all__ = ["AGGREGATES", "CROP_CHOICES", "View", "aggregate_views", "average", "protocol_views", "whole_views"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
