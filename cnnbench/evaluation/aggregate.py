"""Combining the scores of many views and many models into one probability vector per image."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnbench.errors import ConfigError
from cnnbench.evaluation.choices import AGGREGATES


def aggregate_views(logits: torch.Tensor, how: str = "softmax_mean") -> torch.Tensor:
    """(..., V, K) view logits → (..., K) probabilities.

    softmax_mean: the mean of the per-view softmax probabilities (GoogLeNet §7, VGG §3.2, ResNet);
    logit_mean: the softmax of the mean logits.
    """
    if how == "softmax_mean":
        return torch.softmax(logits.float(), dim=-1).mean(dim=-2)
    if how == "logit_mean":
        return torch.softmax(logits.float().mean(dim=-2), dim=-1)
    raise ConfigError(f"eval.aggregate={how!r}; valid choices: {', '.join(AGGREGATES)}")


def average(probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Equal-weight mean of probability vectors: over protocol parts (VGG's dense + multi-crop)
    and over ensemble members (GoogLeNet/Inception-v4: softmax averaged over models)."""
    return torch.stack(list(probs)).mean(dim=0)
