"""The registry: names, records, YAMLs, clear errors, and a forward+backward of every model."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.models import UnknownModelError, create_model, list_models, main_logits, model_info
from cnnbench.profiling import count_params
from cnnbench.training.module import model_kwargs
from tests.helpers import CONF

SPINE_MODELS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
                "plain20", "plain32", "plain44", "plain56", "plain110"]


def test_list_models_sorted_and_has_spine_models():
    names = list_models()
    assert names == sorted(names)
    assert set(SPINE_MODELS) <= set(names)


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_its_yaml_and_record(name):
    path = CONF / "model" / f"{name}.yaml"
    assert path.is_file(), f"missing {path}"
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg["name"] == name and "compile" in cfg
    info = model_info(name)
    assert info.min_input_size <= info.input_size and 0 < info.crop_pct <= 1
    with torch.device("meta"):
        create_model(name, num_classes=info.reference_num_classes, **model_kwargs(cfg))


@pytest.mark.parametrize("name,params", [("resnet20", 269_722), ("resnet32", 464_154), ("resnet44", 658_586),
                                         ("resnet56", 853_018), ("resnet110", 1_727_962),
                                         ("resnet1202", 19_421_274)])
def test_cifar_resnet_params(name, params):
    plain = name.replace("resnet", "plain")  # the same network without shortcuts: option A adds no parameters
    with torch.device("meta"):
        assert count_params(create_model(name, num_classes=10)) == params
        if plain in list_models():  # there is no plain1202
            assert count_params(create_model(plain, num_classes=10)) == params


def _small_size(name: str) -> int:
    info = model_info(name)
    return max(info.min_input_size, 32)


def _heavy(name: str) -> bool:
    info = model_info(name)
    return (info.paper_params or 0) > 30e6 or name == "resnet1202"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n for n in list_models()])
def test_forward_backward_small(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    model.train()
    size = _small_size(name)
    out = model(torch.randn(2, 3, size, size))
    logits = main_logits(out)
    assert logits.shape == (2, 7)
    loss = sum(o.float().sum() for o in (out if isinstance(out, (tuple, list)) else [out]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 7)  # eval mode: logits only


def test_unknown_model_names_the_choices():
    with pytest.raises(UnknownModelError, match="unknown model 'resnet21'; valid choices: .*resnet20"):
        create_model("resnet21")


def test_unknown_option_names_valid_options():
    with pytest.raises(ValueError, match="unknown option\\(s\\) depth for model 'resnet20'"):
        create_model("resnet20", depth=3)


def test_in_chans_changes_first_conv():
    model = create_model("resnet20", num_classes=10, in_chans=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_main_logits():
    a, b = torch.zeros(1), torch.ones(1)
    assert main_logits((a, b)) is a and main_logits(a) is a
