"""Inception-v3 and Inception-v4: exact params, MACs, stage shapes, aux head, width scaling."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models._inception_parts import parse_scaling, round_width
from cnnbench.profiling import count_macs, count_params
from tests.helpers import meta, stage_shapes

ROOT = Path(__file__).resolve().parents[2]
FAMILY = ["googlenet", "inception_v3", "inception_v4", "inception_resnet_v1", "inception_resnet_v2",
          "inception_resnet_v2_tfslim"]


# ------------------------------------------------------------------ width rounding helper
@pytest.mark.parametrize("c", [16, 24, 32, 48, 80, 96, 192, 208, 224, 448, 1088, 1536, 2144])
def test_round_width_identity_at_1(c):
    assert round_width(c, 1.0) == c


@pytest.mark.parametrize("c", [16, 24, 32, 48, 80, 96, 192, 208, 224, 448, 1088, 1536, 2144])
@pytest.mark.parametrize("wm", [0.125, 0.25, 0.5, 0.75, 1.3, 2.0])
def test_round_width_rule(c, wm):
    r = round_width(c, wm)
    assert r % 8 == 0 and r >= 8
    assert r >= 0.9 * c * wm
    assert abs(r - c * wm) <= 8


def test_parse_scaling():
    assert parse_scaling(None) == 1.0
    assert parse_scaling({}) == 1.0
    assert parse_scaling({"width_mult": 0.5}) == 0.5
    with pytest.raises(ValueError):
        parse_scaling({"phi": 1})
    with pytest.raises(ValueError):
        parse_scaling({"width_mult": 0})


# ------------------------------------------------------------------ configs of the whole family
@pytest.mark.parametrize("name", FAMILY)
def test_yaml_exists_and_keys_accepted(name):
    assert name in list_models()
    path = ROOT / "conf" / "model" / f"{name}.yaml"
    cfg = OmegaConf.load(path)
    assert cfg.name == name and cfg.compile is False
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "compile")}
    assert "scaling" in kwargs and all(v is None for v in kwargs["scaling"].values())  # the paper's widths
    m = meta(name, **kwargs)  # DictConfig / ListConfig values as Hydra hands them over
    # the YAML reproduces the registered defaults
    assert count_params(m) == count_params(meta(name))
    assert getattr(m, "aux_weights", ()) == model_info(name).aux_weights


def test_inception_v2_is_bn_inception():
    # the name is BN-Inception's (Inception-v4 paper §1), a network of its own, not a variant of v3
    from cnnbench.models.bn_inception import BNInception

    assert "inception_v2" in list_models() and isinstance(meta("inception_v2"), BNInception)
    assert model_info("inception_v2").paper.startswith("Ioffe & Szegedy 2015")


# ------------------------------------------------------------------ Inception-v3
V3_SHAPES = {  # the TF-slim layer list (Table 1 does not add up), at 299²
    "stem": (192, 35, 35), "mixed_5b": (256, 35, 35), "mixed_5c": (288, 35, 35), "mixed_5d": (288, 35, 35),
    "mixed_6a": (768, 17, 17), "mixed_6b": (768, 17, 17), "mixed_6c": (768, 17, 17), "mixed_6d": (768, 17, 17),
    "mixed_6e": (768, 17, 17), "mixed_7a": (1280, 8, 8), "mixed_7b": (2048, 8, 8), "mixed_7c": (2048, 8, 8),
}


def test_v3_params_exact():
    assert count_params(meta("inception_v3", aux_logits=False)) == 23_834_568
    assert model_info("inception_v3").paper_params == 23_834_568
    # aux head: 1×1 768→128 (+BN), 5×5 128→768 (+BN), FC 768→1000
    aux = 768 * 128 + 2 * 128 + 25 * 128 * 768 + 2 * 768 + 768 * 1000 + 1000
    assert count_params(meta("inception_v3")) == 23_834_568 + aux


def test_v3_macs():
    macs = count_macs(meta("inception_v3", aux_logits=False), 299)
    assert macs == pytest.approx(model_info("inception_v3").paper_macs, rel=0.03)


def test_v3_stage_shapes():
    assert stage_shapes(meta("inception_v3"), 299) == V3_SHAPES


def test_v3_keeps_5x5_branch_and_factorized_7x7():
    m = meta("inception_v3")
    kernels = {c.kernel_size for c in m.features.mixed_5b.modules() if isinstance(c, nn.Conv2d)}
    assert (5, 5) in kernels
    kernels = {c.kernel_size for c in m.features.mixed_6b.modules() if isinstance(c, nn.Conv2d)}
    assert kernels == {(1, 1), (1, 7), (7, 1)}
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert bns and all(b.eps == 1e-3 for b in bns)


def test_v3_aux_only_in_train_mode():
    torch.manual_seed(0)
    m = create_model("inception_v3", num_classes=6, scaling={"width_mult": 0.125})
    x = torch.randn(2, 3, 75, 75)
    out = m.train()(x)
    assert isinstance(out, tuple) and len(out) == 2 and out[1].shape == (2, 6)
    assert m.aux_weights == (0.4,) == model_info("inception_v3").aux_weights
    with torch.no_grad():
        y = m.eval()(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 6)
    m2 = create_model("inception_v3", num_classes=6, aux_logits=False, aux_weights=[0.9],
                      scaling={"width_mult": 0.125})
    assert isinstance(m2.train()(x), torch.Tensor) and m2.aux_weights == ()
    assert meta("inception_v3", aux_weights=[0.25]).aux_weights == (0.25,)
    with pytest.raises(ValueError, match="aux_weights"):
        meta("inception_v3", aux_weights=[0.4, 0.3])


def test_v3_forward_backward_small():
    torch.manual_seed(0)
    m = create_model("inception_v3", num_classes=5, scaling={"width_mult": 0.125}).train()
    logits, aux = m(torch.randn(2, 3, 75, 75))
    (logits.pow(2).mean() + 0.4 * aux.pow(2).mean()).backward()
    assert all(p.grad is not None for p in m.parameters())


# ------------------------------------------------------------------ Inception-v4
V4_SHAPES = {
    "stem_a": (64, 147, 147), "stem_b": (160, 73, 73), "stem_c": (192, 71, 71), "stem_d": (384, 35, 35),
    **{f"inception_a{i}": (384, 35, 35) for i in range(1, 5)},
    "reduction_a": (1024, 17, 17),
    **{f"inception_b{i}": (1024, 17, 17) for i in range(1, 8)},
    "reduction_b": (1536, 8, 8),
    **{f"inception_c{i}": (1536, 8, 8) for i in range(1, 4)},
}


def test_v4_params_exact_and_macs():
    m = meta("inception_v4")
    assert count_params(m) == 42_679_816
    assert count_macs(m, 299) == pytest.approx(12.25e9, rel=0.03)


def test_v4_stage_shapes():
    assert stage_shapes(meta("inception_v4"), 299) == V4_SHAPES


def test_v4_reduction_a_klmn_and_head():
    m = meta("inception_v4")
    ra = m.features.reduction_a.branches
    assert ra[0][0][0].out_channels == 384  # n
    assert [blk[0].out_channels for blk in ra[1]] == [192, 224, 256]  # k, l, m
    assert m.dropout.p == pytest.approx(0.2) and m.fc.in_features == 1536
    assert m.aux_weights == () and not any("aux" in name for name, _ in m.named_modules())  # no auxiliary head
    assert model_info("inception_v4").aux_weights == ()


def test_v4_forward_backward_small_and_no_aux():
    torch.manual_seed(0)
    m = create_model("inception_v4", num_classes=3, scaling={"width_mult": 0.125}).train()
    out = m(torch.randn(2, 3, 75, 75))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_v4_width_mult():
    half = meta("inception_v4", scaling={"width_mult": 0.5})
    shapes = stage_shapes(half, 299)
    assert shapes["stem_d"] == (192, 35, 35) and shapes["reduction_a"] == (512, 17, 17)
    assert shapes["inception_c3"] == (768, 8, 8)
    for c in half.modules():
        if isinstance(c, nn.Conv2d) and c.out_channels != 3:
            assert c.out_channels % 8 == 0
    assert count_params(meta("inception_v4", scaling={"width_mult": 1.0})) == 42_679_816


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v3", "inception_v4"])
def test_native_resolution_forward(name):
    m = create_model(name).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 299, 299)).shape == (1, 1000)


@pytest.mark.slow
def test_v3_few_training_steps_with_aux_loss():
    torch.manual_seed(0)
    m = create_model("inception_v3", num_classes=4, scaling={"width_mult": 0.25}).train()
    x, y = torch.randn(8, 3, 107, 107), torch.arange(8) % 4
    opt = torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9)
    ce = nn.CrossEntropyLoss()
    losses = []
    for _ in range(6):
        logits, aux = m(x)
        loss = ce(logits, y) + m.aux_weights[0] * ce(aux, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-2:]) < losses[0]


def test_v3_avg_pool_count_include_pad_option():
    """Default: TF semantics (padded zeros left out of the 3×3/1 average pools); the option counts them (torchvision's
    inception_v3, docs/pretrained.md). Same parameters; different outputs at the borders only."""
    torch.manual_seed(0)
    tf = create_model("inception_v3", num_classes=10, aux_logits=False).eval()
    torch.manual_seed(0)
    pt = create_model("inception_v3", num_classes=10, aux_logits=False, avg_pool_count_include_pad=True).eval()
    pools = [m for m in tf.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 9 and not any(m.count_include_pad for m in pools)
    assert all(m.count_include_pad for m in pt.modules() if isinstance(m, nn.AvgPool2d))
    assert count_params(tf) == count_params(pt)
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        assert not torch.allclose(tf(x), pt(x))
