"""Reference equality: torchvision's network with random weights, saved as a state_dict, imported by
`cnnbench.pretrained`, computes the same logits (eval mode, fp32) — and, for ResNet-50, VGG-16, Inception-v3 and
EfficientNet-B0, the same logits again after one SGD step on both with the same batch (same gradients and BN
statistics updates, not just the same forward). Small inputs where the function does not depend on the size in
the fast tier; every pair at its native size in the slow tier (docs/pretrained.md)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth
from torchvision.transforms import v2

from cnnbench.checkpoint import module_from_loaded
from cnnbench.pretrained import entries, import_torchvision
from cnnbench.pretrained.core import INCEPTION_INPUT

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
VGGS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)]
NATIVE = {**{n: 224 for n in RESNETS + VGGS}, "inception_v3": 299, "alexnet_owt": 224,
          **dict(zip(EFFICIENTNETS, [224, 240, 260, 300, 380, 456, 528, 600], strict=True))}
FAST = {"resnet18": 64, "resnet50": 64, "efficientnet_b0": 64, "inception_v3": 107, "alexnet_owt": 63}  # VGG: 3 s per build, slow tier


def torchvision_net(name: str, **kwargs) -> nn.Module:
    """torchvision's network (no download: weights=None) with every BN's statistics and affine parameters and
    every conv bias randomised, so that a swapped or misplaced tensor changes the outputs."""
    torch.manual_seed(0)
    name = entries()[name].torchvision if name in entries() else name
    if name == "inception_v3":
        kwargs = {"init_weights": False, "aux_logits": True, **kwargs}
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.rand(m.out_channels, generator=gen) * 0.4 - 0.2)
    return net.eval()


def imported(net: nn.Module, name: str, tmp_path, file: str = "weights.pth"):
    """(our eval-mode module, checkpoint) after saving `net`'s state_dict and importing it."""
    path = tmp_path / file
    torch.save(net.state_dict(), path)
    ckpt, _ = import_torchvision(name, path)
    return module_from_loaded(ckpt, ckpt["cnnbench"], path), ckpt


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def same_logits(theirs: nn.Module, ours: nn.Module, size: int, batch: int = 2) -> float:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return rel_diff(ours(x), theirs(x))


def _case(name: str, fast: bool):
    size = FAST[name] if fast else NATIVE[name]
    return pytest.param(name, size, id=f"{name}-{size}", marks=() if fast else pytest.mark.slow)


CASES = [_case(n, True) for n in FAST] + [_case(n, False) for n in [*RESNETS, *VGGS, "inception_v3", *EFFICIENTNETS, "alexnet_owt"]]


@pytest.mark.parametrize("name,size", CASES)
def test_same_logits(name, size, tmp_path):
    theirs = torchvision_net(name)
    module, _ = imported(theirs, name, tmp_path)
    assert same_logits(theirs, module.model, size) < 1e-5


@pytest.mark.slow
def test_inception_v3_without_aux_head(tmp_path):
    theirs = torchvision_net("inception_v3", aux_logits=False)
    module, ckpt = imported(theirs, "inception_v3", tmp_path)
    assert ckpt["cnnbench"]["model"]["aux_logits"] is False and module.model.aux_head is None
    assert same_logits(theirs, module.model, 299) < 1e-5


def test_inception_v3_input_normalisation_is_torchvisions_transform_input(tmp_path):
    """torchvision's Inception weights expect ImageNet-normalised input converted back to (x − 0.5)/0.5
    (transform_input): the checkpoint's normalisation is mean = std = 0.5, and the whole pipeline from [0, 1]
    pixels agrees."""
    theirs = torchvision_net("inception_v3", aux_logits=False, transform_input=True)
    module, ckpt = imported(theirs, "inception_v3", tmp_path)
    assert ckpt["cnnbench"]["normalization"] == {"mean": list(INCEPTION_INPUT), "std": list(INCEPTION_INPUT)}
    pixels = torch.rand(2, 3, 107, 107, generator=torch.Generator().manual_seed(3))
    imagenet = v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        assert rel_diff(module(pixels), theirs(imagenet(pixels))) < 1e-5


def no_dropout(net: nn.Module) -> nn.Module:
    """Dropout and stochastic depth off: their random masks are not part of the function under test."""
    for m in net.modules():
        if isinstance(m, (nn.Dropout, StochasticDepth)):
            m.p = 0.0
    return net


