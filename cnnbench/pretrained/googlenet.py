"""torchvision's googlenet: refused, with the reason (docs/pretrained.md).

torchvision's GoogLeNet is not the paper's network with BN added (cnnbench's `googlenet batch_norm=true`):
the "5×5" branch of every Inception module is a 3×3 conv (Table 1 of Szegedy et al. 2015 says 5×5), the max-pool
in front of 5a is 2×2/2 (Table 1: 3×3/2), and its aux heads pool adaptively to 4×4 (§5: 5×5/3 average pooling).
Its weights therefore compute another function in our GoogLeNet — no table can map them.
"""
from __future__ import annotations

from cnnbench.pretrained.spec import Pretrained

REFUSAL = ("torchvision's googlenet is not the paper's GoogLeNet with BN: the '5×5' branch of its Inception "
           "modules is a 3×3 conv (inception3a.branch3.1.conv.weight is [32, 16, 3, 3]; Table 1 and "
           "model=googlenet: [32, 16, 5, 5]), its pool before 5a is 2×2/2 (Table 1: 3×3/2) and its aux heads pool "
           "adaptively to 4×4 (§5: 5×5/3), so its weights cannot compute the same function in model=googlenet")

ENTRIES = {"googlenet": Pretrained(torchvision="googlenet", model="googlenet", classifier="fc.weight",
                                   pairs=lambda sd, net: [], options=lambda sd: {}, refusal=REFUSAL)}
