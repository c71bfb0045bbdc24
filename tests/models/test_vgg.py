"""VGG A, A-LRN, B, C, D, E (Simonyan & Zisserman 2015, Tables 1–2): counts, layers, LRN, BN
variant, dense evaluation (FC → conv)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.vgg import VGG_TABLE1, FullyConvVGG, parse_layer
from cnnbench.profiling import count_macs, count_params

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
NAMES = ["vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19"]
# Exact params at 1000 classes (Table 2: 133, 133, 133, 134, 138, 144 M).
PARAMS = dict(
    zip(NAMES, [132_863_336, 132_863_336, 133_047_848, 133_638_952, 138_357_544, 143_667_240], strict=True)
)
TABLE2_MILLIONS = dict(zip(NAMES, [133, 133, 133, 134, 138, 144], strict=True))
# Spec §2.2 [calc]: multiply-adds at 224² (A 7.61, B 11.31, C 11.77, D 15.47, E 19.63 G).
MACS = dict(zip(NAMES, [7.61e9, 7.61e9, 11.31e9, 11.77e9, 15.47e9, 19.63e9], strict=True))
WEIGHT_LAYERS = dict(zip(NAMES, [11, 11, 13, 16, 16, 19], strict=True))


def meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def convs(m: nn.Module) -> list[nn.Conv2d]:
    return [x for x in m.modules() if isinstance(x, nn.Conv2d)]


def test_registered():
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
def test_params_exact(name):
    n = count_params(meta(name))
    assert n == PARAMS[name] == model_info(name).paper_params
    assert round(n / 1e6) == TABLE2_MILLIONS[name]


@pytest.mark.parametrize("name", NAMES)
def test_macs(name):
    info = model_info(name)
    macs = count_macs(meta(name), 224)
    assert macs == pytest.approx(MACS[name], rel=1e-3)
    assert info.paper_macs == pytest.approx(macs, rel=1e-3)


def test_macs_vs_resnet_paper_quote():
    # ResNet paper §3.3 / Fig. 3: VGG-16 15.3 G, VGG-19 19.6 G multiply-adds
    assert count_macs(meta("vgg16"), 224) == pytest.approx(15.3e9, rel=0.02)
    assert count_macs(meta("vgg19"), 224) == pytest.approx(19.6e9, rel=0.02)


@pytest.mark.parametrize("name", NAMES)
def test_layers_follow_table1(name):
    m = meta(name)
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert len(convs(m)) + len(linears) == WEIGHT_LAYERS[name]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (512 * 49, 4096),
        (4096, 4096),
        (4096, 1000),
    ]
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 5
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.5, 0.5]
    assert all(c.stride == (1, 1) and c.padding == (c.kernel_size[0] // 2,) * 2 for c in convs(m))
    one_by_one = [c.out_channels for c in convs(m) if c.kernel_size == (1, 1)]
    assert one_by_one == ([256, 512, 512] if name == "vgg16_c" else [])
    lrn = [x for x in m.modules() if isinstance(x, nn.LocalResponseNorm)]
    assert len(lrn) == (1 if name == "vgg11_lrn" else 0)


def test_table1_data():
    assert [len(VGG_TABLE1[c][2]) for c in ("A", "B", "C", "D", "E")] == [2, 2, 3, 3, 4]
    assert parse_layer("conv1-512") == (1, 512)


def test_lrn_is_alexnets():
    """A-LRN: b = a / (k + α Σ_{5 channels} a²)^β with k = 2, α = 1e-4, β = 0.75, after conv1's ReLU."""
    m = create_model("vgg11_lrn", num_classes=10)
    feats = list(m.features)
    i = next(i for i, x in enumerate(feats) if isinstance(x, nn.LocalResponseNorm))
    assert isinstance(feats[i - 1], nn.ReLU) and isinstance(feats[i - 2], nn.Conv2d) and i == 2
    lrn = feats[i]
    torch.manual_seed(0)
    a = torch.rand(1, 8, 3, 3) * 30
    sq = nn.functional.pad(a**2, (0, 0, 0, 0, 2, 2))
    s = sum(sq[:, j : j + 8] for j in range(5))
    expected = a / (2 + 1e-4 * s) ** 0.75
    assert torch.allclose(lrn(a), expected, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_batch_norm_variant(name):
    plain, bn = meta(name), meta(name, batch_norm=True)
    channels = sum(c.out_channels for c in convs(plain))
    # + γ, β per channel, − the conv bias that BN's β replaces
    assert count_params(bn) == count_params(plain) + channels
    mods = list(bn.features)
    for i, x in enumerate(mods):
        if isinstance(x, nn.Conv2d):
            assert (
                x.bias is None
                and isinstance(mods[i + 1], nn.BatchNorm2d)
                and isinstance(mods[i + 2], nn.ReLU)
            )


def test_init_options():
    torch.manual_seed(0)
    m = create_model("vgg11", num_classes=10, init="normal")
    assert convs(m)[3].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert not convs(m)[3].bias.any()
    g = create_model("vgg11", num_classes=10)
    w = convs(g)[3].weight  # 3×3, 256 → 256: Glorot bound sqrt(6 / (fan_in + fan_out))
    assert w.abs().max().item() <= (6 / (2 * 256 * 9)) ** 0.5 + 1e-6
    assert w.std().item() == pytest.approx((2 / (2 * 256 * 9)) ** 0.5, rel=0.05)
    with pytest.raises(ValueError, match="init"):
        meta("vgg11", init="bogus")


def test_forward_backward_small_input():
    torch.manual_seed(0)
    m = create_model("vgg11_lrn", num_classes=10)
    y = m(torch.randn(2, 3, 32, 32))  # 1×1 after the 5 pools; adaptive pool → 7×7
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_each_slow(name):
    for bn in (False, True):
        m = create_model(name, num_classes=10, batch_norm=bn)
        y = m(torch.randn(2, 3, 32, 32))
        y.sum().backward()
        assert y.shape == (2, 10)


def test_output_shapes_on_meta():
    m = meta("vgg16")
    x = torch.zeros(2, 3, 224, 224, device="meta")
    assert m.features(x).shape == (2, 512, 7, 7)
    assert m(x).shape == (2, 1000)
    assert m(torch.zeros(1, 3, 32, 32, device="meta")).shape == (1, 1000)


def test_fully_convolutional_classifier_matches_fc():
    """FC1 → 7×7 conv, FC2/FC3 → 1×1 convs give the same scores on a 7×7 map."""
    torch.manual_seed(0)
    m = create_model("vgg11", num_classes=10).eval()
    fcn = m.to_fully_convolutional()
    assert isinstance(fcn, FullyConvVGG) and not fcn.training
    kernels = [c.kernel_size for c in fcn.classifier if isinstance(c, nn.Conv2d)]
    assert kernels == [(7, 7), (1, 1), (1, 1)]
    assert not any(isinstance(x, nn.Linear) for x in fcn.modules())
    assert count_params(fcn) == count_params(m)
    feat = torch.randn(2, 512, 7, 7)
    with torch.no_grad():
        ref = m.classifier(torch.flatten(feat, 1))
        out = fcn.classifier(feat)
    assert out.shape == (2, 10, 1, 1)
    assert torch.allclose(out.flatten(1), ref, atol=1e-5)
    # weights are copies: changing the original leaves the dense net alone
    with torch.no_grad():
        m.classifier[0].weight.zero_()
    assert fcn.classifier[0].weight.abs().sum() > 0


def test_fully_convolutional_score_map_shapes():
    m = meta("vgg16")
    fcn = m.to_fully_convolutional()
    assert fcn(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, 1000, 1, 1)
    assert fcn(torch.zeros(1, 3, 256, 384, device="meta")).shape == (1, 1000, 2, 6)
    avg = m.to_fully_convolutional(spatial_average=True)
    assert avg(torch.zeros(3, 3, 384, 384, device="meta")).shape == (3, 1000)


@pytest.mark.slow
def test_fully_convolutional_equals_model_at_224():
    torch.manual_seed(0)
    m = create_model("vgg11", num_classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(m.to_fully_convolutional(spatial_average=True)(x), m(x), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_model_info(name):
    info = model_info(name)
    assert info.input_size == 224 and info.family == "vgg" and info.reference_num_classes == 1000
    if name != "vgg16_c":
        assert 0.7 < info.paper_top1 < 0.75 and 0.89 < info.paper_top5 < 0.92


@pytest.mark.parametrize("name", NAMES)
def test_yaml_exists_and_keys_accepted(name):
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["compile"] is False
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "compile")}
    scaling = kwargs.pop("scaling")
    assert scaling == {"width_mult": None}  # the paper's widths
    assert (
        kwargs == {"batch_norm": False, "dropout": 0.5, "init": "glorot"}
        == {k: v for k, v in model_info(name).default_kwargs.items() if k != "scaling"}
    )
    kwargs["scaling"] = scaling
    assert count_params(meta(name, **kwargs)) == PARAMS[name]


def test_half_width_halves_every_table1_width():
    """`scaling: {width_mult: 0.5}` (not in the paper): configuration A with 32…256 filters and FC-2048, counted
    here from the halved widths themselves."""
    m = meta("vgg11", scaling={"width_mult": 0.5})
    widths = [32, 64, 128, 128, 256, 256, 256, 256]
    assert [c.out_channels for c in convs(m)] == widths
    conv_params = sum(9 * c_in * c_out + c_out for c_in, c_out in zip([3, *widths[:-1]], widths, strict=True))
    fc_params = (256 * 49 * 2048 + 2048) + (2048 * 2048 + 2048) + (2048 * 1000 + 1000)
    assert count_params(m) == conv_params + fc_params
    sides = [224, 112, 56, 56, 28, 28, 14, 14]  # each conv's map at 224²: one 2×2/2 pool after each stack
    conv_macs = sum(9 * c_in * c_out * side**2
                    for c_in, c_out, side in zip([3, *widths[:-1]], widths, sides, strict=True))
    assert count_macs(m, 224) == conv_macs + fc_params - 2048 - 2048 - 1000  # an FC's MACs: its weights
    assert count_macs(m, 224) == pytest.approx(MACS["vgg11"] / 4, rel=0.02)  # about w² of the paper's
    assert count_params(meta("vgg16", scaling={"width_mult": 1.0})) == PARAMS["vgg16"]


def test_half_width_trains_and_refuses_other_scaling_keys():
    m = create_model("vgg11", num_classes=10, in_chans=1, scaling={"width_mult": 0.25})
    m(torch.randn(2, 1, 32, 32)).sum().backward()
    assert m.classifier[0].out_features == 1024
    with pytest.raises(ValueError, match="depth_mult for VGG; only width_mult"):
        meta("vgg11", scaling={"depth_mult": 2.0})


def test_unknown_option_rejected():
    with pytest.raises(ValueError, match="valid options"):
        meta("vgg16", shortcut="B")


@pytest.mark.parametrize("name,params,config", [("vgg11_bn", 132_866_088, "A"), ("vgg13_bn", 133_050_792, "B"),
                                                ("vgg16_bn", 138_361_768, "D"), ("vgg19_bn", 143_672_744, "E")])
def test_bn_variants_params_exact(name, params, config):
    """`_bn` = the plain configuration with batch_norm=true: + BN γ/β, − the conv biases (one parameter more per conv
    channel); torchvision's `_bn` nets keep the conv biases (docs/pretrained.md: folded on import)."""
    import torchvision

    plain = name.removesuffix("_bn")
    m = meta(name)
    conv_channels = sum(c.out_channels for c in convs(m))
    assert count_params(m) == params == model_info(name).paper_params
    assert params == PARAMS[plain] + conv_channels and m.config == config
    assert all(c.bias is None for c in convs(m)) and sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == len(convs(m))
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name, weights=None)
    assert count_params(theirs) == params + conv_channels
    assert yaml.safe_load((CONF / f"{name}.yaml").read_text())["batch_norm"] is True


