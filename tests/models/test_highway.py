"""Highway networks (Srivastava et al. 2015; CNN lecture part II): gate equations, carry bias,
layouts of highway_mlp / highway_conv, forward/backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.models.highway import HighwayConv2d, HighwayLinear, stage_depths
from cnnbench.profiling import count_params

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
NAMES = ["highway_mlp", "highway_conv"]


def test_registered():
    assert set(NAMES) <= set(list_models())


# --------------------------------------------------------------------------------------------- layers


def test_linear_gate_equation():
    torch.manual_seed(0)
    layer = HighwayLinear(16, carry_bias=-1.0)
    x = torch.randn(4, 16)
    h = torch.relu(x @ layer.h.weight.T + layer.h.bias)
    t = torch.sigmoid(x @ layer.t.weight.T + layer.t.bias)
    assert torch.allclose(layer(x), h * t + x * (1 - t), atol=1e-6)
    assert torch.allclose(layer.transform_gate(x), t)


def test_linear_init_follows_lecture():
    torch.manual_seed(0)
    layer = HighwayLinear(50, carry_bias=-3.0)
    assert torch.all(layer.t.bias == -3.0)
    assert torch.all(layer.h.bias == 0.1)
    for w in (layer.h.weight, layer.t.weight):  # truncated normal, std 0.1, cut at 2σ
        assert w.abs().max() <= 0.2 + 1e-6
        assert 0.06 < w.std().item() < 0.1


def test_negative_carry_bias_starts_near_identity():
    torch.manual_seed(0)
    x = torch.randn(64, 50)
    dist = {}
    for b in (0.0, -1.0, -3.0, -10.0):
        torch.manual_seed(1)
        layer = HighwayLinear(50, carry_bias=b)
        with torch.no_grad():
            t = layer.transform_gate(x)
            dist[b] = (layer(x) - x).norm().item() / x.norm().item()
        # the gate opens about sigmoid(b) on average
        assert t.mean().item() == pytest.approx(torch.sigmoid(torch.tensor(b)).item(), abs=0.08)
    assert dist[0.0] > dist[-1.0] > dist[-3.0] > dist[-10.0]
    assert dist[-10.0] < 1e-3


def test_conv_gate_equation_same_shape():
    torch.manual_seed(0)
    layer = HighwayConv2d(8, 8, stride=1, carry_bias=-2.0).eval()
    x = torch.randn(2, 8, 6, 6)
    h = layer.h(x)
    t = torch.sigmoid(nn.functional.conv2d(x, layer.t.weight, layer.t.bias, padding=1))
    assert torch.allclose(layer(x), h * t + x * (1 - t), atol=1e-6)


def test_conv_transition_carries_subsampled_zero_padded_input():
    torch.manual_seed(0)
    layer = HighwayConv2d(8, 16, stride=2, carry_bias=-2.0).eval()
    layer.reset_gate()
    x = torch.randn(2, 8, 6, 6)
    t = layer.transform_gate(x)
    carry = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 8, 3, 3)], 1)
    y = layer(x)
    assert y.shape == (2, 16, 3, 3)
    assert torch.allclose(y, layer.h(x) * t + carry * (1 - t), atol=1e-6)
    assert torch.all(layer.t.bias == -2.0)


def test_conv_net_starts_near_identity_with_very_negative_bias():
    torch.manual_seed(0)
    m = create_model("highway_conv", num_classes=10, carry_bias=-12.0).eval()
    layer = m.stages[0][1]
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.allclose(layer(x), x, atol=1e-3)


# --------------------------------------------------------------------------------------------- nets


def mlp_params(inputs: int, width: int, depth: int, classes: int) -> int:
    return inputs * width + width + depth * 2 * (width * width + width) + width * classes + classes


def test_mlp_layout_and_knobs():
    m = create_model("highway_mlp", num_classes=10, in_chans=1)
    assert sum(isinstance(x, HighwayLinear) for x in m.modules()) == 10
    assert count_params(m) == mlp_params(784, 50, 10, 10) == 90_760
    m = create_model(
        "highway_mlp", num_classes=10, in_chans=3, input_size=32, depth=20, width=71, carry_bias=-2.0
    )
    layers = [x for x in m.modules() if isinstance(x, HighwayLinear)]
    assert len(layers) == 20 and all(torch.all(x.t.bias == -2.0) for x in layers)
    assert count_params(m) == mlp_params(3 * 32 * 32, 71, 20, 10)


def test_mlp_forward_backward_and_input_check():
    torch.manual_seed(0)
    m = create_model("highway_mlp", num_classes=10, in_chans=1, depth=30)
    y = m(torch.randn(2, 1, 28, 28))
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(2, 3, 28, 28))
    # other sizes are average-pooled to input_size² first; at input_size² that pooling is the identity
    m.eval()
    x = torch.randn(2, 1, 56, 56)
    with torch.no_grad():
        assert torch.allclose(m(x), m(nn.functional.avg_pool2d(x, 2)), atol=1e-6)
        assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)
        x28 = torch.randn(2, 1, 28, 28)
        manual = m.fc(m.layers(torch.relu(m.plain(x28.flatten(1)))))
        assert torch.allclose(m(x28), manual, atol=1e-6)


def conv_params(width: int, depths: tuple[int, ...], classes: int) -> int:
    n = 3 * 9 * width + 2 * width  # stem conv + BN
    in_ch = width
    for out_ch, d in zip((width, 2 * width, 4 * width), depths, strict=True):
        for _ in range(d):
            n += 9 * in_ch * out_ch + 2 * out_ch  # H: conv (no bias) + BN
            n += 9 * in_ch * out_ch + out_ch  # T: conv + bias
            in_ch = out_ch
    return n + in_ch * classes + classes


@pytest.mark.parametrize(
    "depth,depths", [(19, (6, 6, 5)), (32, (10, 10, 10)), (5, (1, 1, 1)), (12, (4, 3, 3))]
)
def test_conv_depth_split(depth, depths):
    assert stage_depths(depth - 2) == depths
    with torch.device("meta"):
        m = create_model("highway_conv", num_classes=10, depth=depth, width=16)
    assert m.stage_depths == depths
    assert sum(isinstance(x, HighwayConv2d) for x in m.modules()) == depth - 2
    assert count_params(m) == conv_params(16, depths, 10)


def test_conv_default_size_near_highway19():
    with torch.device("meta"):
        m = create_model("highway_conv", num_classes=10)
    assert count_params(m) == conv_params(32, (6, 6, 5), 10) == 1_849_066  # Table 6 Highway-19: 2.3M


def test_conv_stage_shapes_and_forward_backward():
    torch.manual_seed(0)
    m = create_model("highway_conv", num_classes=10, depth=8, width=8)
    x = m.stem(torch.randn(2, 3, 32, 32))
    for stage, (ch, size) in zip(m.stages, [(8, 32), (16, 16), (32, 8)], strict=True):
        x = stage(x)
        assert x.shape == (2, ch, size, size)
    y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_conv_without_batch_norm():
    with torch.device("meta"):
        m = create_model("highway_conv", num_classes=10, batch_norm=False)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert all(c.bias is not None for c in m.modules() if isinstance(c, nn.Conv2d))


def test_conv_rejects_too_shallow():
    with pytest.raises(ValueError, match="depth"):
        create_model("highway_conv", depth=4)


def test_conv_default_forward_backward():
    m = create_model("highway_conv", num_classes=10)
    y = m(torch.randn(2, 3, 32, 32))
    y.sum().backward()
    assert y.shape == (2, 10)


def test_model_info():
    assert model_info("highway_mlp").input_size == 28
    info = model_info("highway_conv")
    assert info.input_size == 32 and info.reference_num_classes == 10 and info.paper_params is None


@pytest.mark.parametrize("name", NAMES)
def test_yaml_exists_and_keys_accepted(name):
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["compile"] is False
    kwargs = {k: v for k, v in cfg.items() if k not in ("name", "compile")}
    assert kwargs == model_info(name).default_kwargs
    with torch.device("meta"):
        create_model(name, num_classes=10, **kwargs)
    expected_bias = -1.0 if name == "highway_mlp" else -2.0
    assert kwargs["carry_bias"] == expected_bias
