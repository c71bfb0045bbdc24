"""Parameter and multiply-add counts (`cnnbench profile`), via torch.utils.flop_counter.

MACs are counted on the meta device where the model allows it, so even the largest models cost
no real compute: `FlopCounterMode` counts FLOPs of matmuls/convolutions and one MAC = 2 FLOPs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int | tuple[int, int], in_chans: int = 3, batch: int = 1) -> float:
    """Multiply-adds of one eval-mode forward pass per image (convs, linears, matmuls)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros(batch, in_chans, h, w, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / batch


def build_on_meta(builder, *args, **kwargs) -> nn.Module:
    """Build a model with its parameters on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return builder(*args, **kwargs)
