"""Inception-ResNet-v1 / -v2 / TF-slim v2: exact params, MACs, stage shapes, residual scaling, BN placement."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.models import create_model, model_info
from cnnbench.models.inception_resnet import InceptionResidual
from cnnbench.profiling import count_macs, count_params
from tests.helpers import meta, stage_shapes

NAMES = ["inception_resnet_v1", "inception_resnet_v2", "inception_resnet_v2_tfslim"]
TARGETS = {  # params at 1000 classes, MACs at 299² (counted from the paper's figures)
    "inception_resnet_v1": (22_756_328, 6.21e9),
    "inception_resnet_v2": (32_433_928, 9.26e9),
    "inception_resnet_v2_tfslim": (55_843_464, 13.16e9),
}


def rep(prefix: str, n: int, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}{i}": shape for i in range(1, n + 1)}


SHAPES = {
    "inception_resnet_v1": {
        "stem": (256, 35, 35), **rep("block_a", 5, (256, 35, 35)), "reduction_a": (896, 17, 17),
        **rep("block_b", 10, (896, 17, 17)), "reduction_b": (1792, 8, 8), **rep("block_c", 5, (1792, 8, 8)),
    },
    "inception_resnet_v2": {
        "stem_a": (64, 147, 147), "stem_b": (160, 73, 73), "stem_c": (192, 71, 71), "stem_d": (384, 35, 35),
        **rep("block_a", 5, (384, 35, 35)), "reduction_a": (1152, 17, 17),
        **rep("block_b", 10, (1152, 17, 17)), "reduction_b": (2144, 8, 8), **rep("block_c", 5, (2144, 8, 8)),
    },
    "inception_resnet_v2_tfslim": {
        "stem": (192, 35, 35), "mixed_5b": (320, 35, 35), **rep("block_a", 10, (320, 35, 35)),
        "reduction_a": (1088, 17, 17), **rep("block_b", 20, (1088, 17, 17)), "reduction_b": (2080, 8, 8),
        **rep("block_c", 10, (2080, 8, 8)), "conv_7b": (1536, 8, 8),
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_params_exact_and_macs(name):
    params, macs = TARGETS[name]
    m = meta(name)
    assert count_params(m) == params == model_info(name).paper_params
    assert count_macs(m, 299) == pytest.approx(macs, rel=0.03)
    assert model_info(name).aux_weights == ()


@pytest.mark.parametrize("name", NAMES)
def test_stage_shapes(name):
    assert stage_shapes(meta(name), 299) == SHAPES[name]


@pytest.mark.parametrize("name", NAMES)
def test_bn_only_on_conv_layers_and_linear_up_projection(name):
    m = meta(name)
    blocks = [b for b in m.modules() if isinstance(b, InceptionResidual)]
    assert blocks
    for b in blocks:
        assert isinstance(b.up, nn.Conv2d) and b.up.bias is not None  # linear 1×1, bias, no BN
        assert b.up.out_channels == b.out_channels
    # BN count = number of conv layers that are not up-projections: none after a sum
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    bns = [c for c in m.modules() if isinstance(c, nn.BatchNorm2d)]
    assert len(bns) == len(convs) - len(blocks)


def test_default_residual_scales():
    for name in NAMES:
        m = meta(name)
        scales = {n: b.scale for n, b in m.features.named_children() if isinstance(b, InceptionResidual)}
        for n, s in scales.items():
            kind = n[len("block_")]
            expected = {"a": 0.17, "b": 0.10, "c": 0.20}[kind]
            if name.endswith("tfslim") and n == "block_c10":
                expected = 1.0  # the released last block: scale 1.0, no ReLU
            assert s == pytest.approx(expected), (name, n)
    last = meta("inception_resnet_v2_tfslim").features.block_c10
    assert last.activate is False


def test_residual_scale_option():
    m = meta("inception_resnet_v1", residual_scale=0.3)
    assert {b.scale for b in m.modules() if isinstance(b, InceptionResidual)} == {0.3}
    m = meta("inception_resnet_v2", residual_scale={"B": 0.05})
    assert m.features.block_a1.scale == 0.17 and m.features.block_b3.scale == 0.05
    assert m.features.block_c5.scale == 0.20
    m = meta("inception_resnet_v2_tfslim", residual_scale={"A": 0.1, "B": 0.2, "C": 0.3})
    assert m.features.block_c9.scale == 0.3 and m.features.block_c10.scale == 1.0
    with pytest.raises(ValueError, match="residual_scale"):
        meta("inception_resnet_v1", residual_scale={"D": 0.1})
    with pytest.raises(ValueError, match="residual_scale"):
        meta("inception_resnet_v1", residual_scale="big")


def test_residual_scaling_applied_in_forward():
    """y = ReLU(x + s·up(branches(x))), checked against a block computed by hand for two scales."""
    torch.manual_seed(0)
    outs = {}
    for s in (0.1, 0.3):
        torch.manual_seed(0)
        m = create_model("inception_resnet_v1", num_classes=3, residual_scale=s, scaling={"width_mult": 0.125})
        blk = m.features.block_a1.eval()
        x = torch.rand(2, blk.out_channels, 9, 9)
        with torch.no_grad():
            y = blk(x)
            r = blk.up(blk.branches(x))
        assert torch.allclose(y, torch.relu(x + s * r), atol=1e-6)
        assert r.abs().max() > 0
        outs[s] = y
    assert not torch.allclose(outs[0.1], outs[0.3])
    # scale 0 turns each residual block into ReLU(x)
    m = create_model("inception_resnet_v1", num_classes=3, residual_scale=0.0, scaling={"width_mult": 0.125})
    blk = m.features.block_b1.eval()
    x = torch.randn(2, blk.out_channels, 5, 5)
    with torch.no_grad():
        assert torch.equal(blk(x), torch.relu(x))


def test_unactivated_final_block():
    m = create_model("inception_resnet_v2_tfslim", num_classes=3, scaling={"width_mult": 0.125})
    blk = m.features.block_c10.eval()
    x = torch.randn(2, blk.out_channels, 2, 2)
    with torch.no_grad():
        y = blk(x)
        assert torch.allclose(y, x + blk.up(blk.branches(x)), atol=1e-6)
    assert (y < 0).any()  # no ReLU after the sum


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_small(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=4, scaling={"width_mult": 0.125}).train()
    out = m(torch.randn(2, 3, 75, 75))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)  # no aux head
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_width_mult_keeps_residual_widths_consistent():
    m = meta("inception_resnet_v2", scaling={"width_mult": 0.5})
    shapes = stage_shapes(m, 299)
    assert shapes["stem_d"] == (192, 35, 35)
    assert shapes["reduction_a"] == (192 + 192 + 192, 17, 17)  # in + n + m = (384 + 384 + 384) / 2
    for b in m.modules():
        if isinstance(b, InceptionResidual):
            assert b.up.out_channels == b.out_channels and b.out_channels % 8 == 0
    assert count_params(meta("inception_resnet_v2", scaling={"width_mult": 1.0})) == 32_433_928


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_native_resolution_forward(name):
    m = create_model(name).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 299, 299)).shape == (1, 1000)