# -- §3.1: a deeper configuration starts from net A ---------------------------------------------------------
@pytest.mark.parametrize("deeper", ["vgg13", "vgg16_c", "vgg16", "vgg19"])
def test_net_a_keys_are_a_first_four_convs_and_three_fcs_at_their_names(deeper):
    from cnnbench.models.vgg import VGG_MODELS, conv_names, net_a_keys

    a, d = meta("vgg11", num_classes=10), meta(deeper, num_classes=10)
    keys = net_a_keys("A", VGG_MODELS[deeper][0])
    a_state, d_state = a.state_dict(), d.state_dict()
    assert len(keys) == (4 + 3) * 2  # weight and bias of four convs and three FC layers
    for src, dst in keys.items():
        assert a_state[src].shape == d_state[dst].shape, (src, dst)
    conv_dst = sorted({k.rsplit(".", 1)[0] for k in keys.values() if k.startswith("features.")})
    by_index = {f"features.{i}": name for name, i in conv_names(VGG_MODELS[deeper][0]).items()}
    assert sorted(by_index[k] for k in conv_dst) == ["conv1_1", "conv2_1", "conv3_1", "conv3_2"]
    assert all(isinstance(d.get_submodule(k), nn.Conv2d) for k in conv_dst)
    # conv1_2 of the deeper network (A has no such conv) is not among them
    assert f"features.{conv_names(VGG_MODELS[deeper][0])['conv1_2']}.weight" not in keys.values()


