"""GoogLeNet (Szegedy et al. 2015): Table 1 shapes, exact parameter counts, MACs, aux heads, options."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.profiling import count_macs, count_params
from tests.helpers import meta, stage_shapes

ROOT = Path(__file__).resolve().parents[2]


# Table 1 "output size" column (C, H, W) at 224².
TABLE1_OUTPUTS = {
    "conv1": (64, 112, 112), "pool1": (64, 56, 56), "conv2": (192, 56, 56), "pool2": (192, 28, 28),
    "inception3a": (256, 28, 28), "inception3b": (480, 28, 28), "pool3": (480, 14, 14),
    "inception4a": (512, 14, 14), "inception4b": (512, 14, 14), "inception4c": (512, 14, 14),
    "inception4d": (528, 14, 14), "inception4e": (832, 14, 14), "pool4": (832, 7, 7),
    "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
}


def test_registered_with_reference_numbers():
    info = model_info("googlenet")
    assert "googlenet" in list_models()
    assert info.input_size == 224 and info.paper_params == 6_998_552
    assert info.aux_weights == (0.3, 0.3)
    assert info.paper_top5 == pytest.approx(0.8993)


def test_param_counts_exact():
    assert count_params(meta("googlenet", aux_logits=False)) == 6_998_552
    assert count_params(meta("googlenet")) == 13_378_280  # both aux heads (spec A.6)


def test_macs_within_3_percent():
    macs = count_macs(meta("googlenet", aux_logits=False), 224)
    assert macs == pytest.approx(model_info("googlenet").paper_macs, rel=0.03)
    assert macs == pytest.approx(1.583e9, rel=0.003)  # recomputed from Table 1's filter columns
    # aux heads are not part of the inference cost
    assert count_macs(meta("googlenet"), 224) == macs


def test_every_stage_matches_table1_output_size():
    shapes = stage_shapes(meta("googlenet", aux_logits=False), 224)
    for name, shape in TABLE1_OUTPUTS.items():
        assert shapes[name] == shape, name


def test_module_widths_follow_table1_columns():
    m = meta("googlenet", aux_logits=False)
    m4d = m.features.inception4d
    # #1×1 112, #3×3 reduce 144, #3×3 288, #5×5 reduce 32, #5×5 64 (a real 5×5), pool proj 64
    assert m4d.branch1[0].out_channels == 112
    assert (m4d.branch2[0][0].out_channels, m4d.branch2[1][0].out_channels) == (144, 288)
    assert (m4d.branch3[0][0].out_channels, m4d.branch3[1][0].out_channels) == (32, 64)
    assert m4d.branch3[1][0].kernel_size == (5, 5)
    assert m4d.branch4[1][0].out_channels == 64
    relus = sum(isinstance(x, nn.ReLU) for x in m.modules())
    convs = sum(isinstance(x, nn.Conv2d) for x in m.modules())
    assert relus == convs == 3 + 9 * 6  # a ReLU after every conv (2 stem + 1 reduce, 6 per module)


def test_aux_outputs_only_in_training():
    torch.manual_seed(0)
    m = create_model("googlenet", num_classes=7, scaling={"width_mult": 0.25})
    x = torch.randn(2, 3, 64, 64)
    m.train()
    out = m(x)
    assert isinstance(out, tuple) and len(out) == 3
    assert all(o.shape == (2, 7) for o in out)
    assert m.aux_weights == (0.3, 0.3)
    m.eval()
    with torch.no_grad():
        y = m(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 7)
    m_noaux = create_model("googlenet", num_classes=7, aux_logits=False, scaling={"width_mult": 0.25}).train()
    assert isinstance(m_noaux(x), torch.Tensor) and m_noaux.aux_weights == ()


def test_aux_head_is_the_papers_at_native_size():
    m = meta("googlenet")
    head = m.aux_heads["inception4a"]
    assert head.conv[0].out_channels == 128 and head.fc1.in_features == 128 * 4 * 4
    assert head.fc1.out_features == 1024 and head.dropout.p == 0.7
    assert m.dropout.p == 0.4
    # at 224² the 5×5/3 pool turns 14×14 into exactly 4×4 (no adaptive fallback needed)
    assert (14 - 5) // 3 + 1 == 4


def test_forward_backward_small():
    torch.manual_seed(0)
    m = create_model("googlenet", num_classes=5, scaling={"width_mult": 0.25}).train()
    out = m(torch.randn(2, 3, 48, 48))
    sum(o.pow(2).mean() for o in out).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_lrn_option():
    with_lrn, without = meta("googlenet"), meta("googlenet", lrn=False)
    lrns = [x for x in with_lrn.modules() if isinstance(x, nn.LocalResponseNorm)]
    assert len(lrns) == 2 and (lrns[0].size, lrns[0].alpha, lrns[0].beta) == (5, 1e-4, 0.75)
    assert not any(isinstance(x, nn.LocalResponseNorm) for x in without.modules())
    assert count_params(with_lrn) == count_params(without)  # LRN has no parameters


def test_batch_norm_option():
    plain, bn = meta("googlenet", aux_logits=False), meta("googlenet", aux_logits=False, batch_norm=True)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in plain.modules())
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in bn.modules())
    assert n_bn == 3 + 9 * 6
    assert all(c.bias is None for c in bn.modules() if isinstance(c, nn.Conv2d))
    conv_biases = sum(c.out_channels for c in plain.modules() if isinstance(c, nn.Conv2d))
    # BN adds γ and β per conv channel, drops the conv bias
    assert count_params(bn) == count_params(plain) + conv_biases


def test_aux_weights_option():
    m = meta("googlenet", aux_weights=[0.5, 0.2])
    assert m.aux_weights == (0.5, 0.2)
    with pytest.raises(ValueError, match="aux_weights"):
        meta("googlenet", aux_weights=[0.3])


def test_width_mult():
    base = meta("googlenet", aux_logits=False)
    assert count_params(meta("googlenet", aux_logits=False, scaling=None)) == 6_998_552
    assert count_params(meta("googlenet", aux_logits=False, scaling={"width_mult": 1.0})) == 6_998_552
    half = meta("googlenet", aux_logits=False, scaling={"width_mult": 0.5})
    base_convs = [c for c in base.modules() if isinstance(c, nn.Conv2d)]
    half_convs = [c for c in half.modules() if isinstance(c, nn.Conv2d)]
    for b, h in zip(base_convs, half_convs, strict=True):
        assert h.out_channels % 8 == 0 and h.out_channels >= 0.9 * b.out_channels * 0.5
    assert half.features.inception3a.branch3[0][0].out_channels == 8  # 16 → 8
    assert half.fc.in_features == 512
    assert count_params(half) < 0.3 * count_params(base)
    with pytest.raises(ValueError, match="width_mult"):
        meta("googlenet", scaling={"depth_mult": 2.0})


def test_unknown_option_rejected():
    with pytest.raises(ValueError, match="unknown option"):
        create_model("googlenet", drop_path_rate=0.1)


def test_yaml_keys_are_builder_defaults():
    path = ROOT / "conf" / "model" / "googlenet.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg.pop("name") == "googlenet" and cfg.pop("compile") is False
    assert set(cfg) == {"aux_logits", "aux_weights", "lrn", "batch_norm", "scaling"}
    m = meta("googlenet", **cfg)
    assert count_params(m) == 13_378_280 and m.aux_weights == model_info("googlenet").aux_weights


def test_few_training_steps_with_aux_loss():
    """Main loss + Σ wᵢ·aux lossᵢ on a fixed synthetic batch goes down (reduced width and resolution)."""
    torch.manual_seed(0)
    m = create_model("googlenet", num_classes=4, scaling={"width_mult": 0.25}).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    ce = nn.CrossEntropyLoss()
    losses = []
    for _ in range(8):
        logits, *aux = m(x)
        assert len(aux) == len(m.aux_weights) == 2
        loss = ce(logits, y) + sum(w * ce(a, y) for w, a in zip(m.aux_weights, aux, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0]


@pytest.mark.slow
def test_native_resolution_forward():
    m = create_model("googlenet").eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
