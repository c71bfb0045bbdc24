"""ResNet (He et al. 2015): CIFAR 6n+2 nets and plain counterparts (§4.2), ImageNet Table-1 nets
(resnet18..152, plain18/34) with shortcut options A/B/C and the bottleneck stride placement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.resnet import (
    IMAGENET_TABLE1,
    Projection,
    ResidualBlock,
    ShortcutA,
)
from cnnbench.profiling import count_macs, count_params

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# ---------------------------------------------------------------------------------------------
# CIFAR (§4.2): exact params at 10 classes (Table 6 rounds them), plain nets equal.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
CIFAR_MACS = {20: 40.6e6, 32: 68.9e6, 44: 97.2e6, 56: 125.5e6, 110: 252.9e6}

# ImageNet (§3.3, Table 1): exact params at 1000 classes per shortcut option.
PARAMS_A = {18: 11_515_688, 34: 21_623_848, 50: 22_780_456}
PARAMS_B = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
PARAMS_C = {18: 12_043_816, 34: 22_716_840, 50: 40_128_552}
# Multiply-adds at 224²: option B; bottlenecks with the stride on the first 1×1 / on the 3×3.
MACS_B = {18: 1.814e9, 34: 3.664e9, 50: 3.858e9, 101: 7.570e9, 152: 11.282e9}
MACS_B_STRIDE_3X3 = {50: 4.089e9, 101: 7.801e9, 152: 11.514e9}
# Option A drops the three strided 1×1 projections of the basic-block nets (exact count of the layers).
MACS_A = {18: 1.795e9, 34: 3.644e9}
TABLE1_FLOPS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}

IMAGENET_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34"]
CIFAR_NAMES = [f"resnet{d}" for d in CIFAR_PARAMS] + [f"plain{d}" for d in CIFAR_PARAMS if d != 1202]


def meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def projections(model: nn.Module) -> int:
    return sum(isinstance(m, Projection) for m in model.modules())


def blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


# --------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("depth", list(CIFAR_PARAMS))
def test_cifar_params_exact(depth):
    assert count_params(meta(f"resnet{depth}", num_classes=10)) == CIFAR_PARAMS[depth]
    assert model_info(f"resnet{depth}").paper_params == CIFAR_PARAMS[depth]
    if depth != 1202:
        assert count_params(meta(f"plain{depth}", num_classes=10)) == CIFAR_PARAMS[depth]


@pytest.mark.parametrize("depth", list(CIFAR_MACS))
def test_cifar_macs(depth):
    assert count_macs(meta(f"resnet{depth}", num_classes=10), 32) == pytest.approx(
        CIFAR_MACS[depth], rel=2e-3
    )


def test_cifar_plain_has_no_shortcuts_and_resnet_does():
    res, plain = meta("resnet20", num_classes=10), meta("plain20", num_classes=10)
    assert [type(b.shortcut) for b in res.layers] == [ShortcutA] * 9
    assert all(b.shortcut is None for b in plain.layers)


def test_cifar_forward_backward():
    for name in ("resnet20", "plain20"):
        m = create_model(name, num_classes=10)
        y = m(torch.randn(2, 3, 32, 32))
        assert y.shape == (2, 10)
        y.sum().backward()
        assert all(p.grad is not None for p in m.parameters())


# --------------------------------------------------------------------------------------------- ImageNet


def test_imagenet_names_registered():
    assert set(IMAGENET_NAMES) <= set(list_models())


def test_table1_block_table():
    assert {d: IMAGENET_TABLE1[d][1] for d in IMAGENET_TABLE1} == {
        18: (2, 2, 2, 2),
        34: (3, 4, 6, 3),
        50: (3, 4, 6, 3),
        101: (3, 4, 23, 3),
        152: (3, 8, 36, 3),
    }
    # weighted layers: conv1 + (2 or 3 per block) + fc = the name's depth
    for depth, (kind, reps, _) in IMAGENET_TABLE1.items():
        assert 1 + (2 if kind == "basic" else 3) * sum(reps) + 1 == depth


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_params_option_b(depth):
    assert count_params(meta(f"resnet{depth}", shortcut="B")) == PARAMS_B[depth]


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_params_options_a_and_c(depth):
    assert count_params(meta(f"resnet{depth}", shortcut="A")) == PARAMS_A[depth]
    assert count_params(meta(f"resnet{depth}", shortcut="C")) == PARAMS_C[depth]


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_defaults_follow_the_paper(name):
    """18/34 default to A (= plain counts, Table 2), 50+ to B with the stride on the first 1×1."""
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    m = meta(name)
    expected = PARAMS_A[depth] if depth in (18, 34) else PARAMS_B[depth]
    assert count_params(m) == expected == model_info(name).paper_params
    if name.startswith("plain"):
        assert m.shortcut_option is None
        assert all(b.shortcut is None for b in blocks(m))
    else:
        assert m.shortcut_option == ("A" if depth < 50 else "B")
    if depth >= 50:
        assert m.stride_in_1x1 is True


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_macs_stride_placement(depth):
    paper = count_macs(meta(f"resnet{depth}"), 224)
    v15 = count_macs(meta(f"resnet{depth}", stride_in_1x1=False), 224)
    assert paper == pytest.approx(MACS_B[depth], rel=5e-4)
    assert v15 == pytest.approx(MACS_B_STRIDE_3X3[depth], rel=5e-4)
    assert v15 > paper


@pytest.mark.parametrize("depth", [18, 34])
def test_macs_basic_blocks(depth):
    assert count_macs(meta(f"resnet{depth}", shortcut="B"), 224) == pytest.approx(MACS_B[depth], rel=5e-4)
    assert count_macs(meta(f"resnet{depth}"), 224) == pytest.approx(MACS_A[depth], rel=5e-4)
    assert count_macs(meta(f"plain{depth}"), 224) == pytest.approx(MACS_A[depth], rel=5e-4)


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_model_info_matches_table1(name):
    info = model_info(name)
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    assert info.paper_macs == TABLE1_FLOPS[depth]
    assert info.input_size == 224 and info.reference_num_classes == 1000
    # Table 1's FLOPs row is rounded: our exact count is within 2% of it
    assert count_macs(meta(name), 224) == pytest.approx(info.paper_macs, rel=0.02)
    assert 0.7 < info.paper_top1 < 0.8
    if name.startswith("resnet"):
        assert "stride_in_1x1=false" in info.reference_source


def test_paper_accuracies():
    assert model_info("resnet34").paper_top1 == pytest.approx(1 - 0.2503)
    assert model_info("plain34").paper_top1 == pytest.approx(1 - 0.2854)
    assert model_info("resnet152").paper_top5 == pytest.approx(1 - 0.0571)


def test_shortcut_structure():
    # B: projections only where the shape changes: 3 for basic nets, 4 for bottlenecks (conv2_1 too)
    assert projections(meta("resnet18", shortcut="B")) == 3
    assert projections(meta("resnet34", shortcut="B")) == 3
    assert projections(meta("resnet50")) == 4
    # C: every shortcut; ResNet-34 has 13 more than B (§4.1)
    c34 = meta("resnet34", shortcut="C")
    assert projections(c34) == len(blocks(c34)) == 16
    # A: no projections, strided zero-padding where the shape changes
    a34 = meta("resnet34")
    assert projections(a34) == 0
    assert sum(isinstance(b.shortcut, ShortcutA) for b in blocks(a34)) == 3
    assert sum(isinstance(b.shortcut, nn.Identity) for b in blocks(a34)) == 13
    assert sum(isinstance(b.shortcut, ShortcutA) for b in blocks(meta("resnet50", shortcut="A"))) == 4
    # lowercase accepted, junk rejected
    assert projections(meta("resnet18", shortcut="c")) == 8
    with pytest.raises(ValueError, match="shortcut"):
        meta("resnet18", shortcut="D")


def test_unknown_options_rejected():
    with pytest.raises(ValueError, match="stride_in_1x1"):
        meta("resnet18", stride_in_1x1=False)  # basic blocks have no 1×1 conv
    with pytest.raises(ValueError, match="shortcut"):
        meta("plain34", shortcut="B")


def _convs(seq: nn.Module) -> list[nn.Conv2d]:
    return [m for m in seq.modules() if isinstance(m, nn.Conv2d)]


def test_stride_in_1x1_moves_the_stride():
    first = lambda m: m.stages.conv3_x[0].branch  # noqa: E731
    c1, c3, c1b = _convs(first(meta("resnet50")))
    assert (c1.kernel_size, c1.stride, c3.stride, c1b.stride) == ((1, 1), (2, 2), (1, 1), (1, 1))
    c1, c3, c1b = _convs(first(meta("resnet50", stride_in_1x1=False)))
    assert (c1.stride, c3.kernel_size, c3.stride) == ((1, 1), (3, 3), (2, 2))


def test_bn_after_every_conv_no_bias_no_dropout():
    m = meta("resnet50", shortcut="C")
    mods = list(m.modules())
    convs = [i for i, x in enumerate(mods) if isinstance(x, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 16 + 16
    for i in convs:
        assert mods[i].bias is None
        assert isinstance(mods[i + 1], nn.BatchNorm2d)
    assert not any(isinstance(x, nn.Dropout) for x in mods)


@pytest.mark.parametrize(
    "name,out_ch",
    [
        ("resnet18", (64, 128, 256, 512)),
        ("resnet50", (256, 512, 1024, 2048)),
        ("plain34", (64, 128, 256, 512)),
    ],
)
def test_stage_output_shapes(name, out_ch):
    """Table 1's output-size column at 224²: 112 (conv1), 56, 28, 14, 7."""
    m = meta(name)
    x = torch.zeros(1, 3, 224, 224, device="meta")
    x = m.stem[0](x)
    assert x.shape == (1, 64, 112, 112)
    x = m.stem[1](x)
    assert x.shape == (1, 64, 56, 56)
    for (stage, size), ch in zip(
        [("conv2_x", 56), ("conv3_x", 28), ("conv4_x", 14), ("conv5_x", 7)], out_ch, strict=True
    ):
        x = getattr(m.stages, stage)(x)
        assert x.shape == (1, ch, size, size)
    assert m(torch.zeros(2, 3, 224, 224, device="meta")).shape == (2, 1000)


