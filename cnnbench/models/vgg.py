"""VGG — Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), Table 1 (ConvNet configurations A, A-LRN, B, C, D, E) and Table 2 (parameters).

Five conv stacks separated by 2×2/2 max-pooling, every conv with stride 1 and "same" padding
(pad 1 for 3×3, 0 for 1×1) followed by ReLU; then FC-4096, FC-4096 (each with ReLU and dropout
0.5) and FC-classes (§2.1, §3.1). A-LRN adds AlexNet's local response normalisation after the
first conv (§2.1: size 5, α = 1e-4, β = 0.75, k = 2). Configuration C has 1×1 convs in stacks 3–5.

`batch_norm=True` is not in the paper: BN after every conv, before the ReLU (the conv bias is then
dropped, BN's β takes its role). An adaptive average pool to 7×7 in front of the classifier is the
identity at 224² and keeps smaller inputs working. `to_fully_convolutional()` gives the §3.2
dense-evaluation network: FC1 becomes a 7×7 conv, FC2 and FC3 become 1×1 convs.

`scaling: {width_mult: w}` is not in the paper either (a reduction for small-scale runs): every width of
Table 1 — each conv's filters and the two FC-4096 layers — times w, rounded to a multiple of 8 (`round_width`);
w = 0.5 halves them all, a quarter of the multiply-adds of the convs and the FC layers after the first.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models.registry import ModelInfo, register_model
from cnnbench.models.scaling import round_width, width_mult_option

# Table 1, one column per configuration; each inner tuple is one conv stack, the stacks are
# separated by "maxpool". "convK-C" = K×K conv with C output channels; "LRN" = local response norm.
VGG_TABLE1: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "B": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "C": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512"),
    ),
    "E": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
    ),
}
FC_WIDTH = 4096  # FC-4096, FC-4096, FC-classes
FC_INPUT_SIZE = 7  # 224 / 2^5: the last max-pool's output side at the training resolution
DROPOUT = 0.5  # on FC1 and FC2 (§3.1)

# AlexNet's LRN (Krizhevsky et al. 2012, §3.3), which A-LRN uses: b = a / (k + α Σ a²)^β over n = 5
# neighbouring channels. torch.nn.LocalResponseNorm divides α by n, so it gets α·n.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0

# name: (configuration, exact params at 1000 classes (Table 2 rounds them to 133/133/133/134/
# 138/144 M), multiply-adds at 224², single-scale top-1 / top-5 error % (Table 3, S = Q = 256;
# None where no reference is recorded)).
VGG_MODELS = {
    "vgg11": ("A", 132_863_336, 7.609e9, 29.6, 10.4),
    "vgg11_lrn": ("A-LRN", 132_863_336, 7.609e9, 29.7, 10.5),
    "vgg13": ("B", 133_047_848, 11.308e9, 28.7, 9.9),
    "vgg16_c": ("C", 133_638_952, 11.771e9, None, None),
    "vgg16": ("D", 138_357_544, 15.470e9, 27.0, 8.8),
    "vgg19": ("E", 143_667_240, 19.632e9, 27.3, 9.0),
    # `_bn`: batch_norm=True by default (not in the paper): + BN γ/β, − conv biases, i.e. one parameter more per
    # conv channel; the paper gives no accuracy for them. MACs as the plain network (BN folds into the conv).
    "vgg11_bn": ("A", 132_866_088, 7.609e9, None, None),
    "vgg13_bn": ("B", 133_050_792, 11.308e9, None, None),
    "vgg16_bn": ("D", 138_361_768, 15.470e9, None, None),
    "vgg19_bn": ("E", 143_672_744, 19.632e9, None, None),
}


def parse_layer(spec: str) -> tuple[int, int]:
    """ "conv3-256" → (3, 256)."""
    kind, channels = spec.split("-")
    assert kind.startswith("conv"), spec
    return int(kind[len("conv") :]), int(channels)


def make_features(config: str, in_chans: int = 3, batch_norm: bool = False, width_mult: float = 1.0) -> nn.Sequential:
    """The conv part of a Table-1 column: each stack, then a 2×2/2 max-pool."""
    layers: list[nn.Module] = []
    in_ch = in_chans
    for stack in VGG_TABLE1[config]:
        for spec in stack:
            if spec == "LRN":
                layers.append(
                    nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)
                )
                continue
            k, out_ch = parse_layer(spec)
            out_ch = round_width(out_ch, width_mult)
            layers.append(nn.Conv2d(in_ch, out_ch, k, stride=1, padding=k // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
            in_ch = out_ch
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A Table-1 configuration: conv stacks, then FC-4096, FC-4096, FC-classes."""

    def __init__(
        self,
        config: str,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        dropout: float = DROPOUT,
        init: str = "glorot",
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if config not in VGG_TABLE1:
            raise ConfigError(f"config must be one of {', '.join(VGG_TABLE1)}, got {config!r}")
        self.config = config
        self.features = make_features(config, in_chans, batch_norm, width_mult)
        out_ch = round_width(parse_layer(VGG_TABLE1[config][-1][-1])[1], width_mult)
        fc_width = round_width(FC_WIDTH, width_mult)
        self.pool = nn.AdaptiveAvgPool2d(FC_INPUT_SIZE)
        self.classifier = nn.Sequential(
            nn.Linear(out_ch * FC_INPUT_SIZE**2, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )
        vgg_init(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def to_fully_convolutional(self, spatial_average: bool = False) -> FullyConvVGG:
        """The §3.2 dense-evaluation network with this network's weights (copied).

        FC1 becomes a 7×7 conv with 4096 filters, FC2 and FC3 1×1 convs; there is no adaptive
        pooling, so the input must be at least 224² and the output is a class-score map
        (N, classes, h, w) — (N, classes, 1, 1) at 224², equal to this network's logits in eval
        mode. `spatial_average=True` averages the map to (N, classes) ("sum-pooled" in §3.2).
        """
        return FullyConvVGG(self, spatial_average)


class FullyConvVGG(nn.Module):
    """VGG with its FC layers as convolutions (§3.2, "dense evaluation")."""

    def __init__(self, vgg: VGG, spatial_average: bool = False) -> None:
        super().__init__()
        self.features = copy.deepcopy(vgg.features)
        self.spatial_average = spatial_average
        layers: list[nn.Module] = []
        for m in vgg.classifier:
            if isinstance(m, nn.Linear):
                if not layers:  # FC1: its input is the flattened (C, 7, 7) map
                    c = m.in_features // FC_INPUT_SIZE**2
                    conv = nn.Conv2d(
                        c, m.out_features, FC_INPUT_SIZE, device=m.weight.device, dtype=m.weight.dtype
                    )
                else:
                    conv = nn.Conv2d(
                        m.in_features, m.out_features, 1, device=m.weight.device, dtype=m.weight.dtype
                    )
                with torch.no_grad():
                    conv.weight.copy_(m.weight.reshape(conv.weight.shape))
                    conv.bias.copy_(m.bias)
                layers.append(conv)
            else:
                layers.append(copy.deepcopy(m))
        self.classifier = nn.Sequential(*layers)
        self.train(vgg.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classifier(self.features(x))
        return scores.mean(dim=(2, 3)) if self.spatial_average else scores


# §3.1: "we initialised the first four convolutional layers and the last three fully-connected layers with the
# layers of net A (the intermediate layers were initialised randomly)".
NET_A_CONVS_REUSED = 4


def conv_names(config: str) -> dict[str, int]:
    """Each conv of a Table-1 column by its stack-and-position name ("conv3_2": stack 3's second conv) → its
    index in `make_features(config)` of the plain network, read off the layers themselves (no weights made)."""
    names, stack, position = {}, 1, 0
    with torch.device("meta"):
        features = make_features(config)
    for index, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            stack, position = stack + 1, 0
        elif isinstance(layer, nn.Conv2d):
            position += 1
            names[f"conv{stack}_{position}"] = index
    return names


def net_a_keys(src_config: str, dst_config: str, batch_norm: bool = False) -> dict[str, str]:
    """§3.1's start of a deeper configuration from a trained net A: the state_dict keys of A's first four convs
    (conv1_1, conv2_1, conv3_1, conv3_2, which a deeper column has under the same names and shapes) and of its
    three FC layers → the deeper network's keys. The rest of the deeper network keeps its own initialisation.
    Plain networks only (the paper's): with `batch_norm` the columns are not the paper's and nothing maps."""
    if src_config not in ("A", "A-LRN") or dst_config in ("A", "A-LRN") or batch_norm:
        raise ConfigError(f"§3.1 starts a deeper plain configuration (B–E) from net A; got {src_config} → "
                          f"{dst_config}{' with BN' if batch_norm else ''}")
    src, dst = conv_names(src_config), conv_names(dst_config)
    keys = {}
    for name in list(src)[:NET_A_CONVS_REUSED]:
        for tensor in ("weight", "bias"):
            keys[f"features.{src[name]}.{tensor}"] = f"features.{dst[name]}.{tensor}"
    for fc in (0, 3, 6):  # FC-4096, FC-4096, FC-classes in `VGG.classifier`
        for tensor in ("weight", "bias"):
            keys[f"classifier.{fc}.{tensor}"] = f"classifier.{fc}.{tensor}"
    return keys


def vgg_init(model: nn.Module, init: str = "glorot") -> None:
    """§3.1: net A was initialised from N(0, 10⁻²) with zero biases; deeper nets reused A's layers,
    and the paper notes that Glorot & Bengio's init works without that pre-training. `"glorot"`
    (default, usable for every configuration from scratch) or `"normal"` (N(0, 0.01) everywhere)."""
    if init not in ("glorot", "normal"):
        raise ConfigError(f"init must be 'glorot' or 'normal', got {init!r}")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "glorot":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _register(name: str) -> None:
    config, params, macs, top1_err, top5_err = VGG_MODELS[name]
    bn_default = name.endswith("_bn")
    info = ModelInfo(
        name=name, family="vgg",
        paper=f"Simonyan & Zisserman 2015, Table 1 (configuration {config}{', with BN' if bn_default else ''})",
        input_size=224, min_input_size=32,
        crop_pct=0.875,
        paper_params=params, paper_macs=macs,
        paper_top1=round(1 - top1_err / 100, 4) if top1_err is not None else None,
        paper_top5=round(1 - top5_err / 100, 4) if top5_err is not None else None,
        reference_source=(
            "params: exact count of Table 1's layers at 1000 classes (Table 2 rounds it); MACs: exact count "
            "of the layers at 224² (the paper gives none; the ResNet paper quotes 15.3 G / 19.6 G for D / E); "
            + (
                "top-1/top-5: Table 3, single-scale, S = Q = 256 (spec marks these medium confidence)"
                if top1_err is not None
                else "no accuracy recorded"
            )
        ),
    )

    @register_model(info)
    def build(
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = bn_default,
        dropout: float = DROPOUT,
        init: str = "glorot",
        scaling: Mapping[str, Any] | None = None,
    ) -> VGG:
        return VGG(config, num_classes, in_chans, batch_norm=batch_norm, dropout=dropout, init=init,
                   width_mult=width_mult_option(scaling, "VGG"))


for _name in VGG_MODELS:
    _register(_name)
