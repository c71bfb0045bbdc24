"""ResNet — He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (2015).

CIFAR-10 networks of §4.2: 6n+2 weighted layers — a 3×3 conv with 16 filters, then three
stages of n basic blocks on 32×32 / 16×16 / 8×8 maps with 16 / 32 / 64 filters, the first conv
of stages 2 and 3 strided, global average pooling, a 10-way FC. Shortcuts are option A
(strided identity + zero-padded channels), so residual and plain nets have identical parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models.layers import he_init
from cnnbench.models.registry import ModelInfo, register_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# §4.2: depth 6n+2 for n in {3, 5, 7, 9, 18, 200}; exact params at 10 classes (incl. BN) and
# multiply-adds at 32×32 (resnet_lecture.md §1.6; the paper's Table 6 rounds them).
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


class CifarBasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, + shortcut, ReLU (Fig. 2). `residual=False` gives the plain pair."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = ShortcutA(in_ch, out_ch, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


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
        name=name,
        family="resnet_cifar",
        paper="He et al. 2015, §4.2 (CIFAR-10, 6n+2 layers, option A)",
        input_size=32,
        min_input_size=8,
        crop_pct=1.0,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        reference_num_classes=10,
        paper_params=params,
        paper_macs=macs,
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
