"""GoogLeNet (Inception-v1) — Szegedy et al., "Going deeper with convolutions" (CVPR 2015).

Table 1 of the paper, row by row (`GOOGLENET_TABLE1` below mirrors it): a conventional stem
(7×7/2 conv, 3×3/2 max-pool, LRN, 1×1 reduce + 3×3 conv, LRN, 3×3/2 max-pool), nine Inception
modules "with dimension reductions" (§4, Fig. 2b) in three groups separated by 3×3/2 max-pools,
global 7×7 average pooling, dropout 40 %, one linear layer. Every convolution is followed by a
ReLU, including the 1×1 reductions and pool projections. All 3×3/2 max-pools are 'S' in Fig. 3,
i.e. ceil-mode here (112→56→28→14→7). Module outputs are concatenated as [1×1, 3×3, 5×5, pool proj].

Two auxiliary classifiers (§5) sit on the outputs of 4a and 4d: 5×5/3 average pool → 1×1 conv 128
→ FC 1024 → dropout 70 % → FC; used only in training, each loss weighted 0.3.

Options: `aux_logits` (the paper trains with them), `lrn` (the two LocalRespNorm layers of Fig. 3;
size 5, α 1e-4, β 0.75 as in the BVLC Caffe replication), `batch_norm` (the common post-2015 variant:
conv → BN → ReLU everywhere, conv biases dropped — not in the paper), `aux_weights`, `scaling`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cnnbench.models._inception_parts import (
    INCEPTION_BN_EPS,
    aux_pool,
    check_aux_weights,
    parse_scaling,
    round_width,
)
from cnnbench.models.registry import ModelInfo, register_model

# Table 1: module name, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj; "pool" = max pool 3×3/2.
GOOGLENET_TABLE1: tuple[Any, ...] = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    "pool",
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    "pool",
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
AUX_TAPS = ("4a", "4d")  # §5: on top of the outputs of Inception (4a) and (4d)
AUX_WEIGHTS = (0.3, 0.3)  # §5: "the losses of the auxiliary classifiers were weighted by 0.3"


class ConvReLU(nn.Sequential):
    """conv → ReLU (the paper), or conv → BN → ReLU with `batch_norm`."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0, batch_norm: bool = False):
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride, padding, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch, eps=INCEPTION_BN_EPS))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InceptionV1(nn.Module):
    """The Inception module with dimension reductions (Fig. 2b)."""

    def __init__(self, in_ch: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int,
                 pool_proj: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.branch1 = ConvReLU(in_ch, n1x1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(ConvReLU(in_ch, n3x3red, 1, batch_norm=batch_norm),
                                     ConvReLU(n3x3red, n3x3, 3, padding=1, batch_norm=batch_norm))
        self.branch3 = nn.Sequential(ConvReLU(in_ch, n5x5red, 1, batch_norm=batch_norm),
                                     ConvReLU(n5x5red, n5x5, 5, padding=2, batch_norm=batch_norm))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1),  # "MaxPool 3x3+1(S)"
                                     ConvReLU(in_ch, pool_proj, 1, batch_norm=batch_norm))
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    """§5: AvgPool 5×5/3 (V) → 1×1 conv 128 + ReLU → FC 1024 + ReLU → dropout 0.7 → FC."""

    pool_size = 4  # 14×14 → 4×4 at 224² input

    def __init__(self, in_ch: int, num_classes: int, width_mult: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        red, hidden = round_width(128, width_mult), round_width(1024, width_mult)
        self.conv = ConvReLU(in_ch, red, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(red * self.pool_size**2, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(aux_pool(x, 5, 3, self.pool_size))
        x = self.dropout(self.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """Table 1. In training mode with `aux_logits` the forward returns `(logits, aux_4a, aux_4d)`."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True, lrn: bool = True,
                 batch_norm: bool = False, aux_weights: Sequence[float] = AUX_WEIGHTS,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        w = lambda c: round_width(c, width_mult)  # noqa: E731
        bn = batch_norm

        def lrn_layer() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if lrn else nn.Identity()

        def maxpool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)  # "MaxPool 3x3+2(S)"

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = ConvReLU(in_chans, w(64), 7, 2, 3, bn)  # 7×7/2 → 112×112×64
        layers["pool1"] = maxpool()  # → 56×56×64
        layers["norm1"] = lrn_layer()
        layers["conv2_reduce"] = ConvReLU(w(64), w(64), 1, batch_norm=bn)  # "#3×3 reduce" 64
        layers["conv2"] = ConvReLU(w(64), w(192), 3, 1, 1, bn)  # → 56×56×192
        layers["norm2"] = lrn_layer()
        layers["pool2"] = maxpool()  # → 28×28×192
        ch, n_pool = w(192), 3
        for row in GOOGLENET_TABLE1:
            if row == "pool":
                layers[f"pool{n_pool}"] = maxpool()
                n_pool += 1
                continue
            name, *widths = row
            module = InceptionV1(ch, *(w(c) for c in widths), batch_norm=bn)
            layers[f"inception{name}"] = module
            ch = module.out_channels
        self.features = nn.Sequential(layers)
        self.num_features = ch
        self.pool = nn.AdaptiveAvgPool2d(1)  # "avg pool 7×7/1" at 224²
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(ch, num_classes)

        self.aux_heads = None
        self.aux_weights: tuple[float, ...] = ()
        if aux_logits:
            self.aux_weights = check_aux_weights(aux_weights, len(AUX_TAPS), "googlenet")
            self.aux_heads = nn.ModuleDict({
                f"inception{t}": AuxClassifier(layers[f"inception{t}"].out_channels, num_classes, width_mult, bn)
                for t in AUX_TAPS
            })
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no init; the Caffe replication uses Xavier, which is what this does.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        aux: list[torch.Tensor] = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if self.training and self.aux_heads is not None and name in self.aux_heads:
                aux.append(self.aux_heads[name](x))
        logits = self.fc(self.dropout(torch.flatten(self.pool(x), 1)))
        return (logits, *aux) if aux else logits


@register_model(ModelInfo(
    name="googlenet", family="inception",
    paper="Szegedy et al. 2015, 'Going deeper with convolutions', Table 1 and §5",
    input_size=224, min_input_size=32,
    paper_params=6_998_552, paper_macs=1.583e9,
    paper_top1=None, paper_top5=1 - 0.1007,
    reference_source=(
        "params/MACs: exact count of Table 1's filter columns (the printed params/ops "
        "columns are internally inconsistent: conv1, 4c, 5a); 13,378,280 params with both aux heads. "
        "top-5: Table 3, 1 model 1 crop, 10.07% val error; the paper gives no top-1"
    ),
    aux_weights=AUX_WEIGHTS,
))
def build(num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True, lrn: bool = True,
          batch_norm: bool = False, aux_weights: Sequence[float] = AUX_WEIGHTS,
          scaling: Mapping[str, Any] | None = None) -> GoogLeNet:
    return GoogLeNet(num_classes, in_chans, aux_logits=aux_logits, lrn=lrn, batch_norm=batch_norm,
                     aux_weights=aux_weights, width_mult=parse_scaling(scaling))
