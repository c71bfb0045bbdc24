"""EfficientNet-B0…B7 — Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs" (ICML 2019).

B0 is Table 1 of the paper: a 3×3 stem, seven stages of mobile inverted bottlenecks (MBConv1 /
MBConv6 with squeeze-and-excitation) and a 1×1 conv + pooling + FC head. B1–B7 scale it with the
compound method of §3.3 (`cnnbench.models.scaling`), using the published per-model coefficients
(width, depth, resolution, dropout) of the reference implementation, which are not
exactly α^φ, β^φ, γ^φ. A `scaling` option with `phi` builds the pure compound-scaled network instead.

Details the paper leaves out come from its reference implementation:
- MBConv: 1×1 expand (absent at ratio 1) → k×k depthwise → SE → 1×1 linear projection. The SE
  bottleneck is 0.25 × the block's *input* channels (not the expanded ones), SiLU inside, sigmoid gate.
- Identity skip only for stride 1 and equal in/out channels; on those blocks stochastic depth drops
  the residual branch per sample with a rate rising linearly over the global block index i
  (0-based, N blocks): drop_path_rate · i / N, i.e. 0 … drop_path_rate·(N−1)/N.
- SiLU everywhere; BatchNorm after every conv except the SE convs, TF momentum 0.99 (PyTorch 0.01),
  eps 1e-3; channels rounded to multiples of 8, repeats rounded up.
- Init: convs N(0, sqrt(2 / fan_out)) with fan_out = k·k·out/groups; FC U(±1/sqrt(num_classes)).
- Padding is symmetric k//2 (same output sizes as TF 'SAME'; only weight porting would differ).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from cnnbench.errors import ConfigError
from cnnbench.models.layers import ConvBNAct
from cnnbench.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, register_model
from cnnbench.models.scaling import Scaling, resolve_scaling, round_filters, round_repeats

BN_MOMENTUM = 0.01  # TF decay 0.99 (§5.2: "batch norm momentum 0.99")
BN_EPS = 1e-3  # reference implementation
SE_RATIO = 0.25
BASE_RESOLUTION = 224  # B0 (Table 1)
STEM_CHANNELS = 32  # Table 1, stage 1 (Conv3x3, stride 2)
HEAD_CHANNELS = 1280  # Table 1, stage 9 (Conv1x1 & Pooling & FC)

# Table 1 of the paper, stages 2–8: (stage, operator, kernel, stride of the first layer, channels, layers).
# MBConvN = expansion ratio N. Strides are the reference implementation's (Table 1 gives resolutions).
B0_BLOCKS: tuple[tuple[int, str, int, int, int, int], ...] = (
    (2, "MBConv1", 3, 1, 16, 1),
    (3, "MBConv6", 3, 2, 24, 2),
    (4, "MBConv6", 5, 2, 40, 2),
    (5, "MBConv6", 3, 2, 80, 3),
    (6, "MBConv6", 5, 1, 112, 3),
    (7, "MBConv6", 5, 2, 192, 4),
    (8, "MBConv6", 3, 1, 320, 1),
)

# Published coefficients (reference implementation): width, depth, native resolution,
# dropout before the FC; eval crop fraction res/(res+32); Table 2 params/accuracy; exact params at
# 1000 classes and multiply-adds at the native resolution (analytic counts of this architecture,
# Table 2 rounds them to 5.3M/0.39B … 66M/37B).
EFFICIENTNET_VARIANTS: dict[str, dict[str, Any]] = {
    "b0": dict(width=1.0, depth=1.0, res=224, dropout=0.2, crop=0.875, params=5_288_548, macs=0.388e9, top1=0.771, top5=0.933),
    "b1": dict(width=1.0, depth=1.1, res=240, dropout=0.2, crop=0.882, params=7_794_184, macs=0.691e9, top1=0.791, top5=0.944),
    "b2": dict(width=1.1, depth=1.2, res=260, dropout=0.3, crop=0.890, params=9_109_994, macs=0.999e9, top1=0.801, top5=0.949),
    "b3": dict(width=1.2, depth=1.4, res=300, dropout=0.3, crop=0.904, params=12_233_232, macs=1.836e9, top1=0.816, top5=0.957),
    "b4": dict(width=1.4, depth=1.8, res=380, dropout=0.4, crop=0.922, params=19_341_616, macs=4.413e9, top1=0.829, top5=0.964),
    "b5": dict(width=1.6, depth=2.2, res=456, dropout=0.4, crop=0.934, params=30_389_784, macs=10.307e9, top1=0.836, top5=0.967),
    "b6": dict(width=1.8, depth=2.6, res=528, dropout=0.5, crop=0.943, params=43_040_704, macs=19.137e9, top1=0.840, top5=0.968),
    "b7": dict(width=2.0, depth=3.1, res=600, dropout=0.5, crop=0.949, params=66_347_960, macs=37.869e9, top1=0.843, top5=0.970),
}


def preset(variant: str) -> dict[str, Any]:
    """The published coefficient dict of `efficientnet_<variant>`, as `resolve_scaling` takes it."""
    v = EFFICIENTNET_VARIANTS[variant]
    return {"width_mult": v["width"], "depth_mult": v["depth"], "resolution": v["res"]}


# --- regularisers / attention (could move to layers.py if another family needs them) --------------


class DropPath(StochasticDepth):
    """Stochastic depth (Huang et al. 2016) on a residual branch: torchvision's `StochasticDepth` in "row"
    mode — in training each sample's branch is zeroed with probability `rate`, survivors scaled by
    1/(1−rate); identity in eval. Only the rate check (< 1: a branch that is always dropped is a bug) is ours."""

    def __init__(self, rate: float = 0.0) -> None:
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"drop-path rate must be in [0, 1), got {rate}")
        super().__init__(rate, "row")

    @property
    def rate(self) -> float:
        return self.p


class SqueezeExcite(SqueezeExcitation):
    """Squeeze-and-excitation (Hu et al. 2018): torchvision's `SqueezeExcitation` (global average pool →
    1×1 conv to `reduced` → act → 1×1 conv back → sigmoid gate), SiLU inside as in EfficientNet.

    Checkpoints written before it was used name the two convs `reduce` / `expand`; they load unchanged
    (the keys are mapped to torchvision's `fc1` / `fc2`)."""

    OLD_KEYS = {"reduce.": "fc1.", "expand.": "fc2."}

    def __init__(self, channels: int, reduced: int, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__(channels, reduced, activation=act)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for old, new in self.OLD_KEYS.items():
            for suffix in ("weight", "bias"):
                if prefix + old + suffix in state_dict:
                    state_dict[prefix + new + suffix] = state_dict.pop(prefix + old + suffix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# --- the network ------------------------------------------------------------------------------------


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE (Table 1; the block of the reference implementation)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float = SE_RATIO,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        bn = dict(bn_eps=BN_EPS, bn_momentum=BN_MOMENTUM)
        mid = in_ch * expand_ratio  # not re-rounded
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.expand = ConvBNAct(in_ch, mid, 1, act=nn.SiLU, **bn) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel_size, stride, groups=mid, act=nn.SiLU, **bn)
        self.se = SqueezeExcite(mid, max(1, int(in_ch * se_ratio)))  # relative to the block INPUT
        self.project = ConvBNAct(mid, out_ch, 1, act=None, **bn)  # linear bottleneck
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_path_rate = drop_path_rate  # scheduled rate; used only where there is a skip
        self.drop_path = DropPath(drop_path_rate) if self.has_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.drop_path is not None:
            out = self.drop_path(out) + x
        return out


class EfficientNet(nn.Module):
    """The Table 1 network scaled by `scaling` (width / depth multipliers; resolution is data-side)."""

    def __init__(
        self,
        scaling: Scaling,
        dropout: float,
        drop_path_rate: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
        blocks: tuple[tuple[int, str, int, int, int, int], ...] = B0_BLOCKS,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        w, d = scaling.width_mult, scaling.depth_mult
        self.scaling = scaling
        self.input_size = scaling.input_size(BASE_RESOLUTION)  # native side of this network
        bn = dict(bn_eps=BN_EPS, bn_momentum=BN_MOMENTUM)

        stem_ch = round_filters(STEM_CHANNELS, w)
        self.stem = ConvBNAct(in_chans, stem_ch, 3, 2, act=nn.SiLU, **bn)

        layout = []  # (in, out, kernel, stride, expand) per block, in order
        in_ch = stem_ch
        for _stage, operator, kernel, stride, channels, repeats in blocks:
            expand = int(operator.removeprefix("MBConv"))
            out_ch = round_filters(channels, w)
            stage = []
            for i in range(round_repeats(repeats, d)):
                stage.append((in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
            layout.append(stage)
        n_blocks = sum(len(s) for s in layout)

        stages: list[nn.Module] = []
        idx = 0
        for stage in layout:
            mods = []
            for cin, cout, k, s, e in stage:
                mods.append(MBConv(cin, cout, k, s, e, SE_RATIO, drop_path_rate * idx / n_blocks))
                idx += 1
            stages.append(nn.Sequential(*mods))
        self.blocks = nn.Sequential(*stages)

        head_ch = round_filters(HEAD_CHANNELS, w)
        self.head = ConvBNAct(in_ch, head_ch, 1, act=nn.SiLU, **bn)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_ch, num_classes)
        self.num_features = head_ch
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1]
                fan_out = k * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def mbconv_blocks(self) -> list[MBConv]:
        return [b for stage in self.blocks for b in stage]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.forward_features(x)), 1)
        return self.classifier(self.dropout(x))


def _register(variant: str) -> None:
    v = EFFICIENTNET_VARIANTS[variant]
    name = f"efficientnet_{variant}"
    info = ModelInfo(
        name=name, family="efficientnet",
        paper=f"Tan & Le 2019, Table 1 (B0) + §3.3 compound scaling; {variant.upper()} in Table 2",
        input_size=v["res"],
        # TF "same" padding: each of the five stride-2 stages maps n → ceil(n/2), so any side works; below
        # 32 px the last stages run on 1×1 maps (the compound-scaling claim trains at 14-28 px, docs/claims.md)
        min_input_size=8,
        crop_pct=v["crop"],
        interpolation="bicubic",
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        reference_num_classes=1000,
        paper_params=v["params"], paper_macs=v["macs"],
        paper_top1=v["top1"], paper_top5=v["top5"],
        reference_source=(
            "params: exact count of the reference-implementation architecture (Table 2 rounds "
            "it); MACs: analytic count at the native resolution incl. SE (Table 2 rounds it, "
            "and its B4/B5 figures 4.2B/9.9B are ~5% below any analytic count); top-1/top-5: Table 2; "
            "resolution, width/depth coefficients, dropout and crop_pct = res/(res+32): reference "
            "implementation"
        ),
    )

    @register_model(info)
    def build(
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_path_rate: float = 0.2,
        dropout: float = v["dropout"],
        scaling: Mapping[str, Any] | None = None,
    ) -> EfficientNet:
        return EfficientNet(
            resolve_scaling(scaling, preset(variant)),
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            num_classes=num_classes,
            in_chans=in_chans,
        )


for _variant in EFFICIENTNET_VARIANTS:
    _register(_variant)
