"""AlexNet (Krizhevsky et al. 2012) one tower, and torchvision's "one weird trick" widths: exact parameter
counts derived from the layer table, MACs, same function as torchvision.models.alexnet, recipe, training."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from cnnbench.models import create_model, list_models, model_info
from cnnbench.profiling import count_macs, count_params
from tests.helpers import CONF, FAST, compose_cfg, meta, stage_shapes

# (in, out, k, output side at 224², grouped in the two-GPU net?) per conv, Fig. 2 one tower
CONVS_2012 = [(3, 96, 11, 55, False), (96, 256, 5, 27, True), (256, 384, 3, 13, False),
              (384, 384, 3, 13, True), (384, 256, 3, 13, True)]
FCS = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]


def _table_params(convs, groups: int = 1) -> int:
    """Σ k²·(in/g)·out + out over the convs (g = 2 where the paper's convs see one GPU's half), plus FCs."""
    total = 0
    for cin, cout, k, _, grouped in convs:
        g = groups if grouped else 1
        total += k * k * (cin // g) * cout + cout
    return total + sum(i * o + o for i, o in FCS)


def _table_macs(convs) -> int:
    return sum(k * k * cin * cout * side * side for cin, cout, k, side, _ in convs) + sum(i * o for i, o in FCS)


def test_registered():
    assert {"alexnet", "alexnet_owt"} <= set(list_models())
    assert model_info("alexnet").paper_params == 62_378_344
    assert model_info("alexnet").paper_top5 == pytest.approx(0.818)


def test_one_tower_param_count_exact():
    # 34,944 + 614,656 + 885,120 + 1,327,488 + 884,992 (convs) + 37,752,832 + 16,781,312 + 4,097,000 (FCs)
    assert _table_params(CONVS_2012) == 62_378_344
    assert count_params(meta("alexnet")) == 62_378_344
    # the paper's two-GPU network (convs 2, 4, 5 see half the channels): its "60 million parameters" (§1)
    assert _table_params(CONVS_2012, groups=2) == 60_965_224


def test_one_tower_macs_at_224():
    macs = count_macs(meta("alexnet"), 224)
    assert macs == _table_macs(CONVS_2012) == 1_135_256_096
    assert macs == pytest.approx(model_info("alexnet").paper_macs, rel=1e-3)


def test_one_tower_shapes_and_lrn():
    shapes = stage_shapes(meta("alexnet"), 224)
    convs = [i for i, m in enumerate(meta("alexnet").features) if isinstance(m, nn.Conv2d)]
    assert [shapes[str(i)] for i in convs] == [(c[1], c[3], c[3]) for c in CONVS_2012]
    m = meta("alexnet")
    assert shapes[str(len(m.features) - 1)] == (256, 6, 6)
    lrns = [x for x in m.features if isinstance(x, nn.LocalResponseNorm)]
    # §3.3: k = 2, n = 5, α = 1e-4 (torch divides α by n, so it holds α·n), β = 0.75
    assert [(x.size, x.alpha, x.beta, x.k) for x in lrns] == [(5, 5e-4, 0.75, 2.0)] * 2
    pools = [x for x in m.features if isinstance(x, nn.MaxPool2d)]
    assert len(pools) == 3 and all((p.kernel_size, p.stride) == (3, 2) for p in pools)  # §3.4 overlapping
    assert [x.p for x in m.classifier if isinstance(x, nn.Dropout)] == [0.5, 0.5]


def test_lrn_matches_the_papers_formula():
    """b = a / (k + α Σ_{n neighbours} a²)^β with the paper's constants, on a small tensor."""
    torch.manual_seed(0)
    a = torch.randn(1, 7, 3, 3) * 10
    lrn = create_model("alexnet").features[2]
    expect = torch.empty_like(a)
    for i in range(7):
        lo, hi = max(0, i - 2), min(6, i + 2)
        expect[:, i] = a[:, i] / (2.0 + 1e-4 * (a[:, lo:hi + 1] ** 2).sum(1)) ** 0.75
    torch.testing.assert_close(lrn(a), expect)


def test_paper_init():
    torch.manual_seed(0)
    m = create_model("alexnet")
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    fcs = [x for x in m.classifier if isinstance(x, nn.Linear)]
    assert [float(c.bias.detach()[0]) for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]  # §5
    assert [float(f.bias.detach()[0]) for f in fcs] == [1.0, 1.0, 0.0]
    assert float(fcs[0].weight.detach().std()) == pytest.approx(0.01, rel=0.02)
    with pytest.raises(ValueError, match="init"):
        create_model("alexnet", init="xavier")


def test_owt_is_torchvisions_alexnet():
    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None).eval()
    ours = create_model("alexnet_owt").eval()
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))
    assert count_params(ours) == model_info("alexnet_owt").paper_params == 61_100_840
    owt = [(3, 64, 11, 55, False), (64, 192, 5, 27, False), (192, 384, 3, 13, False), (384, 256, 3, 13, False),
           (256, 256, 3, 13, False)]
    assert count_macs(meta("alexnet_owt"), 224) == _table_macs(owt)


def test_forward_small_input_and_backward():
    torch.manual_seed(0)
    m = create_model("alexnet", num_classes=5).train()
    out = m(torch.randn(2, 3, 63, 63))  # the smallest side that survives the three pools
    out.pow(2).mean().backward()
    assert out.shape == (2, 5) and all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("name", ["alexnet", "alexnet_owt"])
def test_yaml_keys_are_builder_defaults(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    assert cfg.pop("name") == name and cfg.pop("compile") is False
    assert cfg == model_info(name).default_kwargs


def test_alexnet_imagenet_recipe_numbers():
    c = compose_cfg("train", ["experiment=alexnet_imagenet"])
    assert c.model.name == "alexnet" and c.model.dropout == 0.5
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.momentum, c.optimizer.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert c.data.batch_size == 128 and c.optimizer.reference_batch == 128 and c.data.mean_mode == "pixel"
    assert (c.schedule.name, c.schedule.factor) == ("plateau", 0.1)
    assert (c.augmentation.min_side, c.augmentation.max_side, c.augmentation.pca_alpha) == (256, 256, 0.1)
    assert c.augmentation.hflip and c.trainer.max_epochs == 90


@pytest.mark.slow
def test_alexnet_trains_through_train(tmp_path):
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", FAST + ["model=alexnet", "model.init=he", "data=synthetic", "data.num_train=24",
                                       "data.val_split=8", "data.num_test=8", "data.batch_size=8",
                                       "trainer.max_epochs=1", "augmentation=none", "data.image_size=64"])
    results = train(cfg, run_dir=tmp_path)
    assert results["model"] == "alexnet" and results["steps"] == 2
    assert math.isfinite(results["train/loss_last"]) and results["n_test"] == 8
    assert results["test/acc1"] * 8 == pytest.approx(round(results["test/acc1"] * 8), abs=1e-5)  # k of 8 right
