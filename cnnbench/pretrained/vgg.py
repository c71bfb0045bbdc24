"""torchvision's vgg11/13/16/19 and their `_bn` forms → cnnbench's VGG (Simonyan & Zisserman 2015, Table 1).

The layer lists are the same (conv, [BN,] ReLU per conv, a max-pool after each stack; FC-4096, FC-4096, FC), so
the module indices coincide. torchvision's `_bn` convs keep a bias in front of their BN, ours have none (BN's β
takes its role, Ioffe & Szegedy 2015 §3.2): BN subtracts the mean, so a bias b in front of it is the same function
as running_mean − b without it, in eval and in training (the batch mean absorbs b). The import folds it so.
"""
from __future__ import annotations

from cnnbench.models.vgg import VGG_TABLE1
from cnnbench.pretrained.spec import Pairs, Pretrained

CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def vgg_layers(config: str, batch_norm: bool) -> tuple[Pairs, list[tuple[str, str]]]:
    """(torchvision module, cnnbench module) pairs and the (conv, BN) pairs whose conv bias is folded."""
    pairs: Pairs = []
    folds: list[tuple[str, str]] = []
    index = 0
    for stack in VGG_TABLE1[config]:
        for _ in stack:
            pairs.append((f"features.{index}", f"features.{index}"))
            if batch_norm:
                pairs.append((f"features.{index + 1}", f"features.{index + 1}"))
                folds.append((f"features.{index}", f"features.{index + 1}"))
            index += 3 if batch_norm else 2  # conv, [BN,] ReLU
        index += 1  # the stack's max-pool
    pairs += [("classifier.0", "classifier.0"), ("classifier.3", "classifier.3"), ("classifier.6", "classifier.6")]
    return pairs, folds


def _entry(name: str, batch_norm: bool) -> Pretrained:
    pairs, folds = vgg_layers(CONFIGS[name], batch_norm)
    full = f"{name}_bn" if batch_norm else name
    note = ("its conv biases are folded into the BN running means (same function, docs/pretrained.md)"
            if batch_norm else "")
    return Pretrained(torchvision=full, model=full, classifier="classifier.6.weight",
                      pairs=lambda sd, net, p=pairs: list(p), options=lambda sd: {}, folds=tuple(folds), note=note)


ENTRIES = {**{n: _entry(n, False) for n in CONFIGS}, **{f"{n}_bn": _entry(n, True) for n in CONFIGS}}
