"""torchvision's alexnet → cnnbench's `alexnet_owt` (Krizhevsky 2014, "One weird trick", widths 64-192-384-256-256).

`alexnet_owt` is written with torchvision's module indices (conv, ReLU, pool in one `features` Sequential; dropout,
FC, ReLU in `classifier`), so the table pairs each module with itself. The 2012 one-tower `alexnet` (96-256-384-384-256,
LRN) has no torchvision counterpart.
"""
from __future__ import annotations

from cnnbench.pretrained.spec import Pretrained

_MODULES = ["features.0", "features.3", "features.6", "features.8", "features.10",
            "classifier.1", "classifier.4", "classifier.6"]

ENTRIES = {
    "alexnet_owt": Pretrained(torchvision="alexnet", model="alexnet_owt", classifier="classifier.6.weight",
                              pairs=lambda sd, net: [(m, m) for m in _MODULES], options=lambda sd: {}),
}
