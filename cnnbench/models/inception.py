"""Inception-v3 and Inception-v4, written as block tables (see `_inception_parts` for the vocabulary).

Inception-v3 — Szegedy et al., "Rethinking the Inception Architecture for Computer Vision"
(CVPR 2016). The paper's Table 1 is internally inconsistent (a known erratum); this is the
layer list cnnbench adopts, the one of the released TF-slim
network: a 7-layer stem to 35×35×192, three 35×35 modules (Fig. 5, keeping a 5×5 branch),
a grid reduction to 17×17×768, four factorized-7×7 modules (Fig. 6, n = 7), a grid reduction to
8×8×1280, two expanded-filter-bank modules (Fig. 7) to 8×8×2048, global pool, dropout, FC.
One auxiliary classifier on the last 17×17 module (AvgPool 5×5/3 → 1×1 128 → 5×5 768 'V' → FC,
with BN: the "BN-auxiliary" of the paper's ablation). Every conv is conv → BN(ε 1e-3) → ReLU.

Inception-v4 — Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning" (AAAI 2017), Figs. 3–9: stem (Fig. 3) → 35×35×384,
4 × Inception-A (Fig. 4), Reduction-A (Fig. 7, k, l, m, n = 192, 224, 256, 384; Table 1) →
17×17×1024, 7 × Inception-B (Fig. 5), Reduction-B (Fig. 8) → 8×8×1536, 3 × Inception-C (Fig. 6),
average pooling, dropout (keep 0.8), FC. No auxiliary head (the paper describes none).
Figures are missing from the seed text; widths, kernel orientations and branch orders follow
the TF-slim release.

`inception_v2` is BN-Inception (Ioffe & Szegedy 2015), the name the Inception-v4 paper gives it; it
lives in `bn_inception.py`. The Rethinking paper's own "Inception-v2" (its Table 1 before the training
changes of its ablation) is not built: its layer-level form cannot be told apart from `inception_v3`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cnnbench.models._inception_parts import (
    INCEPTION_BN_EPS,
    Block,
    Mixed,
    V,
    aux_pool,
    avgpool,
    check_aux_weights,
    conv,
    init_bn_net,
    maxpool,
    parse_scaling,
    round_width,
    split,
)
from cnnbench.models.layers import ConvBNAct
from cnnbench.models.registry import INCEPTION_MEAN, INCEPTION_STD, ModelInfo, register_model

# ============================================================================ Inception-v3
V3_STEM: Block = ((
    conv(32, 3, 2, V),  # 299 → 149
    conv(32, 3, 1, V),  # → 147
    conv(64, 3),  # 147, padded
    maxpool(),  # → 73
    conv(80, 1, 1, V),
    conv(192, 3, 1, V),  # → 71
    maxpool(),  # → 35×35×192
),)


def v3_module_a(pool_features: int) -> Block:
    """Fig. 5 module at 35×35 (TF-slim keeps one 5×5 branch beside the factorized 3×3-3×3)."""
    return (
        (conv(64),),
        (conv(48), conv(64, 5)),
        (conv(64), conv(96, 3), conv(96, 3)),
        (avgpool(), conv(pool_features)),
    )


V3_REDUCTION_35: Block = (  # 35×35×288 → 17×17×768 (§5-style grid reduction)
    (conv(384, 3, 2, V),),
    (conv(64), conv(96, 3), conv(96, 3, 2, V)),
    (maxpool(),),
)


def v3_module_b(c7: int) -> Block:
    """Fig. 6 module at 17×17: n×n factorized into 1×n and n×1, n = 7."""
    return (
        (conv(192),),
        (conv(c7), conv(c7, (1, 7)), conv(192, (7, 1))),
        (conv(c7), conv(c7, (7, 1)), conv(c7, (1, 7)), conv(c7, (7, 1)), conv(192, (1, 7))),
        (avgpool(), conv(192)),
    )


V3_REDUCTION_17: Block = (  # 17×17×768 → 8×8×1280
    (conv(192), conv(320, 3, 2, V)),
    (conv(192), conv(192, (1, 7)), conv(192, (7, 1)), conv(192, 3, 2, V)),
    (maxpool(),),
)

V3_MODULE_C: Block = (  # Fig. 7 module at 8×8: expanded filter bank (1×3 ‖ 3×1 outputs)
    (conv(320),),
    (conv(384), split(conv(384, (1, 3)), conv(384, (3, 1)))),
    (conv(448), conv(384, 3), split(conv(384, (1, 3)), conv(384, (3, 1)))),
    (avgpool(), conv(192)),
)

# (name, block) in network order; output grid and depth at 299² in the comment.
INCEPTION_V3: tuple[tuple[str, Block], ...] = (
    ("stem", V3_STEM),  # 35×35×192
    ("mixed_5b", v3_module_a(32)),  # 35×35×256
    ("mixed_5c", v3_module_a(64)),  # 35×35×288
    ("mixed_5d", v3_module_a(64)),  # 35×35×288
    ("mixed_6a", V3_REDUCTION_35),  # 17×17×768
    ("mixed_6b", v3_module_b(128)),  # 17×17×768
    ("mixed_6c", v3_module_b(160)),
    ("mixed_6d", v3_module_b(160)),
    ("mixed_6e", v3_module_b(192)),  # 17×17×768 — aux head taps here
    ("mixed_7a", V3_REDUCTION_17),  # 8×8×1280
    ("mixed_7b", V3_MODULE_C),  # 8×8×2048
    ("mixed_7c", V3_MODULE_C),  # 8×8×2048
)
V3_AUX_TAP = "mixed_6e"
V3_AUX_WEIGHTS = (0.4,)  # TF-slim / TF inception training code; the paper gives no weight


class AuxHeadV3(nn.Module):
    """AvgPool 5×5/3 'V' (17 → 5) → 1×1 conv 128 → 5×5 conv 768 'V' (5 → 1) → FC; BN on both convs."""

    pool_size = 5

    def __init__(self, in_ch: int, num_classes: int, width_mult: float = 1.0) -> None:
        super().__init__()
        red, mid = round_width(128, width_mult), round_width(768, width_mult)
        self.conv0 = ConvBNAct(in_ch, red, 1, bn_eps=INCEPTION_BN_EPS)
        self.conv1 = ConvBNAct(red, mid, 5, padding=0, bn_eps=INCEPTION_BN_EPS)
        self.fc = nn.Linear(mid, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(aux_pool(x, 5, 3, self.pool_size)))
        return self.fc(torch.flatten(x, 1))


class InceptionNet(nn.Module):
    """A stack of table rows (`Mixed` blocks), global average pooling, dropout, FC, and optionally
    one aux head on a named row. Training mode with the aux head returns `(logits, aux)`."""

    def __init__(self, layout: Sequence[tuple[str, Block]], num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, width_mult: float = 1.0, aux_tap: str | None = None,
                 aux_weights: Sequence[float] = ()) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        ch = in_chans
        for name, block in layout:
            layers[name] = Mixed(ch, block, width_mult)
            ch = layers[name].out_channels
        self.features = nn.Sequential(layers)
        self.num_features = ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.aux_tap = aux_tap
        self.aux_head = None
        self.aux_weights: tuple[float, ...] = ()
        if aux_tap is not None:
            self.aux_weights = check_aux_weights(aux_weights, 1, "inception_v3")
            self.aux_head = AuxHeadV3(layers[aux_tap].out_channels, num_classes, width_mult)
        init_bn_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux = None
        for name, layer in self.features.named_children():
            x = layer(x)
            if self.training and self.aux_head is not None and name == self.aux_tap:
                aux = self.aux_head(x)
        logits = self.fc(self.dropout(torch.flatten(self.pool(x), 1)))
        return (logits, aux) if aux is not None else logits


@register_model(ModelInfo(
    name="inception_v3", family="inception",
    paper="Szegedy et al. 2016, 'Rethinking the Inception Architecture', Table 1 (TF-slim reading) and Figs. 5-7",
    input_size=299, min_input_size=75,
    mean=INCEPTION_MEAN, std=INCEPTION_STD,
    paper_params=23_834_568, paper_macs=5.71e9,
    paper_top1=1 - 0.212, paper_top5=1 - 0.056,
    reference_source=(
        "params: exact count of the layer list above, aux head off "
        "(27,161,264 with it); MACs: ≈5.7 G, the TF-slim figure (the paper's abstract says "
        "'5 billion multiply-adds'); top-1/top-5: 21.2% / 5.6% single-crop error (paper abstract; "
        "Inception-v4 paper Table 2, non-blacklisted val)"
    ),
    aux_weights=V3_AUX_WEIGHTS,
))
def build_inception_v3(num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True,
                       aux_weights: Sequence[float] = V3_AUX_WEIGHTS,
                       scaling: Mapping[str, Any] | None = None,
                       avg_pool_count_include_pad: bool = False) -> InceptionNet:
    """`avg_pool_count_include_pad=True`: the modules' 3×3/1 average pools count the padded zeros in their mean
    (PyTorch's default, which torchvision's inception_v3 uses) instead of leaving them out (TF semantics);
    this changes the outputs at the borders only (docs/pretrained.md)."""
    net = InceptionNet(INCEPTION_V3, num_classes, in_chans, drop_rate=0.2, width_mult=parse_scaling(scaling),
                       aux_tap=V3_AUX_TAP if aux_logits else None, aux_weights=aux_weights)
    if avg_pool_count_include_pad:
        for m in net.modules():
            if isinstance(m, nn.AvgPool2d):
                m.count_include_pad = True
    return net


# ============================================================================ Inception-v4
# Fig. 3 stem (shared with Inception-ResNet-v2), as four rows so each concat is one `Mixed`.
V4_STEM: tuple[tuple[str, Block], ...] = (
    ("stem_a", ((conv(32, 3, 2, V), conv(32, 3, 1, V), conv(64, 3)),)),  # 147×147×64
    ("stem_b", ((maxpool(),), (conv(96, 3, 2, V),))),  # 73×73×160
    ("stem_c", (
        (conv(64), conv(96, 3, 1, V)),
        (conv(64), conv(64, (1, 7)), conv(64, (7, 1)), conv(96, 3, 1, V)),
    )),  # 71×71×192
    ("stem_d", ((conv(192, 3, 2, V),), (maxpool(),))),  # 35×35×384
)

V4_INCEPTION_A: Block = (  # Fig. 4, 35×35×384
    (conv(96),),
    (conv(64), conv(96, 3)),
    (conv(64), conv(96, 3), conv(96, 3)),
    (avgpool(), conv(96)),
)


def reduction_a(k: int, l: int, m: int, n: int) -> Block:  # noqa: E741 — the paper's letters
    """Fig. 7, 35×35 → 17×17; output depth = input + n + m."""
    return (
        (conv(n, 3, 2, V),),
        (conv(k), conv(l, 3), conv(m, 3, 2, V)),
        (maxpool(),),
    )


V4_INCEPTION_B: Block = (  # Fig. 5, 17×17×1024
    (conv(384),),
    (conv(192), conv(224, (1, 7)), conv(256, (7, 1))),
    (conv(192), conv(192, (7, 1)), conv(224, (1, 7)), conv(224, (7, 1)), conv(256, (1, 7))),
    (avgpool(), conv(128)),
)

V4_REDUCTION_B: Block = (  # Fig. 8, 17×17×1024 → 8×8×1536
    (conv(192), conv(192, 3, 2, V)),
    (conv(256), conv(256, (1, 7)), conv(320, (7, 1)), conv(320, 3, 2, V)),
    (maxpool(),),
)

V4_INCEPTION_C: Block = (  # Fig. 6, 8×8×1536
    (conv(256),),
    (conv(384), split(conv(256, (1, 3)), conv(256, (3, 1)))),
    (conv(384), conv(448, (3, 1)), conv(512, (1, 3)), split(conv(256, (1, 3)), conv(256, (3, 1)))),
    (avgpool(), conv(256)),
)

V4_KLMN = (192, 224, 256, 384)  # Table 1

INCEPTION_V4: tuple[tuple[str, Block], ...] = (
    *V4_STEM,  # 35×35×384
    *((f"inception_a{i + 1}", V4_INCEPTION_A) for i in range(4)),
    ("reduction_a", reduction_a(*V4_KLMN)),  # 17×17×1024
    *((f"inception_b{i + 1}", V4_INCEPTION_B) for i in range(7)),
    ("reduction_b", V4_REDUCTION_B),  # 8×8×1536
    *((f"inception_c{i + 1}", V4_INCEPTION_C) for i in range(3)),
)


@register_model(ModelInfo(
    name="inception_v4", family="inception",
    paper="Szegedy et al. 2017, 'Inception-v4, Inception-ResNet…', Figs. 3-9, Table 1",
    input_size=299, min_input_size=75,
    mean=INCEPTION_MEAN, std=INCEPTION_STD,
    paper_params=42_679_816, paper_macs=12.25e9,
    paper_top1=1 - 0.200, paper_top5=1 - 0.050,
    reference_source=(
        "params/MACs: exact count of Figs. 3-9 (matches the TF-slim release); "
        "top-1/top-5: Table 2, 20.0% / 5.0% single-crop error on the non-blacklisted val subset"
    ),
))
def build_inception_v4(num_classes: int = 1000, in_chans: int = 3,
                       scaling: Mapping[str, Any] | None = None) -> InceptionNet:
    return InceptionNet(INCEPTION_V4, num_classes, in_chans, drop_rate=0.2, width_mult=parse_scaling(scaling))


__all__ = ["INCEPTION_V3", "INCEPTION_V4", "InceptionNet", "V4_STEM", "reduction_a"]
