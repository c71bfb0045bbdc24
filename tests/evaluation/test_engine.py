"""The evaluation engine and `cnnbench eval` on the tiny checkpoints: multi-crop, ensembles, multiscale,
dense (VGG), EMA weights, paper values and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.errors import UserError
from cnnbench.evaluation.engine import (
    Scorer,
    SplitReader,
    ViewDataset,
    attach_dense,
    load_member,
    view_loader,
)
from cnnbench.evaluation.plan import ViewPlan, make_plan
from tests.helpers import compose_cfg

DIGITS = ["data=digits", "data.num_workers=0", "data.persistent_workers=false", "hardware=cpu",
          "eval.progress=false", "data.limit_test=30"]


def _digits_test(limit: int = 12):
    from cnnbench.data.sources import load_digits_source

    return load_digits_source().train.subset(np.arange(limit))


def _probs(members, plans, split, crop_batch=7):
    scorer = Scorer(members, plans, crop_batch=crop_batch)
    loader = view_loader(ViewDataset(SplitReader(split), len(split), plans), plans, batch_size=10,
                         crop_batch=crop_batch * 4, num_workers=0)
    return torch.cat([p for p, *_ in scorer.run(loader, progress=False)])


def _plan(member, crops=1, **ev):
    return make_plan(OmegaConf.create({"mode": "crops", **ev}), crops, member.record,
                     member.record["image_size"], member.record["image_size"])


def test_eval_ten_crops_writes_papers_style_output(tmp_path, tiny_checkpoint):
    from cnnbench.commands.evaluate import evaluate

    out = evaluate(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "crops=10", *DIGITS]), run_dir=tmp_path)
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["crops"] == 10 and written["views_per_image"] == 10 and written["mode"] == "crops"
    assert written["top1_err"] == pytest.approx(1 - written["acc1"], abs=1e-6)
    n = written["n_images"]
    assert written["acc1"] * n == pytest.approx(round(written["acc1"] * n), abs=1e-3)  # k of the n images right
    assert written["models"] == [str(tiny_checkpoint)] and out["n_images"] == written["n_images"]
    md = (tmp_path / "eval.md").read_text().splitlines()
    assert md[0].startswith("| model |") and md[2].startswith("| resnet20 | digits/test | 10 | crops |")


def test_ensemble_averages_softmax_over_models(tmp_path, tiny_checkpoint, tiny_checkpoint_b):
    a, b = load_member(str(tiny_checkpoint)), load_member(str(tiny_checkpoint_b))
    assert a.name != b.name  # resnet20 and plain20: different architectures
    split = _digits_test(6)
    plan = _plan(a, crops=10)
    b.plan = 0
    pa, pb = _probs([a], [plan], split), _probs([b], [plan], split)
    both = _probs([a, b], [plan], split)
    assert torch.allclose(both, (pa + pb) / 2, atol=1e-6)
    assert not torch.allclose(pa, pb, atol=1e-3)

    from cnnbench.commands.evaluate import evaluate

    cfg = compose_cfg("eval", [f"ckpt_path=[{tiny_checkpoint},{tiny_checkpoint_b}]", *DIGITS])
    out = evaluate(cfg, run_dir=tmp_path)
    assert out["models"] == [str(tiny_checkpoint), str(tiny_checkpoint_b)] and out["model"] == "resnet20+plain20"
    assert out["views_per_image"] == 2 and "paper" not in out


def test_crop_batch_does_not_change_the_result(tiny_checkpoint):
    m = load_member(str(tiny_checkpoint))
    split = _digits_test(3)
    plan = _plan(m, crops=144)
    assert plan.views_per_image() == 144
    assert torch.allclose(_probs([m], [plan], split, crop_batch=50), _probs([m], [plan], split, crop_batch=500),
                          atol=1e-5)


def test_multiscale_at_the_native_scale_equals_the_single_view(tiny_checkpoint):
    m = load_member(str(tiny_checkpoint))
    size = m.record["image_size"]
    split = _digits_test()
    single = _probs([m], [_plan(m)], split)
    # a scale of `reference` px is the image size itself: the whole image, unflipped, is the single view
    whole = _probs([m], [_plan(m, mode="multiscale", scales=[224], flip=False)], split)
    assert torch.allclose(single, whole, atol=1e-5)
    plan = _plan(m, mode="multiscale")
    assert plan.pixel_scales() == tuple(round(s * size / 224) for s in (224, 256, 384, 480, 640))
    assert plan.views_per_image() == 10
    assert not torch.allclose(single, _probs([m], [plan], split), atol=1e-4)


def test_eval_multiscale_and_dense_from_the_cli_config(tmp_path, tiny_checkpoint):
    from cnnbench.commands.evaluate import evaluate

    out = evaluate(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "eval.mode=multiscale", *DIGITS,
                                        "data.limit_test=12"]), run_dir=tmp_path)
    assert out["mode"] == "multiscale" and out["views_per_image"] == 10
    with pytest.raises(UserError, match="eval.mode=dense needs a network with FC layers"):
        evaluate(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "eval.mode=dense", *DIGITS]), run_dir=tmp_path)


def _vgg_member(tmp_path):
    from cnnbench.evaluation.engine import Member
    from cnnbench.training.module import ClassificationModule

    torch.manual_seed(0)
    record = {"model": {"name": "vgg11"}, "num_classes": 4, "in_chans": 3, "classes": list("abcd"),
              "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, "image_size": 224, "crop_pct": 0.875}
    module = ClassificationModule(model=record["model"], num_classes=4, in_chans=3,
                                  normalization=record["normalization"], classes=record["classes"],
                                  image_size=224, crop_pct=0.875).eval()
    return Member(path=str(tmp_path / "vgg.ckpt"), module=module, record=record, weights="plain")


@pytest.mark.slow
def test_vgg_dense_evaluation_and_dense_plus_multicrop(tmp_path):
    m = _vgg_member(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)

    class Split:  # two 224×224 images
        files = None

        def __init__(self):
            self.images, self.labels = images, np.array([0, 1])

        def __len__(self):
            return 2

    plan = make_plan(OmegaConf.create({"mode": "dense", "scales": [224], "flip": False}), 1, m.record, 224, None)
    attach_dense(m, plan)
    assert m.dense is not None
    dense = _probs([m], [plan], Split(), crop_batch=2)
    # at Q = 224 the score map is 1×1: dense evaluation is the FC network's softmax
    with torch.inference_mode():
        plain = torch.softmax(m.module(torch.from_numpy(images).permute(0, 3, 1, 2)), 1)
        score_map = m.dense.classifier(m.dense.features(m.module.prepare(torch.zeros(1, 3, 256, 320))))
    assert torch.allclose(dense, plain, atol=1e-5)
    assert score_map.shape[-2:] == (2, 4)  # a larger image gives a map, averaged by the plan
    flipped = _probs([m], [make_plan(OmegaConf.create({"mode": "dense", "scales": [224]}), 1, m.record, 224, None)],
                     Split(), crop_batch=4)
    with torch.inference_mode():
        mirror = torch.softmax(m.module(torch.from_numpy(images[:, :, ::-1].copy()).permute(0, 3, 1, 2)), 1)
    assert torch.allclose(flipped, (plain + mirror) / 2, atol=1e-5)
    combined = make_plan(OmegaConf.create({"mode": "dense", "scales": [224], "flip": False}), 10, m.record, 224, None)
    assert combined.parts() == ["whole", "crops"] and combined.views_per_image() == 1 + 5


def test_weights_raw_reads_current_model_state(tmp_path, tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    raw = {k: (v + 0.5 if v.is_floating_point() and k.endswith("weight") else v) for k, v in ckpt["state_dict"].items()}
    ckpt["current_model_state"] = raw
    path = tmp_path / "ema.ckpt"
    torch.save(ckpt, path)
    averaged, rawm = load_member(str(path), "averaged"), load_member(str(path), "raw")
    assert averaged.weights == "averaged" and rawm.weights == "raw"
    key = next(k for k in raw if k.endswith("weight") and raw[k].is_floating_point())
    assert torch.equal(averaged.module.state_dict()[key], ckpt["state_dict"][key])
    assert torch.equal(rawm.module.state_dict()[key], raw[key])
    assert load_member(str(tiny_checkpoint), "raw").weights == "plain"  # no averaging in that run


@pytest.mark.parametrize("override,choices", [
    ("eval.mode=sparse", ("crops", "multiscale", "dense")),
    ("eval.aggregate=max", ("softmax_mean", "logit_mean")),
    ("eval.twelve=x", ("one_square", "four_scales")),
    ("eval.weights=ema", ("averaged", "raw")),
    ("eval.views=tta", ("protocol", "train")),
    ("crops=7", ("1", "10", "144")),
])
def test_bad_eval_keys_name_the_choices_before_the_command_runs(override, choices):
    """One rule per key (config_schema.RULES), checked on the command line before torch loads."""
    from cnnbench.precheck import check_overrides

    key = override.split("=")[0]
    with pytest.raises(UserError, match=rf"{key}=.*invalid") as err:
        check_overrides("eval", [override, "ckpt_path=x.ckpt"])
    assert all(choice in str(err.value) for choice in choices)


def test_scales_smaller_than_the_crop_are_refused():
    plan = ViewPlan(image_size=224, crop_pct=0.875, native_size=None, reference=224, crops=144, scales=(200, 256))
    with pytest.raises(UserError, match=r"eval.scales=\[200, 256\].*smaller than the 224 px crop"):
        plan.validate(32)
    inception = ViewPlan(image_size=299, crop_pct=0.875, native_size=None, reference=299, crops=144)
    assert inception.pixel_scales() == (342, 384, 427, 470)  # GoogLeNet's scales × 299/224 (spec B.9)
    small = ViewPlan(image_size=32, crop_pct=1.0, native_size=32, reference=224, crops=10)
    assert small.pixel_scales() == (37,)  # 256 × 32/224


def test_paper_values_only_for_the_papers_setting():
    from cnnbench.evaluation.paper import paper_reference
    from cnnbench.models import model_info

    r50 = paper_reference("resnet50", "imagefolder", 1000, 10, "crops", None, 1)
    assert r50["acc1"] == model_info("resnet50").paper_top1 and r50["setting"]["crops"] == 10
    assert paper_reference("resnet50", "imagefolder", 1000, 1, "crops", None, 1) is None
    assert paper_reference("resnet50", "imagefolder", 1000, 10, "crops", None, 2) is None  # an ensemble
    assert paper_reference("resnet50", "cifar10", 10, 10, "crops", None, 1) is None
    assert paper_reference("vgg16", "imagefolder", 1000, 1, "dense", [256], 1) is not None
    assert paper_reference("vgg16", "imagefolder", 1000, 1, "dense", [256, 384, 512], 1) is None
    g = paper_reference("googlenet", "imagefolder", 1000, 1, "crops", None, 1)
    assert "acc1" not in g and g["top5_err"] == pytest.approx(0.1007)
    c = paper_reference("resnet20", "cifar10", 10, 1, "crops", None, 1)
    assert c["top1_err"] == pytest.approx(1 - model_info("resnet20").paper_top1)
