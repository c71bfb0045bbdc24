"""Pieces shared by the Inception-family files (googlenet, inception, inception_resnet).

- a tiny vocabulary for writing Inception blocks as data: a block is a tuple of *branches*, a
  branch a tuple of layer specs (`conv`, `maxpool`, `avgpool`, `split`), and the block's output
  is the channel concatenation of its branches in the order written (the papers' figures,
  left to right; TF-slim's branch_0, branch_1, … where the figures are missing);
- the 'V' / same padding convention of Szegedy et al. 2016 (Inception-v4 paper §3.1): a conv
  marked 'V' is valid-padded, every other conv keeps the grid size at stride 1;
- the `scaling: {width_mult: …}` option: every channel count written in a table is scaled and
  rounded to a multiple of 8, never below 90 % of the unrounded value (`round_width`);
- the auxiliary-head pooling that is exact at the native resolution and still works at others.

Not a model family itself (the leading underscore keeps the registry loader away from it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models.layers import ConvBNAct, he_init
from cnnbench.models.scaling import round_width, width_mult_option

# BN ε of the TF reference implementations (TF-slim Inception-v3 / v4).
INCEPTION_BN_EPS = 1e-3


# ----------------------------------------------------------------------------- width scaling
def parse_scaling(scaling: Mapping[str, Any] | None) -> float:
    """The width multiplier held by a model's `scaling` option (None → 1.0). Only `width_mult` is meaningful
    for the Inception family; other keys are refused rather than silently ignored."""
    return width_mult_option(scaling, "the Inception family")


# ----------------------------------------------------------------------------- block vocabulary
@dataclass(frozen=True)
class Conv:
    """Conv(out, k×k or (kh, kw), stride) → BN → ReLU; `valid` = the figures' 'V' (no padding)."""

    out: int
    k: int | tuple[int, int] = 1
    s: int = 1
    valid: bool = False


@dataclass(frozen=True)
class Pool:
    """3×3 pooling: max, stride 2, 'V' (grid reductions) or average, stride 1, same padding
    with the padded zeros left out of the mean (TF semantics)."""

    kind: str  # "max" | "avg"
    k: int = 3
    s: int = 1


@dataclass(frozen=True)
class Split:
    """Parallel convs on the same input, concatenated (the 'expanded filter bank' 1×3 ‖ 3×1)."""

    convs: tuple[Conv, ...]


Spec = Conv | Pool | Split
Branch = tuple  # tuple[Spec, ...]
Block = tuple  # tuple[Branch, ...]


def conv(out: int, k: int | tuple[int, int] = 1, s: int = 1, valid: bool = False) -> Conv:
    return Conv(out, k, s, valid)


def maxpool() -> Pool:
    return Pool("max", 3, 2)


def avgpool() -> Pool:
    return Pool("avg", 3, 1)


def split(*convs: Conv) -> Split:
    return Split(tuple(convs))


V = True  # readability: conv(32, 3, 2, V)


def _pair(k: int | tuple[int, int]) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else (int(k[0]), int(k[1]))


def make_conv(in_ch: int, spec: Conv, width_mult: float) -> tuple[nn.Module, int]:
    out = round_width(spec.out, width_mult)
    kh, kw = _pair(spec.k)
    pad = (0, 0) if spec.valid else (kh // 2, kw // 2)
    return ConvBNAct(in_ch, out, (kh, kw), spec.s, pad, bn_eps=INCEPTION_BN_EPS), out


class SplitConvs(nn.Module):
    def __init__(self, in_ch: int, spec: Split, width_mult: float) -> None:
        super().__init__()
        built = [make_conv(in_ch, c, width_mult) for c in spec.convs]
        self.convs = nn.ModuleList(m for m, _ in built)
        self.out_channels = sum(o for _, o in built)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c(x) for c in self.convs], 1)


def build_branch(in_ch: int, branch: Branch, width_mult: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    ch = in_ch
    for spec in branch:
        if isinstance(spec, Conv):
            m, ch = make_conv(ch, spec, width_mult)
        elif isinstance(spec, Split):
            m = SplitConvs(ch, spec, width_mult)
            ch = m.out_channels
        elif isinstance(spec, Pool) and spec.kind == "max":
            m = nn.MaxPool2d(spec.k, spec.s)
        elif isinstance(spec, Pool) and spec.kind == "avg":
            m = nn.AvgPool2d(spec.k, spec.s, spec.k // 2, count_include_pad=False)
        else:
            raise TypeError(f"unknown layer spec {spec!r}")
        layers.append(m)
    return nn.Sequential(*layers), ch


class Mixed(nn.Module):
    """An Inception block: its branches side by side, outputs concatenated in table order."""

    def __init__(self, in_ch: int, block: Block, width_mult: float = 1.0) -> None:
        super().__init__()
        built = [build_branch(in_ch, b, width_mult) for b in block]
        self.branches = nn.ModuleList(m for m, _ in built)
        self.in_channels = in_ch
        self.out_channels = sum(o for _, o in built)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.branches) == 1:
            return self.branches[0](x)
        return torch.cat([b(x) for b in self.branches], 1)


# ----------------------------------------------------------------------------- aux heads
def aux_pool(x: torch.Tensor, kernel: int, stride: int, size: int) -> torch.Tensor:
    """The aux heads' 'AveragePool k×k/s (V)'. At the native resolution it yields exactly
    `size`×`size`; at any other input size, where it would not, fall back to adaptive average
    pooling to `size`×`size` so the head's FC still fits."""
    h, w = x.shape[-2:]
    if (h - kernel) // stride + 1 == size and (w - kernel) // stride + 1 == size:
        return F.avg_pool2d(x, kernel, stride)
    return F.adaptive_avg_pool2d(x, size)


def check_aux_weights(aux_weights: Any, n: int, model: str) -> tuple[float, ...]:
    weights = tuple(float(w) for w in aux_weights)
    if len(weights) != n:
        raise ConfigError(f"{model}: aux_weights needs {n} value(s) (one per aux head), got {weights}")
    return weights


def init_bn_net(module: nn.Module) -> None:
    """He-normal convs, BN (1, 0), zero biases, N(0, 0.01) classifiers — the papers give no init."""
    he_init(module)