def test_conv_names_index_every_conv_of_every_column():
    from cnnbench.models.vgg import conv_names, make_features

    for config in VGG_TABLE1:
        features = make_features(config)
        indexed = sorted(conv_names(config).values())
        assert indexed == [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)], config


def test_init_from_net_a_checkpoint_starts_vgg16_as_section_3_1(tmp_path):
    from cnnbench.errors import UserError
    from cnnbench.training.recipe_callbacks import init_from_checkpoint

    torch.manual_seed(0)
    a = create_model("vgg11", num_classes=10, in_chans=1)
    ckpt = tmp_path / "a.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in a.state_dict().items()},
                "cnnbench": {"model": {"name": "vgg11", "batch_norm": False}, "num_classes": 10}}, ckpt)
    d = create_model("vgg16", num_classes=10, in_chans=1)
    fresh = {k: v.clone() for k, v in d.state_dict().items()}
    out = init_from_checkpoint(d, ckpt, "vgg16", new_head=False)
    got = d.state_dict()
    assert torch.equal(got["features.0.weight"], a.state_dict()["features.0.weight"])  # conv1_1
    assert torch.equal(got["features.12.weight"], a.state_dict()["features.8.weight"])  # conv3_2
    assert torch.equal(got["classifier.6.weight"], a.state_dict()["classifier.6.weight"])  # FC-classes
    assert torch.equal(got["features.2.weight"], fresh["features.2.weight"])  # conv1_2: its own init
    assert torch.equal(got["features.14.weight"], fresh["features.14.weight"])  # conv3_3
    assert len(out["loaded"]) == 14
    with torch.no_grad():
        d.classifier[6].weight.zero_()
    init_from_checkpoint(d, ckpt, "vgg16", new_head=True)  # the default keeps the run's own classifier
    assert not d.classifier[6].weight.any() and torch.equal(got["classifier.0.weight"], d.classifier[0].weight)
    with pytest.raises(UserError, match="holds 'vgg11', but model='vgg16_bn'"):
        init_from_checkpoint(create_model("vgg16_bn", num_classes=10, in_chans=1), ckpt, "vgg16_bn")
