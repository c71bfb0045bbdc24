"""Pieces shared by several model families."""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.ops import Conv2dNormActivation

# Every BatchNorm module of torch.nn (the subclasses of its private _BatchNorm, named by their public classes; the
# lazy ones become BatchNorm{1,2,3}d on their first forward).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
               nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)


class ConvBNAct(Conv2dNormActivation):
    """conv → BatchNorm → activation (BN after every conv, before the nonlinearity; Ioffe & Szegedy 2015):
    torchvision's `Conv2dNormActivation` (same modules and state-dict keys 0/1/2), with a bias-free conv,
    BatchNorm's eps/momentum as arguments and the padding k//2 per side of the kernel."""

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
        inplace = act in (nn.ReLU, nn.SiLU, nn.ReLU6)  # activations without an `inplace` argument get none
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, groups=groups,
                         norm_layer=partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum),
                         activation_layer=act, inplace=inplace if inplace else None, bias=False)


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
