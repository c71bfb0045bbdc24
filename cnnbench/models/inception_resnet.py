"""Inception-ResNet-v1 / -v2 — Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning" (AAAI 2017), and the released TF-slim Inception-ResNet-v2.

A residual Inception block (Figs. 10/11/13 for v1, 16/17/19 for v2) runs its branches, concatenates
them, and a 1×1 "filter-expansion" conv *without activation* (bias, no BN) brings the depth back to
the block's input depth; the result is scaled by a constant (§3.3: 0.1–0.3, to keep wide residual
nets from "dying") and added to the input, then ReLU. BN sits only on the ordinary conv layers,
never after the addition (§3.2).

- `inception_resnet_v1` (Fig. 15 with Figs. 14, 10, 7, 11, 12, 13): stem → 35×35×256,
  5 × A, Reduction-A (k, l, m, n = 192, 192, 256, 384) → 17×17×896, 10 × B, Reduction-B → 8×8×1792,
  5 × C, average pool, dropout (keep 0.8), FC.
- `inception_resnet_v2` (Fig. 15 with Figs. 3, 16, 7, 17, 18, 19): the Inception-v4 stem → 35×35×384,
  5 × A, Reduction-A (256, 256, 384, 384) → 17×17×1152, 10 × B, Reduction-B → 8×8×2144, 5 × C.
  The figures' up-projection widths "1154" (Fig. 17) and "2048" (Fig. 19) cannot be added to the
  trunk; the up-projection is always as wide as the block input (1152, 2144).
- `inception_resnet_v2_tfslim`: the released network behind the widely quoted checkpoint
  (spec B.5 table): v1-style stem + max-pool to 35×35×192, a "Mixed_5b" Inception block → 320,
  10 × A (→ 320), Reduction-A → 1088, 20 × B, Reduction-B → 2080, 9 × C + one final C with scale
  1.0 and no ReLU, a 1×1 conv to 1536, average pool, dropout (keep 0.8), FC. No aux head.

`residual_scale`: one number for every block, or a mapping {A: …, B: …, C: …} (missing keys keep
their default). The paper gives only the range; the defaults are TF-slim's 0.17 / 0.10 / 0.20,
used here for all three networks.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models._inception_parts import (
    Block,
    Mixed,
    V,
    avgpool,
    conv,
    init_bn_net,
    maxpool,
    parse_scaling,
)
from cnnbench.models.inception import V4_STEM, reduction_a
from cnnbench.models.registry import INCEPTION_MEAN, INCEPTION_STD, ModelInfo, register_model

DEFAULT_RESIDUAL_SCALE = {"A": 0.17, "B": 0.10, "C": 0.20}  # TF-slim block35 / block17 / block8


@dataclass(frozen=True)
class Res:
    """A residual Inception block of type A, B or C. `fixed_scale` overrides `residual_scale`
    (the TF-slim final block); `activate=False` drops the ReLU after the addition."""

    kind: str
    block: Block
    activate: bool = True
    fixed_scale: float | None = None


Row = tuple[str, "Block | Res"]


def _repeat(prefix: str, item: Block | Res, n: int) -> tuple[Row, ...]:
    return tuple((f"{prefix}{i + 1}", item) for i in range(n))


# ============================================================================ Inception-ResNet-v1
IR_V1_STEM: Block = ((  # Fig. 14, 299 → 35×35×256
    conv(32, 3, 2, V),  # 149
    conv(32, 3, 1, V),  # 147
    conv(64, 3),  # 147
    maxpool(),  # 73
    conv(80, 1),
    conv(192, 3, 1, V),  # 71
    conv(256, 3, 2, V),  # 35
),)
IR_V1_A: Block = (  # Fig. 10, 35×35×256
    (conv(32),),
    (conv(32), conv(32, 3)),
    (conv(32), conv(32, 3), conv(32, 3)),
)
IR_V1_B: Block = (  # Fig. 11, 17×17×896
    (conv(128),),
    (conv(128), conv(128, (1, 7)), conv(128, (7, 1))),
)
IR_V1_REDUCTION_B: Block = (  # Fig. 12, 17×17×896 → 8×8×1792
    (conv(256), conv(384, 3, 2, V)),
    (conv(256), conv(256, 3, 2, V)),
    (conv(256), conv(256, 3), conv(256, 3, 2, V)),
    (maxpool(),),
)
IR_V1_C: Block = (  # Fig. 13, 8×8×1792
    (conv(192),),
    (conv(192), conv(192, (1, 3)), conv(192, (3, 1))),
)

INCEPTION_RESNET_V1: tuple[Row, ...] = (
    ("stem", IR_V1_STEM),  # 35×35×256
    *_repeat("block_a", Res("A", IR_V1_A), 5),
    ("reduction_a", reduction_a(192, 192, 256, 384)),  # 17×17×896 (Table 1)
    *_repeat("block_b", Res("B", IR_V1_B), 10),
    ("reduction_b", IR_V1_REDUCTION_B),  # 8×8×1792
    *_repeat("block_c", Res("C", IR_V1_C), 5),
)

# ============================================================================ Inception-ResNet-v2
IR_V2_A: Block = (  # Fig. 16, 35×35×384
    (conv(32),),
    (conv(32), conv(32, 3)),
    (conv(32), conv(48, 3), conv(64, 3)),
)
IR_V2_B: Block = (  # Fig. 17, 17×17×1152
    (conv(192),),
    (conv(128), conv(160, (1, 7)), conv(192, (7, 1))),
)
IR_V2_REDUCTION_B: Block = (  # Fig. 18, 17×17×1152 → 8×8×2144
    (conv(256), conv(384, 3, 2, V)),
    (conv(256), conv(288, 3, 2, V)),
    (conv(256), conv(288, 3), conv(320, 3, 2, V)),
    (maxpool(),),
)
IR_V2_C: Block = (  # Fig. 19, 8×8×2144
    (conv(192),),
    (conv(192), conv(224, (1, 3)), conv(256, (3, 1))),
)
IR_V2_KLMN = (256, 256, 384, 384)  # Table 1

INCEPTION_RESNET_V2: tuple[Row, ...] = (
    *V4_STEM,  # Fig. 3, 35×35×384
    *_repeat("block_a", Res("A", IR_V2_A), 5),
    ("reduction_a", reduction_a(*IR_V2_KLMN)),  # 17×17×1152
    *_repeat("block_b", Res("B", IR_V2_B), 10),
    ("reduction_b", IR_V2_REDUCTION_B),  # 8×8×2144
    *_repeat("block_c", Res("C", IR_V2_C), 5),
)

# ============================================================================ TF-slim release
TFSLIM_STEM: Block = ((
    conv(32, 3, 2, V), conv(32, 3, 1, V), conv(64, 3), maxpool(),  # 73×73×64
    conv(80, 1, 1, V), conv(192, 3, 1, V), maxpool(),  # 35×35×192
),)
TFSLIM_MIXED_5B: Block = (  # 35×35×192 → 35×35×320
    (conv(96),),
    (conv(48), conv(64, 5)),
    (conv(64), conv(96, 3), conv(96, 3)),
    (avgpool(), conv(64)),
)

INCEPTION_RESNET_V2_TFSLIM: tuple[Row, ...] = (
    ("stem", TFSLIM_STEM),
    ("mixed_5b", TFSLIM_MIXED_5B),  # 35×35×320
    *_repeat("block_a", Res("A", IR_V2_A), 10),
    ("reduction_a", reduction_a(*IR_V2_KLMN)),  # 17×17×1088
    *_repeat("block_b", Res("B", IR_V2_B), 20),
    ("reduction_b", IR_V2_REDUCTION_B),  # 8×8×2080
    *_repeat("block_c", Res("C", IR_V2_C), 9),
    ("block_c10", Res("C", IR_V2_C, activate=False, fixed_scale=1.0)),
    ("conv_7b", ((conv(1536),),)),  # 8×8×1536
)


# ============================================================================ modules
def parse_residual_scale(residual_scale: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(residual_scale, Mapping):
        scales = dict(DEFAULT_RESIDUAL_SCALE)
        for key, value in residual_scale.items():
            k = str(key).upper()
            if k not in scales:
                raise ConfigError(f"residual_scale keys are A, B, C; got {key!r}")
            scales[k] = float(value)
        return scales
    if isinstance(residual_scale, (int, float)) and not isinstance(residual_scale, bool):
        return {k: float(residual_scale) for k in DEFAULT_RESIDUAL_SCALE}
    raise ConfigError(f"residual_scale must be a number or a mapping {{A: …, B: …, C: …}}, got {residual_scale!r}")


class InceptionResidual(nn.Module):
    """y = ReLU(x + scale · Up1×1(concat(branches(x)))); Up1×1 is linear (bias, no BN, no activation)."""

    def __init__(self, in_ch: int, block: Block, scale: float, activate: bool = True, width_mult: float = 1.0):
        super().__init__()
        self.branches = Mixed(in_ch, block, width_mult)
        self.up = nn.Conv2d(self.branches.out_channels, in_ch, 1, bias=True)
        self.scale = float(scale)
        self.activate = activate
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.up(self.branches(x))
        return F.relu(out) if self.activate else out


class InceptionResNet(nn.Module):
    def __init__(self, layout: Sequence[Row], num_classes: int = 1000, in_chans: int = 3,
                 residual_scale: float | Mapping[str, float] = DEFAULT_RESIDUAL_SCALE,
                 drop_rate: float = 0.2, width_mult: float = 1.0) -> None:
        super().__init__()
        self.residual_scale = parse_residual_scale(residual_scale)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        ch = in_chans
        for name, item in layout:
            if isinstance(item, Res):
                scale = item.fixed_scale if item.fixed_scale is not None else self.residual_scale[item.kind]
                layers[name] = InceptionResidual(ch, item.block, scale, item.activate, width_mult)
            else:
                layers[name] = Mixed(ch, item, width_mult)
            ch = layers[name].out_channels
        self.features = nn.Sequential(layers)
        self.num_features = ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)  # keep 0.8 (Fig. 15)
        self.fc = nn.Linear(ch, num_classes)
        init_bn_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


# ============================================================================ registry
_COMMON = dict(
    family="inception_resnet",
    input_size=299, min_input_size=75,
    crop_pct=0.875,
    interpolation="bilinear",
    mean=INCEPTION_MEAN, std=INCEPTION_STD,
)
_PAPER = "Szegedy et al. 2017, 'Inception-v4, Inception-ResNet…'"
_SCALE_DOC = "residual_scale defaults A 0.17 / B 0.10 / C 0.20 are TF-slim's (the paper: 0.1-0.3)"


@register_model(ModelInfo(
    name="inception_resnet_v1",
    paper=f"{_PAPER}, Figs. 10-15, Table 1",
    paper_params=22_756_328, paper_macs=6.21e9,
    paper_top1=1 - 0.213, paper_top5=1 - 0.055,
    reference_source=(
        "params/MACs: exact count of the paper's figures, 5/10/5 blocks; "
        f"top-1/top-5: Table 2, 21.3% / 5.5% single-crop error, non-blacklisted val; {_SCALE_DOC}"
    ),
    **_COMMON,
))
def build_inception_resnet_v1(num_classes: int = 1000, in_chans: int = 3,
                              residual_scale: float | Mapping[str, float] = DEFAULT_RESIDUAL_SCALE,
                              scaling: Mapping[str, Any] | None = None) -> InceptionResNet:
    return InceptionResNet(INCEPTION_RESNET_V1, num_classes, in_chans, residual_scale,
                           width_mult=parse_scaling(scaling))


@register_model(ModelInfo(
    name="inception_resnet_v2",
    paper=f"{_PAPER}, Figs. 3, 7, 15-19, Table 1",
    paper_params=32_433_928, paper_macs=9.26e9,
    paper_top1=1 - 0.199, paper_top5=1 - 0.049,
    reference_source=(
        "params/MACs: exact count of the paper's figures, 5/10/5 blocks, up-projections as wide as the trunk "
        "(1152 / 2144; the figures print 1154 / 2048); top-1/top-5: Table 2, 19.9% / 4.9% "
        f"single-crop error, non-blacklisted val (possibly measured on a network closer to the TF-slim one, "
        f"as counted here); {_SCALE_DOC}"
    ),
    **_COMMON,
))
def build_inception_resnet_v2(num_classes: int = 1000, in_chans: int = 3,
                              residual_scale: float | Mapping[str, float] = DEFAULT_RESIDUAL_SCALE,
                              scaling: Mapping[str, Any] | None = None) -> InceptionResNet:
    return InceptionResNet(INCEPTION_RESNET_V2, num_classes, in_chans, residual_scale,
                           width_mult=parse_scaling(scaling))


@register_model(ModelInfo(
    name="inception_resnet_v2_tfslim",
    paper="TF-slim inception_resnet_v2 release (tensorflow/models research/slim), after " + _PAPER,
    paper_params=55_843_464, paper_macs=13.16e9,
    paper_top1=0.804, paper_top5=0.953,
    reference_source=(
        "params/MACs: exact count of the released layer list, no aux head (TF-slim); "
        "top-1/top-5: released checkpoint, single centre crop, full val (TF-slim's published figure, not in the paper); "
        "residual scales 0.17 / 0.10 / 0.20, last C block 1.0 without ReLU, as released"
    ),
    **_COMMON,
))
def build_inception_resnet_v2_tfslim(num_classes: int = 1000, in_chans: int = 3,
                                     residual_scale: float | Mapping[str, float] = DEFAULT_RESIDUAL_SCALE,
                                     scaling: Mapping[str, Any] | None = None) -> InceptionResNet:
    return InceptionResNet(INCEPTION_RESNET_V2_TFSLIM, num_classes, in_chans, residual_scale,
                           width_mult=parse_scaling(scaling))
