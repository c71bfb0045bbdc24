"""torchvision's resnet18…152 → cnnbench's ImageNet ResNets (He et al. 2015, Table 1).

torchvision's networks are option-B shortcuts (1×1 projection + BN where the shape changes, §3.3) with the
bottleneck's stride on its 3×3 conv ("v1.5"); the paper's bottlenecks stride on the first 1×1. The import
therefore sets `shortcut=B` (and `stride_in_1x1=false` for the bottleneck depths): docs/pretrained.md.
"""
from __future__ import annotations

from cnnbench.models.resnet import IMAGENET_STAGES, IMAGENET_TABLE1
from cnnbench.pretrained.spec import Pairs, Pretrained


def resnet_pairs(depth: int) -> Pairs:
    """(torchvision module, cnnbench module) for every conv, BN and the FC, in network order."""
    kind, repeats, _ = IMAGENET_TABLE1[depth]
    convs = 2 if kind == "basic" else 3
    pairs: Pairs = [("conv1", "stem.0.0"), ("bn1", "stem.0.1")]
    for stage, ((name, _, _), n) in enumerate(zip(IMAGENET_STAGES, repeats, strict=True)):
        for i in range(n):
            tv, ours = f"layer{stage + 1}.{i}", f"stages.{name}.{i}"
            for j in range(convs):
                pairs += [(f"{tv}.conv{j + 1}", f"{ours}.branch.{j}.0"), (f"{tv}.bn{j + 1}", f"{ours}.branch.{j}.1")]
            if i == 0 and (stage > 0 or kind == "bottleneck"):  # option B: a projection where the shape changes
                pairs += [(f"{tv}.downsample.0", f"{ours}.shortcut.0"), (f"{tv}.downsample.1", f"{ours}.shortcut.1")]
    return [*pairs, ("fc", "fc")]


def _entry(depth: int) -> Pretrained:
    bottleneck = IMAGENET_TABLE1[depth][0] == "bottleneck"
    options = {"shortcut": "B", "stride_in_1x1": False} if bottleneck else {"shortcut": "B"}
    note = ("torchvision's ResNet is v1.5: option-B shortcuts, the stride on the bottleneck's 3×3"
            if bottleneck else "torchvision's ResNet has option-B shortcuts (the paper's 18/34 use A)")
    return Pretrained(torchvision=f"resnet{depth}", model=f"resnet{depth}", classifier="fc.weight",
                      pairs=lambda sd, net, d=depth: resnet_pairs(d), options=lambda sd, o=options: dict(o), note=note)


ENTRIES = {f"resnet{d}": _entry(d) for d in IMAGENET_TABLE1}