def test_residual_block_relu_after_addition():
    torch.manual_seed(0)
    m = create_model("resnet18", num_classes=10).eval()
    block = m.stages.conv3_x[0]  # strided, option A
    x = torch.randn(2, 64, 8, 8)
    expected = torch.relu(block.branch(x) + block.shortcut(x))
    assert torch.allclose(block(x), expected)
    # option A's shortcut: every other pixel, channels zero-padded 64 → 128
    sc = block.shortcut(x)
    assert sc.shape == (2, 128, 4, 4)
    assert torch.equal(sc[:, :64], x[:, :, ::2, ::2]) and not sc[:, 64:].any()


def test_he_init():
    torch.manual_seed(0)
    m = create_model("resnet18")
    w = m.stages.conv4_x[1].branch[0][0].weight  # 3×3, 256 → 256
    assert w.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    bn = m.stages.conv4_x[1].branch[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_starts_each_block_as_its_shortcut(name):
    """Off by default (§3.4's He init: every BN scale 1); on, each branch's last BN scale is 0, so in eval mode
    every block returns ReLU(shortcut(x))."""
    default = create_model(name, num_classes=10)
    assert all(torch.all(b.branch[-1][1].weight == 1) for b in blocks(default))
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, zero_init_residual=True).eval()
    for b in blocks(m):
        assert not b.branch[-1][1].weight.any() and torch.all(b.branch[0][1].weight == 1)
    block = m.stages.conv3_x[0]  # downsampling block: projection (B) or strided identity (A) shortcut
    x = torch.randn(2, block.branch[0][0].in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(block.shortcut(x)))
    assert count_params(m) == count_params(default)