def sgd_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One SGD step in training mode (batch-statistics BN; main + 0.4 × aux loss where there is an aux head)."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    out = net(x)
    logits, aux = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    loss = F.cross_entropy(logits, y) + (0.4 * F.cross_entropy(aux, y) if aux is not None else 0.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    net.eval()


SGD_CASES = [pytest.param("resnet50", 64, id="resnet50-64"), pytest.param("efficientnet_b0", 64, id="efficientnet_b0-64"),
             pytest.param("inception_v3", 299, id="inception_v3-299", marks=pytest.mark.slow),
             pytest.param("vgg16", 224, id="vgg16-224", marks=pytest.mark.slow),
             pytest.param("resnet50", 224, id="resnet50-224", marks=pytest.mark.slow),
             pytest.param("efficientnet_b0", 224, id="efficientnet_b0-224", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,size", SGD_CASES)
def test_same_logits_after_one_sgd_step(name, size, tmp_path):
    theirs = no_dropout(torchvision_net(name))
    module, _ = imported(theirs, name, tmp_path)
    ours = no_dropout(module.model)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 3, size, size, generator=gen), torch.randint(0, 1000, (4,), generator=gen)
    before = same_logits(theirs, ours, size)
    sgd_step(theirs, x, y)
    sgd_step(ours, x, y)
    after_theirs = theirs(x[:2]).detach()
    assert rel_diff(after_theirs, torchvision_net(name)(x[:2]).detach()) > 1e-3  # the step changed the network
    assert before < 1e-5 and same_logits(theirs, ours, size) < 1e-5


@pytest.mark.parametrize("name", sorted(set(entries()) - {"googlenet"}))
def test_table_maps_every_tensor_with_its_shape(name):
    """Every pair's table, on the meta device (no memory, no time): every torchvision tensor lands on one of ours of
    the same shape, none is left over, none of ours is left unset (the numbers are the slow tier's)."""
    from cnnbench.models import create_model
    from cnnbench.pretrained.core import convert, fold_biases

    spec = entries()[name]
    with torch.device("meta"):
        kwargs = {"init_weights": False} if name == "inception_v3" else {}
        sd = torchvision.models.get_model(spec.torchvision, weights=None, **kwargs).state_dict()
        net = create_model(name, **{k: v for k, v in spec.options(sd).items() if not k.startswith("bn_")})
    fold_biases(sd, spec.folds, name)
    state = convert(sd, spec.pairs(sd, net), net.state_dict(), name)
    assert set(state) == set(net.state_dict())


def test_folding_a_conv_bias_into_bn_is_the_same_function_in_eval_and_training():
    """VGG-BN (docs/pretrained.md): conv(x) + b → BN equals conv(x) → BN with running_mean − b, and one training
    step updates the running mean to the same (shifted) value."""
    from cnnbench.pretrained.core import fold_biases

    torch.manual_seed(0)
    theirs = nn.Sequential(nn.Conv2d(3, 5, 3, bias=True), nn.BatchNorm2d(5))
    with torch.no_grad():
        theirs[0].bias.uniform_(-1, 1)
        theirs[1].running_mean.uniform_(-1, 1)
    ours = nn.Sequential(nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5))
    sd = dict(theirs.state_dict())
    fold_biases(sd, [("0", "1")], "test")
    ours.load_state_dict(sd)
    x = torch.randn(4, 3, 8, 8)
    theirs.eval(), ours.eval()
    assert rel_diff(ours(x), theirs(x)) < 1e-5
    theirs.train(), ours.train()
    assert rel_diff(ours(x), theirs(x)) < 1e-5
    torch.testing.assert_close(ours[1].running_mean, theirs[1].running_mean - theirs[0].bias.detach())


def test_every_supported_name_is_a_registered_model_and_a_torchvision_model():
    from cnnbench.models import list_models

    names = set(entries())
    assert names <= set(list_models())
    assert {e.torchvision for e in entries().values()} <= set(torchvision.models.list_models())
    assert set(RESNETS + VGGS + EFFICIENTNETS + ["inception_v3", "googlenet", "alexnet_owt"]) == names


def test_googlenet_refusal_states_torchvisions_actual_differences():
    """The refusal's reasons hold for torchvision's googlenet (3×3 in the '5×5' branch, a 2×2 pool before 5a, no LRN)
    and against ours (5×5)."""
    from cnnbench.models import create_model
    from cnnbench.pretrained.googlenet import REFUSAL

    with torch.device("meta"):
        theirs = torchvision.models.googlenet(weights=None, init_weights=False)
        ours = create_model("googlenet", batch_norm=True)
    assert list(theirs.inception3a.branch3[1].conv.weight.shape) == [32, 16, 3, 3]
    assert list(ours.features.inception3a.branch3[1][0].weight.shape) == [32, 16, 5, 5]
    assert theirs.maxpool4.kernel_size == 2 and not any(isinstance(m, nn.LocalResponseNorm) for m in theirs.modules())
    assert "[32, 16, 3, 3]" in REFUSAL and "[32, 16, 5, 5]" in REFUSAL and "2×2/2" in REFUSAL
