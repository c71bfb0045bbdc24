"""torchvision's efficientnet_b0…b7 → cnnbench's EfficientNets (Tan & Le 2019, Table 1 + §3.3).

Same blocks, widths, depths, SE sizes and stochastic-depth schedule. BatchNorm differs: torchvision's B0–B4 use
PyTorch's default (ε 1e-5, momentum 0.1), its B5–B7 the reference implementation's (ε 1e-3, momentum 0.01, as
ours): for B0–B4 the import sets `bn_eps=1e-5 bn_momentum=0.1`.
"""
from __future__ import annotations

from torch import nn

from cnnbench.models.efficientnet import EFFICIENTNET_VARIANTS
from cnnbench.pretrained.spec import Pairs, Pretrained

TORCH_DEFAULT_BN = ("b0", "b1", "b2", "b3", "b4")


def cna(tv: str, ours: str) -> Pairs:
    """torchvision's Conv2dNormActivation (0 conv, 1 BN) → our ConvBNAct (the same class underneath)."""
    return [(f"{tv}.0", f"{ours}.0"), (f"{tv}.1", f"{ours}.1")]


def efficientnet_pairs(net) -> Pairs:
    """Stage s of ours is torchvision's features.{s+1}; the block counts are read from our built network."""
    pairs = cna("features.0", "stem")
    for s, stage in enumerate(net.blocks):
        for j, block in enumerate(stage):
            tv, ours = f"features.{s + 1}.{j}.block", f"blocks.{s}.{j}"
            k = 0
            if not isinstance(block.expand, nn.Identity):  # MBConv6: the 1×1 expansion comes first
                pairs += cna(f"{tv}.0", f"{ours}.expand")
                k = 1
            pairs += cna(f"{tv}.{k}", f"{ours}.depthwise")
            pairs += [(f"{tv}.{k + 1}.fc1", f"{ours}.se.fc1"), (f"{tv}.{k + 1}.fc2", f"{ours}.se.fc2")]
            pairs += cna(f"{tv}.{k + 2}", f"{ours}.project")
    pairs += cna(f"features.{len(net.blocks) + 1}", "head")
    return [*pairs, ("classifier.1", "classifier")]


def _entry(variant: str) -> Pretrained:
    options = {"bn_eps": 1e-5, "bn_momentum": 0.1} if variant in TORCH_DEFAULT_BN else {}
    note = "torchvision's B0–B4 use BatchNorm ε 1e-5, momentum 0.1" if options else ""
    return Pretrained(torchvision=f"efficientnet_{variant}", model=f"efficientnet_{variant}",
                      classifier="classifier.1.weight", pairs=lambda sd, net: efficientnet_pairs(net),
                      options=lambda sd, o=options: dict(o), note=note)


ENTRIES = {f"efficientnet_{v}": _entry(v) for v in EFFICIENTNET_VARIANTS}