@pytest.mark.parametrize(
    "name,kw",
    [("resnet18", {}), ("resnet18", {"shortcut": "B"}), ("resnet50", {})],
)
def test_forward_backward_small_input(name, kw):
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, **kw)
    m.train()
    y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    y.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 48, 40)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,kw",
    [
        ("resnet34", {}),
        ("resnet101", {}),
        ("resnet152", {}),
        ("plain18", {}),
        ("plain34", {}),
        ("resnet50", {"shortcut": "C", "stride_in_1x1": False}),
        ("resnet34", {"shortcut": "C"}),
    ],
)
def test_forward_backward_slow(name, kw):
    m = create_model(name, num_classes=10, **kw)
    y = m(torch.randn(2, 3, 64, 64))
    y.sum().backward()
    assert y.shape == (2, 10)


@pytest.mark.slow
def test_native_resolution_forward():
    m = create_model("resnet50").eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_in_chans_and_num_classes():
    m = meta("resnet50", in_chans=1, num_classes=7)
    assert m.stem[0][0].in_channels == 1 and m.fc.out_features == 7


# --------------------------------------------------------------------------------------------- scaling

def test_scaling_none_is_the_paper():
    assert meta("resnet50").scaling is None


def test_scaling_identity_is_exactly_the_paper():
    m = meta("resnet50", scaling={"width_mult": 1.0, "depth_mult": 1.0})
    assert count_params(m) == PARAMS_B[50]
    assert m.repeats == (3, 4, 6, 3)


