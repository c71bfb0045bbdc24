"""What one importable torchvision network is (`Pretrained`) and the shape of its mapping table (`Pairs`): the
leaf the family tables (resnet.py, vgg.py, …) and the import (core.py) share (docs/pretrained.md)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

Pairs = list[tuple[str, str]]  # (torchvision module, cnnbench module), in network order


@dataclass(frozen=True)
class Pretrained:
    """One torchvision network and the cnnbench model that computes the same function."""

    torchvision: str  # torchvision builder name
    model: str  # cnnbench registry name
    classifier: str  # torchvision key of the classifier weight (its rows: the class count)
    pairs: Callable[[dict, nn.Module], Pairs]  # (state_dict, our built network) → the table
    options: Callable[[dict], dict]  # state_dict → the cnnbench model options the import sets
    folds: tuple[tuple[str, str], ...] = ()  # (conv, BN): conv bias folded into the BN's running mean
    note: str = ""  # what the options change, printed by the command
    refusal: str | None = None  # set: this network cannot be imported, and why
    transform_input: bool = False  # the weights expect inputs in [-1, 1] (torchvision's transform_input)


__all__ = ["Pairs", "Pretrained"]
