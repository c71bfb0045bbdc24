"""Inception-v2 = BN-Inception — Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift" (ICML 2015), §4.2 and the appendix table (Fig. 5).

The name: the Inception-v4 paper (Szegedy et al. 2017, §1) calls the GoogLeNet refined by batch
normalization "Inception-v2"; that is this network (the Rethinking paper's own "v2" is a different one,
see `inception_v3`). The changes to GoogLeNet (§4.2): every 5×5 convolution becomes two successive 3×3
convolutions ("double 3×3", up to 128 filters in the 28² stage); three 28×28 modules instead of two;
average or max pooling inside the modules; no pooling layers between modules — the grid is halved by the
stride-2 modules 3c and 4e, whose 3×3 convs and max-pool have stride 2 and which have no 1×1 column
and no pool projection (the pooled input passes through and is concatenated).

Layers, as the appendix table lists them (`BN_INCEPTION_TABLE` mirrors its columns): 7×7/2 conv 64,
3×3/2 max-pool, 1×1 conv 64 + 3×3 conv 192, 3×3/2 max-pool, inception 3a, 3b, 3c, 4a–4e, 5a, 5b,
global 7×7 average pool, one linear layer. Every conv is conv → BN → ReLU with no conv bias (BN's β
takes its role); there is no LRN (§4.2.1 "Remove Local Response Normalization") and no dropout
(§4.2.1 "Remove Dropout"; `dropout` brings it back). Module outputs are concatenated as
[1×1, 3×3, double 3×3, pool].

Inconsistencies in the table, and what is built:
- the output-size column says 28×28×576 for 3c, though 3c has stride 2 (its 14×14 is what 4a receives);
- it says 576 for 4c and 4d, whose filter columns add up to 160+160+160+128 = 608 and
  96+192+192+128 = 608, and 1024 for 4e, whose columns give 192+256+608 (pass-through) = 1056;
- this file follows the filter columns (which is also what the Caffe replication released with the
  public BN-Inception weights does): 3c → 14×14×576, 4c/4d → 608, 4e → 7×7×1056, 5a/5b → 1024;
- the parameter count it gives (11,285,224 at 1000 classes, BN γ/β included) is not §4.2's
  "13.6·10⁶ parameters"; the table has no parameter column to say where the difference lies;
- the in-module average pools leave the padded zeros out of the mean (TF semantics; the Caffe replication
  counts them) and the convs have no bias (the Caffe replication keeps one before each BN);
- the first conv is a plain 7×7/2 conv as the table's row reads (TF-slim's `inception_v2` makes it
  depthwise-separable; that is not built here).

No auxiliary classifiers: the table describes none (GoogLeNet's two aux heads are left out).
Options: `dropout`, `scaling: {width_mult}` (every width scaled and rounded to multiples of 8, for
small-scale runs). The paper gives no init: He-normal convs, BN (1, 0), N(0, 0.01) classifier.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cnnbench.models._inception_parts import INCEPTION_BN_EPS, init_bn_net, parse_scaling, round_width
from cnnbench.models.layers import ConvBNAct
from cnnbench.models.registry import ModelInfo, register_model

# The appendix table: module, #1×1, #3×3 reduce, #3×3, double #3×3 reduce, double #3×3, pool, pool proj
# (0 = "pass through"), stride. 3c and 4e: "stride 2", no 1×1 column.
BN_INCEPTION_TABLE: tuple[tuple[Any, ...], ...] = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)


def _conv(in_ch: int, out_ch: int, k: int, stride: int = 1) -> ConvBNAct:
    return ConvBNAct(in_ch, out_ch, k, stride, k // 2, bn_eps=INCEPTION_BN_EPS)


class BNInceptionModule(nn.Module):
    """One row of the table: [1×1] ‖ [1×1 → 3×3] ‖ [1×1 → 3×3 → 3×3] ‖ [3×3 pool (→ 1×1 proj)]."""

    def __init__(self, in_ch: int, n1x1: int, n3x3red: int, n3x3: int, nd3x3red: int, nd3x3: int,
                 pool: str, proj: int, stride: int = 1) -> None:
        super().__init__()
        self.branch1 = _conv(in_ch, n1x1, 1) if n1x1 else None
        self.branch2 = nn.Sequential(_conv(in_ch, n3x3red, 1), _conv(n3x3red, n3x3, 3, stride))
        self.branch3 = nn.Sequential(_conv(in_ch, nd3x3red, 1), _conv(nd3x3red, nd3x3, 3),
                                     _conv(nd3x3, nd3x3, 3, stride))
        # padding 1 at both strides: the pooled grid always equals the stride-s 3×3 convs' grid
        pooling = (nn.AvgPool2d(3, stride, 1, count_include_pad=False) if pool == "avg"
                   else nn.MaxPool2d(3, stride, 1))
        self.branch4 = nn.Sequential(pooling, _conv(in_ch, proj, 1)) if proj else nn.Sequential(pooling)
        self.out_channels = n1x1 + n3x3 + nd3x3 + (proj or in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            outs.insert(0, self.branch1(x))
        return torch.cat(outs, 1)


class BNInception(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        w = lambda c: round_width(c, width_mult) if c else 0  # noqa: E731
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = ConvBNAct(in_chans, w(64), 7, 2, 3, bn_eps=INCEPTION_BN_EPS)  # → 112×112×64
        layers["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)  # → 56×56×64
        layers["conv2_reduce"] = _conv(w(64), w(64), 1)  # the stage's "#3×3 reduce" 64
        layers["conv2"] = _conv(w(64), w(192), 3)  # → 56×56×192
        layers["pool2"] = nn.MaxPool2d(3, 2, ceil_mode=True)  # → 28×28×192
        ch = w(192)
        for name, n1, r3, n3, rd, nd, pool, proj, stride in BN_INCEPTION_TABLE:
            module = BNInceptionModule(ch, w(n1), w(r3), w(n3), w(rd), w(nd), pool, w(proj), stride)
            layers[f"inception{name}"] = module
            ch = module.out_channels
        self.features = nn.Sequential(layers)
        self.num_features = ch
        self.pool = nn.AdaptiveAvgPool2d(1)  # "avg pool 7×7" at 224²
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(ch, num_classes)
        init_bn_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


@register_model(ModelInfo(
    name="inception_v2", family="inception",
    paper="Ioffe & Szegedy 2015 (BN-Inception), appendix table (Fig. 5) and §4.2",
    input_size=224, min_input_size=32,
    paper_params=11_285_224, paper_macs=2.0326e9,
    paper_top1=round(1 - 0.252, 4), paper_top5=round(1 - 0.0782, 4),
    reference_source=(
        "params/MACs: exact count of the appendix table's filter columns at 224² (its output column disagrees "
        "for 3c/4c/4d/4e; §4.2 states 13.6·10⁶ params, which the table does not reproduce); top-1/top-5: "
        "§4.2.3 Table 3, BN-Inception single crop 25.2% / 7.82% error (the BN-x30 network of Fig. 3, 74.8% "
        "top-1; BN-x5 reaches 73.0%)"
    ),
))
def inception_v2(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 scaling: Mapping[str, Any] | None = None) -> BNInception:
    return BNInception(num_classes, in_chans, dropout=dropout, width_mult=parse_scaling(scaling))
