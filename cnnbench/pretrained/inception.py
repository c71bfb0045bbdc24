"""torchvision's inception_v3 → cnnbench's inception_v3 (Szegedy et al. 2016; the TF-slim layer list both follow).

Same layers and branch order; torchvision's 3×3/1 average pools count the padded zeros (PyTorch's default), ours
leave them out (TF): the import sets `avg_pool_count_include_pad=true`. The aux head is imported when the file has
one (`aux_logits` follows the file).
"""
from __future__ import annotations

from cnnbench.pretrained.spec import Pairs, Pretrained

STEM = (("Conv2d_1a_3x3", "0"), ("Conv2d_2a_3x3", "1"), ("Conv2d_2b_3x3", "2"),
        ("Conv2d_3b_1x1", "4"), ("Conv2d_4a_3x3", "5"))  # stem indices 3 and 6 are max-pools
# torchvision's branch names → (branch, layer) of our block tables (`cnnbench.models.inception`); index 0 of a
# pool branch is the pool itself.
MODULE_A = (("branch1x1", "0.0"), ("branch5x5_1", "1.0"), ("branch5x5_2", "1.1"), ("branch3x3dbl_1", "2.0"),
            ("branch3x3dbl_2", "2.1"), ("branch3x3dbl_3", "2.2"), ("branch_pool", "3.1"))
REDUCTION_35 = (("branch3x3", "0.0"), ("branch3x3dbl_1", "1.0"), ("branch3x3dbl_2", "1.1"),
                ("branch3x3dbl_3", "1.2"))
MODULE_B = (("branch1x1", "0.0"), ("branch7x7_1", "1.0"), ("branch7x7_2", "1.1"), ("branch7x7_3", "1.2"),
            ("branch7x7dbl_1", "2.0"), ("branch7x7dbl_2", "2.1"), ("branch7x7dbl_3", "2.2"),
            ("branch7x7dbl_4", "2.3"), ("branch7x7dbl_5", "2.4"), ("branch_pool", "3.1"))
REDUCTION_17 = (("branch3x3_1", "0.0"), ("branch3x3_2", "0.1"), ("branch7x7x3_1", "1.0"), ("branch7x7x3_2", "1.1"),
                ("branch7x7x3_3", "1.2"), ("branch7x7x3_4", "1.3"))
MODULE_C = (("branch1x1", "0.0"), ("branch3x3_1", "1.0"), ("branch3x3_2a", "1.1.convs.0"),
            ("branch3x3_2b", "1.1.convs.1"), ("branch3x3dbl_1", "2.0"), ("branch3x3dbl_2", "2.1"),
            ("branch3x3dbl_3a", "2.2.convs.0"), ("branch3x3dbl_3b", "2.2.convs.1"), ("branch_pool", "3.1"))
MODULES = (("Mixed_5b", "mixed_5b", MODULE_A), ("Mixed_5c", "mixed_5c", MODULE_A), ("Mixed_5d", "mixed_5d", MODULE_A),
           ("Mixed_6a", "mixed_6a", REDUCTION_35), ("Mixed_6b", "mixed_6b", MODULE_B),
           ("Mixed_6c", "mixed_6c", MODULE_B), ("Mixed_6d", "mixed_6d", MODULE_B), ("Mixed_6e", "mixed_6e", MODULE_B),
           ("Mixed_7a", "mixed_7a", REDUCTION_17), ("Mixed_7b", "mixed_7b", MODULE_C),
           ("Mixed_7c", "mixed_7c", MODULE_C))


def conv_bn(tv: str, ours: str) -> Pairs:
    """torchvision's BasicConv2d (conv, bn) → our ConvBNAct (0, 1)."""
    return [(f"{tv}.conv", f"{ours}.0"), (f"{tv}.bn", f"{ours}.1")]


def inception_v3_pairs(aux_logits: bool) -> Pairs:
    pairs: Pairs = []
    for tv, ours in STEM:
        pairs += conv_bn(tv, f"features.stem.branches.0.{ours}")
    for tv_module, our_module, branches in MODULES:
        for tv, ours in branches:
            b, rest = ours.split(".", 1)
            pairs += conv_bn(f"{tv_module}.{tv}", f"features.{our_module}.branches.{b}.{rest}")
        if tv_module == "Mixed_6e" and aux_logits:  # the aux head taps the last 17×17 module
            pairs += conv_bn("AuxLogits.conv0", "aux_head.conv0") + conv_bn("AuxLogits.conv1", "aux_head.conv1")
            pairs.append(("AuxLogits.fc", "aux_head.fc"))
    return [*pairs, ("fc", "fc")]


def _has_aux(sd) -> bool:
    return any(k.startswith("AuxLogits.") for k in sd)


ENTRIES = {"inception_v3": Pretrained(
    torchvision="inception_v3", model="inception_v3", classifier="fc.weight",
    pairs=lambda sd, net: inception_v3_pairs(_has_aux(sd)),
    options=lambda sd: {"aux_logits": _has_aux(sd), "avg_pool_count_include_pad": True}, transform_input=True,
    note="torchvision's average pools count the padding; its pretrained weights take inputs in [-1, 1] "
         "(transform_input): normalisation mean = std = 0.5")}
