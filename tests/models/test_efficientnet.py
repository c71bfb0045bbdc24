"""EfficientNet-B0…B7 (Tan & Le 2019): counts, block structure, SE, skip / stochastic depth, scaling, training."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.efficientnet import (
    B0_BLOCKS,
    BN_EPS,
    BN_MOMENTUM,
    DropPath,
    EfficientNet,
    MBConv,
)
from cnnbench.profiling import count_macs, count_params

NAMES = [f"efficientnet_b{i}" for i in range(8)]
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# Exact params at 1000 classes, analytic MACs at native resolution.
PARAMS = dict(zip(NAMES, [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960], strict=True))
MACS = dict(zip(NAMES, [0.388e9, 0.691e9, 0.999e9, 1.836e9, 4.413e9, 10.307e9, 19.137e9, 37.869e9], strict=True))
RES = dict(zip(NAMES, [224, 240, 260, 300, 380, 456, 528, 600], strict=True))
CROP = dict(zip(NAMES, [0.875, 0.882, 0.890, 0.904, 0.922, 0.934, 0.943, 0.949], strict=True))
DROPOUT = dict(zip(NAMES, [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5], strict=True))
N_BLOCKS = dict(zip(NAMES, [16, 23, 23, 26, 32, 39, 45, 55], strict=True))


def meta_model(name: str, **kw) -> EfficientNet:
    with torch.device("meta"):
        return create_model(name, **kw)


def test_all_registered():
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
def test_params_exact(name):
    m = meta_model(name)
    assert count_params(m) == PARAMS[name] == model_info(name).paper_params
    assert len(m.mbconv_blocks()) == N_BLOCKS[name]


@pytest.mark.parametrize("name", NAMES)
def test_macs_within_3_percent(name):
    info = model_info(name)
    assert info.paper_macs == MACS[name]
    macs = count_macs(meta_model(name), info.input_size)
    assert macs == pytest.approx(MACS[name], rel=0.03)


@pytest.mark.parametrize("name", NAMES)
def test_model_info_and_dropout(name):
    info = model_info(name)
    assert (info.input_size, info.crop_pct) == (RES[name], CROP[name])
    assert info.crop_pct == pytest.approx(RES[name] / (RES[name] + 32), abs=6e-4)
    assert info.interpolation == "bicubic" and info.reference_num_classes == 1000
    assert 0.77 <= info.paper_top1 <= 0.85 and info.paper_top1 < info.paper_top5 < 1
    m = meta_model(name)
    assert m.dropout.p == DROPOUT[name]
    assert m.input_size == RES[name]


def test_b0_layout_follows_table_1():
    m = meta_model("efficientnet_b0")
    assert m.stem[0].out_channels == 32 and m.stem[0].stride == (2, 2) and m.stem[0].kernel_size == (3, 3)
    assert m.head[0].out_channels == 1280 and m.classifier.in_features == 1280
    assert len(m.blocks) == 7
    for stage, (_, op, k, s, ch, reps) in zip(m.blocks, B0_BLOCKS, strict=True):
        assert len(stage) == reps
        for i, b in enumerate(stage):
            assert b.out_ch == ch
            assert b.depthwise[0].kernel_size == (k, k)
            assert b.depthwise[0].stride == ((s, s) if i == 0 else (1, 1))
            assert b.depthwise[0].groups == b.depthwise[0].in_channels  # depthwise
            expand = int(op[len("MBConv"):])
            assert isinstance(b.expand, nn.Identity) == (expand == 1)
            assert b.depthwise[0].in_channels == b.in_ch * expand
            assert len(b.project) == 2  # conv + BN, no activation (linear bottleneck)
    # 7×7 map before the head at 224 (five stride-2 layers)
    with torch.device("meta"):
        assert m.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)


def test_b7_widths_and_repeats():
    m = meta_model("efficientnet_b7")
    assert m.stem[0].out_channels == 64 and m.head[0].out_channels == 2560
    assert [len(s) for s in m.blocks] == [4, 7, 7, 10, 10, 13, 4]
    assert [s[0].out_ch for s in m.blocks] == [32, 48, 80, 160, 224, 384, 640]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b4"])
def test_se_width_from_block_input(name):
    blocks = meta_model(name).mbconv_blocks()
    for b in blocks:
        expanded = b.depthwise[0].out_channels
        assert b.se.fc1.in_channels == expanded == b.se.fc2.out_channels
        assert b.se.fc1.out_channels == max(1, int(b.in_ch * 0.25))
        assert isinstance(b.se.activation, nn.SiLU) and isinstance(b.se.scale_activation, nn.Sigmoid)
        assert b.se.fc1.bias is not None
    if name == "efficientnet_b0":
        # first MBConv6 block: 16 in → 96 expanded, SE to 4 (not 96/4 = 24)
        assert blocks[1].se.fc1.out_channels == 4 and blocks[1].se.fc1.in_channels == 96


def test_checkpoints_with_the_old_se_keys_load():
    """The SE convs were `reduce` / `expand` before torchvision's SqueezeExcitation (`fc1` / `fc2`): such
    state dicts still load, to the same outputs."""
    torch.manual_seed(0)
    m = create_model("efficientnet_b0", num_classes=10).eval()
    old = {k.replace(".se.fc1.", ".se.reduce.").replace(".se.fc2.", ".se.expand."): v for k, v in m.state_dict().items()}
    assert any(".se.reduce." in k for k in old)
    loaded = create_model("efficientnet_b0", num_classes=10)
    loaded.load_state_dict(old)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.eval()(x), m(x))


def test_bn_and_activations():
    m = meta_model("efficientnet_b2")
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert bns and all(b.eps == BN_EPS == 1e-3 and b.momentum == BN_MOMENTUM == 0.01 for b in bns)
    assert not any(isinstance(x, (nn.ReLU, nn.ReLU6)) for x in m.modules())
    # BN after every conv except the SE convs: 1 stem + 1 head + per block (expand?) + dw + project
    n_conv_bn = 2 + sum(2 + (not isinstance(b.expand, nn.Identity)) for b in m.mbconv_blocks())
    assert len(bns) == n_conv_bn


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5"])
def test_skip_and_drop_path_only_where_allowed(name):
    blocks = meta_model(name).mbconv_blocks()
    for b in blocks:
        allowed = b.stride == 1 and b.in_ch == b.out_ch
        assert b.has_skip == allowed
        assert (b.drop_path is not None) == allowed
    if name == "efficientnet_b0":
        assert sum(b.has_skip for b in blocks) == 16 - 7  # every first-of-stage block lacks a skip


def test_skip_is_functional():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    for stride, cout in [(1, 16), (2, 16), (1, 24)]:
        b = MBConv(16, cout, 3, stride, 6).eval()
        nn.init.zeros_(b.project[1].weight)  # residual branch outputs exactly 0
        out = b(x)
        if b.has_skip:
            assert torch.equal(out, x)
        else:
            assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("name, rate", [("efficientnet_b0", 0.2), ("efficientnet_b3", 0.2), ("efficientnet_b0", 0.5)])
def test_drop_path_rates_rise_linearly(name, rate):
    blocks = meta_model(name, drop_path_rate=rate).mbconv_blocks()
    n = len(blocks)
    assert [b.drop_path_rate for b in blocks] == pytest.approx([rate * i / n for i in range(n)])
    assert blocks[0].drop_path_rate == 0 and blocks[-1].drop_path_rate == pytest.approx(rate * (n - 1) / n)
    for b in blocks:
        if b.drop_path is not None:
            assert b.drop_path.rate == b.drop_path_rate
    none = meta_model(name, drop_path_rate=0.0).mbconv_blocks()
    assert all(b.drop_path_rate == 0 for b in none)


def test_drop_path_rate_validated():
    with pytest.raises(ValueError):
        meta_model("efficientnet_b0", drop_path_rate=1.0)


def test_drop_path_module_train_vs_eval():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(4000, 3, 2, 2)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # whole samples dropped, survivors / keep
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert 0.45 < (per_sample[:, 0] == 0).float().mean() < 0.55
    assert torch.equal(dp.eval()(x), x)


def test_drop_path_inactive_in_eval_whole_model():
    torch.manual_seed(0)
    m = create_model("efficientnet_b0", num_classes=10, drop_path_rate=0.5)
    ref = create_model("efficientnet_b0", num_classes=10, drop_path_rate=0.0)
    ref.load_state_dict(m.state_dict())
    m.eval(), ref.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b, c = m(x), m(x), ref(x)
    assert torch.equal(a, b) and torch.allclose(a, c)


def test_init():
    torch.manual_seed(0)
    m = create_model("efficientnet_b0")
    fc = m.classifier.weight
    assert fc.abs().max() <= 1 / 1000**0.5 and fc.std() > 0.5 / 1000**0.5 / 3**0.5
    assert torch.count_nonzero(m.classifier.bias) == 0
    dw = m.mbconv_blocks()[-1].depthwise[0].weight  # 3×3 depthwise over 1152 channels: fan_out = 9
    assert dw.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.05)
    pw = m.head[0].weight  # 1×1, 1280 out: fan_out = 1280
    assert pw.std().item() == pytest.approx((2 / 1280) ** 0.5, rel=0.05)


def test_phi_on_b0_matches_b2_and_overrides_preset():
    # φ = 1 gives B2's widths/repeats at 258 instead of 260
    for name in ("efficientnet_b0", "efficientnet_b5"):
        m = meta_model(name, scaling={"phi": 1})
        assert count_params(m) == PARAMS["efficientnet_b2"]
        assert m.input_size == 258
    m = meta_model("efficientnet_b0", scaling={"phi": 2})
    assert count_params(m) == 12_255_408  # pure-φ network: 12.26M, 26 blocks
    assert len(m.mbconv_blocks()) == 26 and m.input_size == 296


def test_explicit_overrides():
    m = meta_model("efficientnet_b0", scaling={"depth_mult": 4.0})
    assert len(m.mbconv_blocks()) == 4 * 16
    m = meta_model("efficientnet_b1", scaling={"width_mult": 2.0})
    assert m.head[0].out_channels == 2560 and [len(s) for s in m.blocks] == [2, 3, 3, 4, 4, 5, 2]
    assert m.input_size == 240
    m = meta_model("efficientnet_b0", scaling={"resolution": 320})
    assert m.input_size == 320 and count_params(m) == PARAMS["efficientnet_b0"]
    with pytest.raises(ValueError, match="phii"):
        meta_model("efficientnet_b0", scaling={"phii": 1})


def test_unknown_option_rejected():
    with pytest.raises(ValueError, match="drop_path_rate"):
        create_model("efficientnet_b0", drop_connect_rate=0.2)


@pytest.mark.parametrize("name", NAMES)
def test_conf_yaml(name):
    path = CONF / f"{name}.yaml"
    assert path.is_file()
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == name and cfg["compile"] is False
    opts = {k: v for k, v in cfg.items() if k not in ("name", "compile")}
    assert opts["dropout"] == DROPOUT[name] and opts["drop_path_rate"] == 0.2
    m = meta_model(name, **opts)
    assert count_params(m) == PARAMS[name] and m.input_size == RES[name]
    assert m.dropout.p == DROPOUT[name]
    # the YAML's scaling mapping accepts a φ override
    opts["scaling"] = dict(opts["scaling"], phi=1)
    assert count_params(meta_model(name, **opts)) == PARAMS["efficientnet_b2"]


def test_forward_backward_small_input():
    torch.manual_seed(0)
    m = create_model("efficientnet_b1", num_classes=7)
    x = torch.randn(2, 3, 32, 32)  # min_input_size
    out = m(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_few_optimizer_steps_reduce_loss():
    torch.manual_seed(0)
    m = create_model("efficientnet_b0", num_classes=4, dropout=0.0, drop_path_rate=0.2).train()
    x, y = torch.randn(2, 3, 48, 48), torch.tensor([1, 3])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_optimizer_steps_native_resolution():
    torch.manual_seed(0)
    m = create_model("efficientnet_b0", num_classes=10).train()
    res = model_info("efficientnet_b0").input_size
    x, y = torch.randn(2, 3, res, res), torch.tensor([0, 9])
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-4, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=1e-5)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_b0_equals_torchvision_with_the_same_weights():
    """torchvision's efficientnet_b0 is the same network but for BatchNorm's ε (ours: 1e-3 of the TF reference
    implementation; torchvision: 1e-5): with its ε and its weights (BN statistics randomised), copied in order,
    our B0 gives the same outputs."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.efficientnet_b0(weights=None).eval()
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ours = create_model("efficientnet_b0").eval()
    assert {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    for m in ours.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-5
    theirs = reference.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in theirs.values()]
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), theirs.values(), strict=True)))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
