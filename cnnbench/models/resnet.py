"""ResNet — He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (2015).

CIFAR-10 networks of §4.2: 6n+2 weighted layers — a 3×3 conv with 16 filters, then three
stages of n basic blocks on 32×32 / 16×16 / 8×8 maps with 16 / 32 / 64 filters, the first conv
of stages 2 and 3 strided, global average pooling, a 10-way FC. Shortcuts are option A
(strided identity + zero-padded channels), so residual and plain nets have identical parameters.

ImageNet networks of §3.3 / Table 1 (below the CIFAR part): a 7×7/2 conv with 64 filters, a
3×3/2 max-pool, four stages conv2_x..conv5_x of basic blocks (18/34 layers) or bottlenecks
(50/101/152 layers) on 56/28/14/7 maps, downsampling by conv3_1, conv4_1 and conv5_1 with
stride 2, global average pooling and a 1000-way FC. BN follows every conv and precedes its ReLU;
the ReLU of a block comes after the addition; no dropout; He init. `plain18` / `plain34` are the
same layer lists without shortcuts (§3.4, "Plain Network").

Shortcut options (§3.3, §4.1 "Identity vs. Projection Shortcuts"):
  A: identity; where the shape changes, strided subsampling + zero-padded extra channels (no params).
  B: 1×1 projection (+ BN) only where the shape changes, identity elsewhere.
  C: 1×1 projection (+ BN) on every shortcut.
The paper's defaults: A for ResNet-18/34 (Table 2), B for ResNet-50/101/152 (Table 3).
`stride_in_1x1=True` puts a bottleneck's stride on its first 1×1 conv (the original models; this
gives Table 1's 3.8 / 7.6 / 11.3 G multiply-adds); `False` puts it on the 3×3 ("v1.5").
The torchvision-style networks are `shortcut="B", stride_in_1x1=False`.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models.layers import ConvBNAct, he_init
from cnnbench.models.registry import ModelInfo, register_model
from cnnbench.models.scaling import resolve_scaling, round_filters, round_repeats

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# §4.2: depth 6n+2 for n in {3, 5, 7, 9, 18, 200}; exact params at 10 classes (incl. BN) and
# multiply-adds at 32×32 (counted from §4.2's layers; the paper's Table 6 rounds them).
CIFAR_DEPTHS = {
    20: (3, 269_722, 40.6e6, 1 - 0.0875),
    32: (5, 464_154, 68.9e6, 1 - 0.0751),
    44: (7, 658_586, 97.2e6, 1 - 0.0717),
    56: (9, 853_018, 125.5e6, 1 - 0.0697),
    110: (18, 1_727_962, 252.9e6, 1 - 0.0643),
    1202: (200, 19_421_274, 2.83e9, 1 - 0.0793),
}
CIFAR_STAGE_WIDTHS = (16, 32, 64)


class ShortcutA(nn.Module):
    """Option A: identity, subsampled by `stride`, with the extra channels zero-padded (no params)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x