def test_scaling_width_and_depth():
    from cnnbench.models.scaling import round_filters, round_repeats

    m = meta("resnet50", scaling={"width_mult": 1.5, "depth_mult": 1.4})
    assert m.repeats == tuple(round_repeats(r, 1.4) for r in (3, 4, 6, 3)) == (5, 6, 9, 5)
    assert m.stem[0][0].out_channels == round_filters(64, 1.5) == 96
    first = m.stages.conv2_x[0].branch
    assert [c.out_channels for c in _convs(first)] == [96, 96, 384]
    assert m.fc.in_features == round_filters(2048, 1.5) == 3072
    assert all(c.out_channels % 8 == 0 for c in _convs(m))
    assert count_params(m) > PARAMS_B[50]
    # still runs
    assert m(torch.zeros(1, 3, 64, 64, device="meta")).shape == (1, 1000)


def test_scaling_phi_and_resolution_recorded():
    m = meta("resnet18", scaling={"phi": 1})
    assert m.scaling.width_mult == pytest.approx(1.1) and m.scaling.depth_mult == pytest.approx(1.2)
    assert m.repeats == (3, 3, 3, 3)
    assert m.stem[0][0].out_channels == 72  # round_filters(64 · 1.1) = 70.4 → 72
    m = meta("resnet18", scaling={"resolution": 160})
    assert m.scaling.resolution == 160 and count_params(m) == PARAMS_A[18]
    with pytest.raises(ValueError):
        meta("resnet18", scaling={"bogus": 1})


def test_scaling_from_omegaconf():
    import omegaconf

    cfg = omegaconf.OmegaConf.create({"width_mult": 0.5})
    m = meta("plain18", scaling=cfg)  # what a Hydra override `model.scaling={width_mult:0.5}` passes
    assert m.stem[0][0].out_channels == 32


# --------------------------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("name", IMAGENET_NAMES + CIFAR_NAMES)
def test_yaml_exists_and_keys_accepted(name):
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["compile"] is False
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "compile")}
    m = meta(name, **kwargs)
    if name in IMAGENET_NAMES:
        assert count_params(m) == model_info(name).paper_params  # YAML defaults = the paper's network
        expected = {"scaling"} | ({"shortcut", "zero_init_residual"} if name.startswith("resnet") else set())
        if name in ("resnet50", "resnet101", "resnet152"):
            expected.add("stride_in_1x1")
        assert set(kwargs) == expected
        # scaling is a mapping of null keys in the YAML (so `model.scaling.phi=1` works), None in the record
        assert all(v is None for v in kwargs.pop("scaling").values())
        assert kwargs == {k: v for k, v in model_info(name).default_kwargs.items() if k != "scaling"}


def test_cifar_checkpoints_with_the_old_block_keys_load():
    """The CIFAR block named its layers conv1/bn1/conv2/bn2 before it was a ResidualBlock: such state dicts
    still load, to the same outputs."""
    from cnnbench.models.resnet import CifarBasicBlock

    torch.manual_seed(0)
    m = create_model("resnet20", num_classes=10).eval()
    new_to_old = {new: old for old, new in CifarBasicBlock.OLD_KEYS.items()}
    old = {}
    for key, value in m.state_dict().items():
        head, dot, rest = key.partition(".")  # layers.<i>.<rest>
        index, _, rest = rest.partition(".")
        prefix = next((p for p in new_to_old if rest.startswith(p)), None) if head == "layers" else None
        old[f"{head}.{index}.{new_to_old[prefix]}{rest[len(prefix):]}" if prefix else key] = value
    assert "layers.0.conv1.weight" in old and "layers.0.bn2.running_var" in old
    loaded = create_model("resnet20", num_classes=10)
    loaded.load_state_dict(old)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), m(x))
