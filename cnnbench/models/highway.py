"""Highway networks — Srivastava, Greff & Schmidhuber, "Highway Networks" (arXiv:1505.00387) and
"Training Very Deep Networks" (NIPS 2015), as presented in the CNN lecture (part II, "Highway
Networks").

A highway layer computes

    y = H(x, W_H) · T(x, W_T) + x · C(x, W_C),   C = 1 − T,   T(x) = sigmoid(W_T x + b_T),

so the transform gate T decides how much of the new activation H(x) passes on and the carry gate
1 − T how much of the unmodified input. b_T is initialised negative (`carry_bias`), so a fresh layer
leans towards carrying its input: the lecture's code uses −1, the papers suggest −1, −3, … for
deeper nets. x, y, H(x), T(x) have the same size; dimensions change through a plain layer (the
MLP's first layer) or through subsampling plus zero-padding of the carried x (the conv net's
stage transitions, like the ResNet paper's option-A shortcut).

Two networks:
- `highway_mlp`: (adaptive average pool to input_size², a no-op at that size) → flatten → plain
  FC layer (input → width) → `depth` fully-connected highway layers
  of `width` units → FC-classes. Weights are truncated-normal with std 0.1 and H / plain biases 0.1,
  as in the lecture's TensorFlow code; b_T = `carry_bias` (default −1).
- `highway_conv`: for 32×32 inputs, laid out like the CIFAR ResNets (§4.2 of He et al.): a 3×3
  conv with `width` filters, then `depth − 2` 3×3 conv highway layers in three stages on 32/16/8
  maps with width / 2·width / 4·width filters (the first layer of stages 2 and 3 is strided and its
  carry path is subsampled and zero-padded), global average pooling, FC-classes. `depth` counts the
  first conv, the highway layers and the FC; the default 19 with width 32 has 1.85 M
  parameters, near the Highway-19 row (2.3 M) of the ResNet paper's Table 6. The layers of
  Srivastava et al.'s CIFAR nets (derived from FitNets, with max-pooling) are not reproduced.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnbench.errors import ConfigError
from cnnbench.models.layers import he_init
from cnnbench.models.registry import ModelInfo, register_model
from cnnbench.models.resnet import CIFAR_MEAN, CIFAR_STD, ShortcutA

MNIST_MEAN = (0.1307, 0.1307, 0.1307)
MNIST_STD = (0.3081, 0.3081, 0.3081)
DENSE_STD, DENSE_BIAS = 0.1, 0.1  # lecture's dense(): W ~ truncated normal(0.1), b = 0.1


def dense_init(linear: nn.Linear, bias: float = DENSE_BIAS) -> None:
    nn.init.trunc_normal_(linear.weight, std=DENSE_STD, a=-2 * DENSE_STD, b=2 * DENSE_STD)
    nn.init.constant_(linear.bias, bias)


def highway(h: torch.Tensor, t: torch.Tensor, carried: torch.Tensor) -> torch.Tensor:
    """The highway equation y = H(x)·T(x) + x·C(x) with the carry gate C = 1 − T."""
    return h * t + carried * (1 - t)


class HighwayLinear(nn.Module):
    """One fully-connected highway layer: y = H(x)·T(x) + x·(1 − T(x))."""

    def __init__(self, width: int, carry_bias: float = -1.0) -> None:
        super().__init__()
        self.h = nn.Linear(width, width)  # H(x) = ReLU(W_H x + b_H)
        self.t = nn.Linear(width, width)  # T(x) = sigmoid(W_T x + b_T)
        self.act = nn.ReLU()
        dense_init(self.h)
        dense_init(self.t, bias=carry_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.t(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return highway(self.act(self.h(x)), self.transform_gate(x), x)


class HighwayMLP(nn.Module):
    """Plain FC layer to `width`, `depth` highway layers, FC-classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        input_size: int = 28,
        depth: int = 10,
        width: int = 50,
        carry_bias: float = -1.0,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ConfigError(f"depth and width must be >= 1, got depth={depth}, width={width}")
        self.input_shape = (in_chans, input_size, input_size)
        # Like the global pooling of the conv nets' heads, this lets the MLP take other image sizes:
        # inputs are average-pooled (adaptively) to input_size² first; a no-op at input_size².
        self.resize = nn.AdaptiveAvgPool2d(input_size)
        self.plain = nn.Linear(in_chans * input_size * input_size, width)
        self.act = nn.ReLU()
        self.layers = nn.Sequential(*[HighwayLinear(width, carry_bias) for _ in range(depth)])
        self.fc = nn.Linear(width, num_classes)
        dense_init(self.plain)
        dense_init(self.fc, bias=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.input_shape[0]:
            raise ValueError(
                f"highway_mlp was built for {self.input_shape[0]} input channels, got {x.shape[1]}"
            )
        x = self.resize(x)  # identity at input_size²
        x = self.act(self.plain(torch.flatten(x, 1)))
        return self.fc(self.layers(x))


class HighwayConv2d(nn.Module):
    """One 3×3 conv highway layer. With `stride > 1` or more output channels, the carried x is
    subsampled and zero-padded (no parameters)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int = 1, carry_bias: float = -2.0, batch_norm: bool = True
    ) -> None:
        super().__init__()
        h: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=not batch_norm)]
        if batch_norm:
            h.append(nn.BatchNorm2d(out_ch))
        h.append(nn.ReLU(inplace=True))
        self.h = nn.Sequential(*h)  # H(x) = ReLU(BN(conv(x)))
        self.t = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True)  # T(x) = sigmoid(conv(x) + b_T)
        self.carry = ShortcutA(in_ch, out_ch, stride) if (stride != 1 or in_ch != out_ch) else nn.Identity()
        self.carry_bias = carry_bias

    def reset_gate(self) -> None:
        nn.init.kaiming_normal_(self.t.weight, nonlinearity="sigmoid")  # unit gain, fan-in
        nn.init.constant_(self.t.bias, self.carry_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.t(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return highway(self.h(x), self.transform_gate(x), self.carry(x))


def stage_depths(num_layers: int, stages: int = 3) -> tuple[int, ...]:
    """Split the highway layers over the stages as evenly as possible, earlier stages first."""
    base, extra = divmod(num_layers, stages)
    return tuple(base + (1 if i < extra else 0) for i in range(stages))


class HighwayConvNet(nn.Module):
    """3×3 conv, three stages of conv highway layers (32/16/8 maps), global average pool, FC."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        depth: int = 19,
        width: int = 32,
        carry_bias: float = -2.0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if depth < 5:
            raise ConfigError(
                f"depth counts the first conv, >= 3 highway layers and the FC: >= 5, got {depth}"
            )
        widths = (width, 2 * width, 4 * width)
        self.stage_depths = stage_depths(depth - 2)
        stem: list[nn.Module] = [nn.Conv2d(in_chans, width, 3, 1, 1, bias=not batch_norm)]
        if batch_norm:
            stem.append(nn.BatchNorm2d(width))
        stem.append(nn.ReLU(inplace=True))
        self.stem = nn.Sequential(*stem)
        stages = []
        in_ch = width
        for stage, (out_ch, n) in enumerate(zip(widths, self.stage_depths, strict=True)):
            layers = []
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(HighwayConv2d(in_ch, out_ch, stride, carry_bias, batch_norm))
                in_ch = out_ch
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        he_init(self)
        nn.init.kaiming_uniform_(self.fc.weight, a=5**0.5)  # PyTorch's default Linear init
        for m in self.modules():
            if isinstance(m, HighwayConv2d):
                m.reset_gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model(
    ModelInfo(
        name="highway_mlp", family="highway",
        paper="Srivastava et al. 2015 (Highway Networks); CNN lecture part II, 'Highway Networks'",
        input_size=28, min_input_size=28,
        crop_pct=1.0,
        mean=MNIST_MEAN, std=MNIST_STD,
        reference_num_classes=10,
        reference_source="no reference numbers: the lecture gives the equations and the layer code only; "
        "the flattened input size is in_chans × input_size² (MNIST-like 28×28 by default; other image "
        "sizes are adaptively average-pooled to input_size² first)",
    )
)
def build_highway_mlp(
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    depth: int = 10,
    width: int = 50,
    carry_bias: float = -1.0,
) -> HighwayMLP:
    return HighwayMLP(num_classes, in_chans, input_size, depth, width, carry_bias)


@register_model(
    ModelInfo(
        name="highway_conv", family="highway",
        paper="Srivastava et al. 2015 (Training Very Deep Networks); layout of He et al. 2015 §4.2",
        input_size=32, min_input_size=8,
        crop_pct=1.0,
        mean=CIFAR_MEAN, std=CIFAR_STD,
        reference_num_classes=10,
        reference_source="no exact reference: this is a CIFAR-ResNet-style layout with highway layers, not "
        "Srivastava et al.'s network; the ResNet paper's Table 6 lists Highway-19 (2.3M params) at 7.54% "
        "and Highway-32 (1.25M) at 8.80% CIFAR-10 test error for comparison",
    )
)
def build_highway_conv(
    num_classes: int = 10,
    in_chans: int = 3,
    depth: int = 19,
    width: int = 32,
    carry_bias: float = -2.0,
    batch_norm: bool = True,
) -> HighwayConvNet:
    return HighwayConvNet(num_classes, in_chans, depth, width, carry_bias, batch_norm)