class CifarResNet(nn.Module):
    """The 6n+2 CIFAR network of §4.2 (residual, or its plain counterpart)."""

    def __init__(self, n: int, num_classes: int = 10, in_chans: int = 3, residual: bool = True) -> None:
        super().__init__()
        w = CIFAR_STAGE_WIDTHS
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)
        )
        blocks: list[nn.Module] = []
        in_ch = w[0]
        for stage, out_ch in enumerate(w):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(CifarBasicBlock(in_ch, out_ch, stride, residual))
                in_ch = out_ch
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        he_init(self)
        nn.init.kaiming_uniform_(self.fc.weight, a=5**0.5)  # default Linear init for the classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _register_cifar(depth: int, residual: bool) -> None:
    n, params, macs, top1 = CIFAR_DEPTHS[depth]
    name = f"{'resnet' if residual else 'plain'}{depth}"
    info = ModelInfo(
        name=name, family="resnet_cifar",
        paper="He et al. 2015, §4.2 (CIFAR-10, 6n+2 layers, option A)",
        input_size=32, min_input_size=8,
        crop_pct=1.0,
        mean=CIFAR_MEAN, std=CIFAR_STD,
        reference_num_classes=10,
        paper_params=params, paper_macs=macs,
        paper_top1=top1 if residual else None,
        reference_source="params/MACs: exact count of §4.2's layers (Table 6 rounds them); "
        "top-1: Table 6 (CIFAR-10 test error)" if residual else "params/MACs: same layers as the ResNet",
    )

    @register_model(info)
    def build(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
        return CifarResNet(n, num_classes=num_classes, in_chans=in_chans, residual=residual)


for _depth in CIFAR_DEPTHS:
    _register_cifar(_depth, residual=True)
    if _depth != 1202:
        _register_cifar(_depth, residual=False)


# --------------------------------------------------------------------------------------------
# ImageNet networks (§3.3, Table 1)
# --------------------------------------------------------------------------------------------

IMAGENET_STEM = ("conv1", 7, 64, 2)  # 7×7, 64, stride 2 → 112×112; then 3×3 max pool, stride 2 → 56×56
IMAGENET_STAGES = (  # (layer name, output size at 224², width of the block's 3×3 convs)
    ("conv2_x", 56, 64),
    ("conv3_x", 28, 128),
    ("conv4_x", 14, 256),
    ("conv5_x", 7, 512),
)
BOTTLENECK_EXPANSION = 4  # [1×1, c; 3×3, c; 1×1, 4c]

# Table 1, one column per depth: building block, blocks stacked in conv2_x..conv5_x, and the
# "FLOPs" row (multiply-adds at 224², as printed).
IMAGENET_TABLE1 = {
    18: ("basic", (2, 2, 2, 2), 1.8e9),
    34: ("basic", (3, 4, 6, 3), 3.6e9),
    50: ("bottleneck", (3, 4, 6, 3), 3.8e9),
    101: ("bottleneck", (3, 4, 23, 3), 7.6e9),
    152: ("bottleneck", (3, 8, 36, 3), 11.3e9),
}

# Reference numbers of the registered defaults (18/34: option A, 50+: option B, stride in the
# first 1×1). Params: exact count at 1000 classes (convs without bias, BN γ/β, FC with bias;
# counted from Table 1). Top-1/top-5: 10-crop ImageNet val, Table 2 (18/34 A, plain) and
# Table 3 (34 A, 50/101/152 B).
IMAGENET_REFERENCE = {
    # name: (params, top1 error %, top5 error %)
    "resnet18": (11_515_688, 27.88, None),
    "resnet34": (21_623_848, 25.03, 7.76),
    "resnet50": (25_557_032, 22.85, 6.71),
    "resnet101": (44_549_160, 21.75, 6.05),
    "resnet152": (60_192_808, 21.43, 5.71),
    "plain18": (11_515_688, 27.94, None),
    "plain34": (21_623_848, 28.54, 10.02),
}
SHORTCUT_OPTIONS = ("A", "B", "C")


class Projection(nn.Sequential):
    """Eq. 2's W_s: a 1×1 conv (strided where the maps shrink) followed by BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=False), nn.BatchNorm2d(out_ch))


def make_shortcut(option: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """The shortcut of one block under option A, B or C (§3.3)."""
    changes_shape = stride != 1 or in_ch != out_ch
    if option == "C" or (option == "B" and changes_shape):
        return Projection(in_ch, out_ch, stride)
    if option == "A" and changes_shape:
        return ShortcutA(in_ch, out_ch, stride)
    return nn.Identity()


class ResidualBlock(nn.Module):
    """F(x) + shortcut(x), then ReLU (Eq. 1/2, Fig. 5). `shortcut=None` gives the plain stack."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


def basic_block(
    in_ch: int, width: int, out_ch: int, stride: int, stride_in_1x1: bool = True
) -> nn.Sequential:
    """Fig. 5 left: [3×3, c; 3×3, c]; the first conv carries the stride (no 1×1 conv, so
    `stride_in_1x1` has nothing to act on)."""
    return nn.Sequential(
        ConvBNAct(in_ch, width, 3, stride),
        ConvBNAct(width, out_ch, 3, 1, act=None),
    )


class CifarBasicBlock(ResidualBlock):
    """The CIFAR block (§4.2, Fig. 2): `basic_block` (conv3×3-BN-ReLU-conv3×3-BN) + an option-A shortcut,
    then ReLU. `residual=False` gives the plain pair.

    Checkpoints written before this block was a `ResidualBlock` name its layers conv1/bn1/conv2/bn2;
    they load unchanged (the keys are mapped to branch.0.0/branch.0.1/branch.1.0/branch.1.1)."""

    OLD_KEYS = {"conv1.": "branch.0.0.", "bn1.": "branch.0.1.", "conv2.": "branch.1.0.", "bn2.": "branch.1.1."}

    def __init__(self, in_ch: int, out_ch: int, stride: int, residual: bool = True) -> None:
        super().__init__(basic_block(in_ch, out_ch, out_ch, stride), ShortcutA(in_ch, out_ch, stride) if residual else None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            old = next((o for o in self.OLD_KEYS if rest.startswith(o)), None)
            if old is not None:
                state_dict[prefix + self.OLD_KEYS[old] + rest[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def bottleneck_block(
    in_ch: int, width: int, out_ch: int, stride: int, stride_in_1x1: bool = True
) -> nn.Sequential:
    """Fig. 5 right: [1×1, c; 3×3, c; 1×1, 4c]; the stride sits on the first 1×1 or on the 3×3."""
    s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
    return nn.Sequential(
        ConvBNAct(in_ch, width, 1, s1),
        ConvBNAct(width, width, 3, s3),
        ConvBNAct(width, out_ch, 1, 1, act=None),
    )


_BLOCKS = {"basic": (basic_block, 1), "bottleneck": (bottleneck_block, BOTTLENECK_EXPANSION)}


class ImageNetResNet(nn.Module):
    """A Table-1 column: conv1 + max pool, conv2_x..conv5_x, average pool, FC.

    `residual=False` gives the plain counterpart (same layers, no shortcuts). `scaling` (a dict of
    EfficientNet-style keys, resolved by `cnnbench.models.scaling.resolve_scaling`) multiplies every
    conv width (rounded by `round_filters`) and every stage's block count (`round_repeats`); with
    `scaling=None` the network is exactly the paper's. `zero_init_residual=True` starts every residual
    branch's last BN scale at 0, so each block begins as its shortcut (Goyal et al. 2017; torchvision's
    option of the same name); off by default, as §3.4 initialises every layer as He et al. [13].
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: str = "B",
        stride_in_1x1: bool = True,
        residual: bool = True,
        scaling: dict | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in IMAGENET_TABLE1:
            raise ConfigError(f"depth must be one of {sorted(IMAGENET_TABLE1)}, got {depth}")
        option = str(shortcut).upper()
        if option not in SHORTCUT_OPTIONS:
            raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUT_OPTIONS)}, got {shortcut!r}")
        block_kind, repeats, _ = IMAGENET_TABLE1[depth]
        make_branch, expansion = _BLOCKS[block_kind]

        _, stem_k, stem_ch, stem_stride = IMAGENET_STEM
        widths = [w for _, _, w in IMAGENET_STAGES]
        out_widths = [w * expansion for w in widths]
        self.scaling = None
        if scaling is not None:
            if not isinstance(scaling, dict):  # e.g. an OmegaConf DictConfig from the YAML
                scaling = dict(scaling)
            self.scaling = s = resolve_scaling(scaling)
            stem_ch = round_filters(stem_ch, s.width_mult)
            widths = [round_filters(w, s.width_mult) for w in widths]
            out_widths = [round_filters(w, s.width_mult) for w in out_widths]
            repeats = tuple(round_repeats(r, s.depth_mult) for r in repeats)
        self.depth, self.block_kind, self.repeats = depth, block_kind, tuple(repeats)
        self.shortcut_option = option if residual else None
        self.stride_in_1x1, self.zero_init_residual = stride_in_1x1, zero_init_residual and residual

        self.stem = nn.Sequential(
            ConvBNAct(in_chans, stem_ch, stem_k, stem_stride),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: dict[str, nn.Module] = {}
        in_ch = stem_ch
        for stage, ((name, _, _), width, out_ch, n) in enumerate(
            zip(IMAGENET_STAGES, widths, out_widths, repeats, strict=True)
        ):
            blocks = []
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1  # conv3_1, conv4_1, conv5_1 downsample
                branch = make_branch(in_ch, width, out_ch, stride, stride_in_1x1=stride_in_1x1)
                sc = make_shortcut(option, in_ch, out_ch, stride) if residual else None
                blocks.append(ResidualBlock(branch, sc))
                in_ch = out_ch
            stages[name] = nn.Sequential(*blocks)
        self.stages = nn.Sequential(OrderedDict(stages))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch
        he_init(self)
        if self.zero_init_residual:  # not the paper's (§3.4 is He init throughout): Goyal et al. 2017
            zero_branch_ends(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


def zero_branch_ends(model: nn.Module) -> None:
    """Every residual branch's last BN scale γ to 0, so F(x) = 0 and each block starts as its shortcut."""
    for block in model.modules():
        if isinstance(block, ResidualBlock):
            nn.init.zeros_(block.branch[-1][1].weight)


_TORCHVISION_NOTE = (
    "The torchvision-style network is shortcut=B stride_in_1x1=false "
    "(e.g. `cnnbench ... model=resnet50 model.stride_in_1x1=false`)."
)


def _register_imagenet(depth: int, residual: bool) -> None:
    block_kind, _, table_macs = IMAGENET_TABLE1[depth]
    name = f"{'resnet' if residual else 'plain'}{depth}"
    params, top1_err, top5_err = IMAGENET_REFERENCE[name]
    if residual and block_kind == "bottleneck":
        option_text = "option B, stride on the first 1×1"
    elif residual:
        option_text = "option A"
    else:
        option_text = "no shortcuts"
    source = (
        f"params: exact count of Table 1's {depth}-layer column ({option_text}; convs without bias, "
        f"BN γ/β, FC with bias) at 1000 classes; MACs: Table 1 'FLOPs' row (multiply-adds, rounded); "
        "top-1/top-5: Tables 2 and 3 (10-crop, ImageNet val)"
    )
    if residual:
        source += ". " + _TORCHVISION_NOTE
    info = ModelInfo(
        name=name, family="resnet" if residual else "plain",
        paper=f"He et al. 2015, Table 1 ({depth}-layer{', plain' if not residual else ''}, {option_text})",
        input_size=224, min_input_size=32,
        crop_pct=0.875,
        paper_params=params, paper_macs=table_macs,
        paper_top1=round(1 - top1_err / 100, 4),
        paper_top5=round(1 - top5_err / 100, 4) if top5_err is not None else None,
        reference_source=source,
    )

    if not residual:

        @register_model(info)
        def build_plain(
            num_classes: int = 1000, in_chans: int = 3, scaling: dict | None = None
        ) -> ImageNetResNet:
            return ImageNetResNet(depth, num_classes, in_chans, residual=False, scaling=scaling)

    elif block_kind == "basic":

        @register_model(info)
        def build_basic(
            num_classes: int = 1000, in_chans: int = 3, shortcut: str = "A", scaling: dict | None = None,
            zero_init_residual: bool = False) -> ImageNetResNet:
            return ImageNetResNet(depth, num_classes, in_chans, shortcut=shortcut, scaling=scaling,
                                  zero_init_residual=zero_init_residual)

    else:

        @register_model(info)
        def build_bottleneck(
            num_classes: int = 1000,
            in_chans: int = 3,
            shortcut: str = "B",
            stride_in_1x1: bool = True,
            scaling: dict | None = None,
            zero_init_residual: bool = False,
        ) -> ImageNetResNet:
            return ImageNetResNet(
                depth, num_classes, in_chans, shortcut=shortcut, stride_in_1x1=stride_in_1x1, scaling=scaling,
                zero_init_residual=zero_init_residual,
            )


for _depth in IMAGENET_TABLE1:
    _register_imagenet(_depth, residual=True)
    if _depth in (18, 34):
        _register_imagenet(_depth, residual=False)
