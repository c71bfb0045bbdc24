"""AlexNet — Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks" (NIPS 2012), §3 and Fig. 2; and the "one weird trick" widths (Krizhevsky 2014) that
torchvision's `alexnet` uses.

`alexnet` — the 2012 network as one tower (§3.5, Fig. 2 with the two GPU halves joined): five convs
96 11×11/4, 256 5×5, 384 3×3, 384 3×3, 256 3×3, each followed by ReLU (§3.1); local response
normalisation after the ReLUs of conv1 and conv2 (§3.3: k = 2, n = 5, α = 1e-4, β = 0.75); overlapping
max-pooling 3×3/2 (§3.4) after both LRNs and after conv5; FC-4096, FC-4096 (ReLU, dropout 0.5, §4.2),
FC-classes. One tower means every conv sees all channels of the layer below: the paper's convs 2, 4 and 5
only see their own GPU's half, so the two-GPU network has 60,965,224 parameters (§1: "60 million") and
this one 62,378,344. conv1 has padding 2, so a 224² input gives the 55×55 maps of Fig. 2 (the figure's
224 with an 11×11/4 conv is the known inconsistency; without padding 227² would be needed).
Init (§5): weights N(0, 0.01), biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere
(`init="paper"`); `init="he"` gives He-normal convs instead (not in the paper; trains from scratch
without the paper's schedule).

`alexnet_owt` — torchvision's `alexnet`: the widths 64-192-384-256-256 of "One weird trick for
parallelizing convolutional neural networks" (Krizhevsky 2014), no LRN, dropout before each hidden FC
layer. Its module tree and state-dict keys are torchvision's, so torchvision's weights load into it and
it computes the same function.

Both keep torchvision's adaptive 6×6 average pool in front of the classifier: the identity at 224² (the
paper has none), it lets other input sizes (≥ 63², the smallest that survives the three pools) through.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models.layers import he_init
from cnnbench.models.registry import ModelInfo, register_model

# §3, Fig. 2 as data: ("conv", out, kernel, stride, padding) | "lrn" | "pool"; every conv has a ReLU.
ALEXNET_2012: tuple[Any, ...] = (
    ("conv", 96, 11, 4, 2), "lrn", "pool",
    ("conv", 256, 5, 1, 2), "lrn", "pool",
    ("conv", 384, 3, 1, 1),
    ("conv", 384, 3, 1, 1),
    ("conv", 256, 3, 1, 1), "pool",
)
# Krizhevsky 2014 ("one weird trick") widths, torchvision's layer list.
ALEXNET_OWT: tuple[Any, ...] = (
    ("conv", 64, 11, 4, 2), "pool",
    ("conv", 192, 5, 1, 2), "pool",
    ("conv", 384, 3, 1, 1),
    ("conv", 256, 3, 1, 1),
    ("conv", 256, 3, 1, 1), "pool",
)
FC_WIDTH = 4096
POOL_OUT = 6  # 224² → 55 → 27 → 13 → 6
DROPOUT = 0.5  # §4.2
# §3.3: b = a / (k + α Σ a²)^β over n neighbouring channels; torch.nn.LocalResponseNorm divides α by n.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
# §5: "We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as well as
# in the fully-connected hidden layers, with the constant 1"
BIAS_ONE_CONVS = (1, 3, 4)  # conv indices (0-based) whose bias starts at 1


def make_features(table: tuple[Any, ...], in_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = in_chans
    for row in table:
        if row == "lrn":
            layers.append(nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K))
        elif row == "pool":
            layers.append(nn.MaxPool2d(3, 2))  # §3.4 overlapping pooling, s = 2, z = 3
        else:
            _, out, k, s, p = row
            layers += [nn.Conv2d(ch, out, k, s, p), nn.ReLU(inplace=True)]
            ch = out
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """`features` → adaptive 6×6 pool → `classifier`. `dropout_first` puts dropout in front of FC1 and FC2
    (torchvision's order) instead of after the ReLUs of FC1 and FC2 (the paper's, §4.2)."""

    def __init__(self, table: tuple[Any, ...], num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = DROPOUT, dropout_first: bool = False, init: str = "paper") -> None:
        super().__init__()
        self.features = make_features(table, in_chans)
        out_ch = [r for r in table if isinstance(r, tuple)][-1][1]
        self.avgpool = nn.AdaptiveAvgPool2d((POOL_OUT, POOL_OUT))
        fc1, fc2 = nn.Linear(out_ch * POOL_OUT**2, FC_WIDTH), nn.Linear(FC_WIDTH, FC_WIDTH)
        fc3 = nn.Linear(FC_WIDTH, num_classes)
        if dropout_first:  # torchvision: Dropout, FC, ReLU, Dropout, FC, ReLU, FC (keys 1, 4, 6)
            layers = [nn.Dropout(dropout), fc1, nn.ReLU(inplace=True), nn.Dropout(dropout), fc2,
                      nn.ReLU(inplace=True), fc3]
        else:  # §4.2: dropout on the outputs of the two hidden FC layers
            layers = [fc1, nn.ReLU(inplace=True), nn.Dropout(dropout), fc2, nn.ReLU(inplace=True),
                      nn.Dropout(dropout), fc3]
        self.classifier = nn.Sequential(*layers)
        self._init(init)

    def _init(self, init: str) -> None:
        if init not in ("paper", "he"):
            raise ConfigError(f"init must be 'paper' or 'he', got {init!r}")
        if init == "he":
            he_init(self)
            return
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        ones = [convs[i] for i in BIAS_ONE_CONVS] + fcs[:-1]
        for m in convs + fcs:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if any(m is o for o in ones) else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model(ModelInfo(
    name="alexnet", family="alexnet",
    paper="Krizhevsky et al. 2012, §3 and Fig. 2 (one tower)",
    input_size=224, min_input_size=63,
    paper_params=62_378_344, paper_macs=1.1353e9,
    paper_top1=round(1 - 0.407, 4), paper_top5=round(1 - 0.182, 4),
    reference_source=(
        "params/MACs: exact count of Fig. 2's layers as one tower at 224² (the two-GPU net of the paper has "
        "60,965,224 params, §1 '60 million'); top-1/top-5: Table 2, 1 CNN, ILSVRC-2012 val, 40.7% / 18.2% "
        "error (10 patches, two-GPU net)"
    ),
))
def alexnet(num_classes: int = 1000, in_chans: int = 3, dropout: float = DROPOUT, init: str = "paper") -> AlexNet:
    return AlexNet(ALEXNET_2012, num_classes, in_chans, dropout=dropout, init=init)


@register_model(ModelInfo(
    name="alexnet_owt", family="alexnet",
    paper="Krizhevsky 2014, 'One weird trick …' (torchvision's alexnet widths)",
    input_size=224, min_input_size=63,
    paper_params=61_100_840, paper_macs=0.71419e9,
    reference_source="params/MACs: exact count of torchvision.models.alexnet's layers at 224²; no accuracy recorded",
))
def alexnet_owt(num_classes: int = 1000, in_chans: int = 3, dropout: float = DROPOUT,
                init: str = "paper") -> AlexNet:
    return AlexNet(ALEXNET_OWT, num_classes, in_chans, dropout=dropout, dropout_first=True, init=init)
