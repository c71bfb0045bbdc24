"""Pieces shared by several model families."""
from __future__ import annotations

from torch import nn


class ConvBNAct(nn.Sequential):
    """conv → BatchNorm → activation (BN after every conv, before the nonlinearity; Ioffe & Szegedy 2015)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        if padding is None:
            k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = (k[0] // 2, k[1] // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.SiLU, nn.ReLU6) else act())
        super().__init__(*layers)


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal init for convs (fan_out, ReLU), BN to (1, 0), linear N(0, 0.01)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
