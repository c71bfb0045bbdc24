"""Inception-v2 = BN-Inception (Ioffe & Szegedy 2015, appendix table): widths, grids, exact parameter count
and MACs derived from the table's columns, no aux heads, options, the BN-x5 recipe, a short training run."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnbench.models import create_model, model_info
from cnnbench.models.bn_inception import BN_INCEPTION_TABLE
from cnnbench.profiling import count_macs, count_params
from tests.helpers import CONF, FAST, compose_cfg, meta, stage_shapes

# Output (C, H, W) at 224²: the table's rows, with the channel counts its filter columns add up to
# (the printed output column says 28×28×576 for 3c, 576 for 4c/4d and 1024 for 4e: see the module docstring).
SHAPES = {
    "conv1": (64, 112, 112), "pool1": (64, 56, 56), "conv2": (192, 56, 56), "pool2": (192, 28, 28),
    "inception3a": (256, 28, 28), "inception3b": (320, 28, 28), "inception3c": (576, 14, 14),
    "inception4a": (576, 14, 14), "inception4b": (576, 14, 14), "inception4c": (608, 14, 14),
    "inception4d": (608, 14, 14), "inception4e": (1056, 7, 7), "inception5a": (1024, 7, 7),
    "inception5b": (1024, 7, 7),
}


def _table_counts(num_classes: int = 1000) -> tuple[int, int]:
    """(params, MACs) from the table alone: each conv k²·c_in·c_out weights + BN γ, β (2·c_out), no bias;
    MACs k²·c_in·c_out per output position; FC c·classes + classes."""
    params = macs = 0

    def conv(cin, cout, k, side):
        nonlocal params, macs
        params += k * k * cin * cout + 2 * cout
        macs += k * k * cin * cout * side * side

    conv(3, 64, 7, 112)
    conv(64, 64, 1, 56)
    conv(64, 192, 3, 56)
    ch, side = 192, 28
    for _, n1, r3, n3, rd, nd, _, proj, stride in BN_INCEPTION_TABLE:
        out_side = side // stride
        if n1:
            conv(ch, n1, 1, side)
        conv(ch, r3, 1, side)
        conv(r3, n3, 3, out_side)
        conv(ch, rd, 1, side)
        conv(rd, nd, 3, side)
        conv(nd, nd, 3, out_side)
        if proj:
            conv(ch, proj, 1, out_side)
        ch, side = n1 + n3 + nd + (proj or ch), out_side
    assert (ch, side) == (1024, 7)
    return params + ch * num_classes + num_classes, macs + ch * num_classes


def test_param_count_exact():
    params, _ = _table_counts()
    assert params == 11_285_224
    assert count_params(meta("inception_v2")) == params == model_info("inception_v2").paper_params
    assert count_params(meta("inception_v2", num_classes=10)) == _table_counts(10)[0]


def test_macs_at_224():
    _, macs = _table_counts()
    assert count_macs(meta("inception_v2"), 224) == macs == 2_032_600_064
    assert model_info("inception_v2").paper_macs == pytest.approx(macs, rel=1e-3)


def test_every_stage_shape():
    shapes = stage_shapes(meta("inception_v2"), 224)
    for name, shape in SHAPES.items():
        assert shapes[name] == shape, name


def test_module_columns():
    m = meta("inception_v2")
    m3a = m.features.inception3a
    # 3a: #1×1 64, #3×3 reduce 64, #3×3 64, double reduce 64, double 3×3 96 (two 3×3 convs), avg + 32
    assert m3a.branch1[0].out_channels == 64
    assert [c[0].out_channels for c in m3a.branch2] == [64, 64]
    assert [c[0].out_channels for c in m3a.branch3] == [64, 96, 96]
    assert all(c[0].kernel_size == (3, 3) for c in m3a.branch3[1:])  # the 5×5 is two 3×3s
    assert isinstance(m3a.branch4[0], nn.AvgPool2d) and m3a.branch4[1][0].out_channels == 32
    for name in ("inception3c", "inception4e"):  # stride 2, no 1×1, max pool + pass through
        mod = getattr(m.features, name)
        assert mod.branch1 is None and len(mod.branch4) == 1 and isinstance(mod.branch4[0], nn.MaxPool2d)
        assert mod.branch2[1][0].stride == (2, 2) and mod.branch3[2][0].stride == (2, 2)
        assert mod.branch3[1][0].stride == (1, 1)
    assert isinstance(m.features.inception5b.branch4[0], nn.MaxPool2d)  # 5b: max + 128
    assert isinstance(m.features.inception5a.branch4[0], nn.AvgPool2d)  # 5a: avg + 128


def test_bn_after_every_conv_no_bias_no_lrn_no_aux():
    m = meta("inception_v2")
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 3 + sum(5 + bool(r[1]) + bool(r[7]) for r in BN_INCEPTION_TABLE)
    assert all(c.bias is None for c in convs)
    assert not any(isinstance(x, (nn.LocalResponseNorm, nn.Dropout)) for x in m.modules())
    assert model_info("inception_v2").aux_weights == ()
    torch.manual_seed(0)
    small = create_model("inception_v2", num_classes=3, scaling={"width_mult": 0.25}).train()
    out = small(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)  # no aux outputs in training mode


def test_options():
    assert isinstance(meta("inception_v2", dropout=0.4).dropout, nn.Dropout)
    half = meta("inception_v2", scaling={"width_mult": 0.5})
    assert all(c.out_channels % 8 == 0 for c in half.modules() if isinstance(c, nn.Conv2d))
    assert count_params(half) < 0.35 * count_params(meta("inception_v2"))
    with pytest.raises(ValueError, match="width_mult"):
        meta("inception_v2", scaling={"depth_mult": 2.0})
    with pytest.raises(ValueError, match="unknown option"):
        create_model("inception_v2", aux_logits=True)


def test_odd_input_sizes_concatenate():
    torch.manual_seed(0)
    m = create_model("inception_v2", num_classes=4, scaling={"width_mult": 0.25}).eval()
    for side in (32, 75, 99):  # stride-2 modules: pooled and convolved grids always agree
        with torch.no_grad():
            assert m(torch.randn(1, 3, side, side)).shape == (1, 4)


def test_yaml_keys_are_builder_defaults():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "inception_v2.yaml"))
    assert cfg.pop("name") == "inception_v2" and cfg.pop("compile") is False
    assert set(cfg) == set(model_info("inception_v2").default_kwargs)
    assert count_params(meta("inception_v2", **cfg)) == 11_285_224


def test_inception_v2_imagenet_recipe_numbers():
    c = compose_cfg("train", ["experiment=inception_v2_imagenet"])
    g = compose_cfg("train", ["experiment=googlenet_ilsvrc14"])
    assert c.model.name == "inception_v2" and c.model.dropout == 0.0  # §4.2.1 dropout removed
    assert c.optimizer.lr == 0.0075 == 5 * 0.0015  # §4.2.2 BN-x5
    assert c.optimizer.weight_decay == pytest.approx(g.optimizer.weight_decay / 5)  # §4.2.1 ÷5
    assert (c.schedule.name, c.schedule.gamma) == ("exponential", 0.96)
    assert c.schedule.decay_every_epochs == pytest.approx(g.schedule.decay_every_epochs / 6)  # 6× faster decay
    assert c.data.batch_size == 32 and c.data.image_size == 224 and c.optimizer.momentum == 0.9
    for k in ("brightness", "contrast", "saturation"):  # fewer photometric distortions than GoogLeNet's
        assert c.augmentation.color_jitter[k] < g.augmentation.color_jitter[k]
    assert c.trainer.max_steps == 2_100_000 and c.ema.enabled is False


def test_inception_v2_trains_through_train(tmp_path):
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", FAST + ["model=inception_v2", "model.scaling.width_mult=0.25", "data=synthetic",
                                       "data.num_train=24", "data.val_split=8", "data.num_test=8",
                                       "data.batch_size=8", "trainer.max_epochs=1", "augmentation=none",
                                       "data.image_size=64"])
    results = train(cfg, run_dir=tmp_path)
    assert results["model"] == "inception_v2" and results["steps"] == 2
    assert math.isfinite(results["train/loss_last"]) and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert results["test/acc1"] * 8 == pytest.approx(round(results["test/acc1"] * 8), abs=1e-5)  # k of 8 right
