"""Evaluation says what it will cost before it runs, says when the papers' protocols do not fit the checkpoint,
and `eval.views=train` draws test-time views from the training geometry (evaluation/cost.py, engine.py)."""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnbench.commands.evaluate import evaluate
from cnnbench.data.transforms import training_geometry
from cnnbench.errors import UserError
from cnnbench.evaluation.cost import cost_line
from cnnbench.evaluation.crops import shift_offsets, shifted_crops
from cnnbench.evaluation.plan import make_plan, protocol_note
from tests.evaluation.test_engine import DIGITS
from tests.helpers import compose_cfg

PAD_CROP = training_geometry({"name": "pad_crop_flip", "pad": 4, "hflip": True}, 28)
SCALE = training_geometry({"name": "random_resized_crop", "scale": [0.08, 1.0], "hflip": True}, 224)


def _record(geometry) -> dict:
    return {"model": {"name": "resnet20"}, "image_size": 28, "crop_pct": 1.0, "augmentation": geometry}


def test_training_geometry_names_the_kind_and_the_pad_at_this_size():
    assert (PAD_CROP["kind"], PAD_CROP["pad"], PAD_CROP["hflip"]) == ("pad_crop", 4, True)
    cifar = training_geometry({"name": "cifar", "pad": 4, "reference_size": 32, "hflip": True}, 64)
    assert cifar["pad"] == 8  # He et al.'s 4 px at 32, kept in proportion
    assert SCALE["kind"] == "scale" and SCALE["pad"] == 0
    assert training_geometry({"name": "none"}, 28)["kind"] == "none"


def test_shifted_crops_are_the_padded_image_cut_at_the_nine_shifts_and_mirrored():
    image = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6, 1) + 1
    crops = shifted_crops(image, pad=2, flip=True)
    assert len(crops) == 18 and all(c.shape == image.shape for c in crops)
    assert shift_offsets(2)[4] == (2, 2)
    assert np.array_equal(crops[4], image)  # the middle shift is the image itself
    assert np.array_equal(crops[0][2:, 2:], image[:-2, :-2]) and not crops[0][:2].any()  # zero border, top-left
    assert np.array_equal(crops[8][:-2, :-2], image[2:, 2:]) and not crops[8][-2:].any()
    assert np.array_equal(crops[9 + 4], image[:, ::-1])
    assert len(shifted_crops(image, pad=2, flip=False)) == 9


def test_views_train_follows_the_checkpoint_geometry():
    ev = OmegaConf.create({"mode": "crops", "views": "train"})
    pad_plan = make_plan(ev, 144, _record(PAD_CROP), 28, 28)
    assert pad_plan.parts() == ["shifted"] and pad_plan.views_per_image() == 18
    assert len(pad_plan.build(np.zeros((28, 28, 1), np.uint8))[0][1]) == 18
    record = _record(SCALE) | {"model": {"name": "resnet18"}, "image_size": 224}
    assert make_plan(ev, 10, record, 224, None).views_per_image() == 10  # scale-trained: the protocol's views
    assert make_plan(ev, 10, _record(training_geometry({"name": "none"}, 28)), 28, 28).views_per_image() == 1
    with pytest.raises(UserError, match="eval.views=protocol"):
        make_plan(ev, 1, _record(None), 28, 28)


def test_protocol_note_only_for_multi_view_protocols_on_checkpoints_without_scale_augmentation():
    crops = OmegaConf.create({"mode": "crops"})
    note = protocol_note(crops, 144, _record(PAD_CROP))
    assert note and "pad_crop_flip (pad 4 px)" in note and "eval.views=train" in note
    assert protocol_note(crops, 1, _record(PAD_CROP)) is None
    assert protocol_note(OmegaConf.create({"mode": "multiscale"}), 1, _record(PAD_CROP))
    assert protocol_note(crops, 144, _record(SCALE)) is None
    assert protocol_note(crops, 144, _record(None)) is None  # an old checkpoint: nothing known, nothing said


def test_cost_line_counts_forward_passes_and_names_cheaper_runs():
    line = cost_line(views_per_image=144, n_images=10000, per_image_s=0.25, crops=144, views="protocol",
                     split="test", model="resnet20")
    assert "144 views/image × 10000 images = 1,440,000 forward passes" in line
    assert "about 41m40s" in line  # 0.25 s × 10,000
    assert "data.limit_test=1000 (≈ 4m10s)" in line and "crops=10 (≈ 2m54s)" in line and "crops=1 (≈ 17s)" in line
    short = cost_line(views_per_image=1, n_images=500, per_image_s=0.001, crops=1, views="protocol", split="val",
                      model="resnet20")
    assert "1 view/image" in short and "cheaper" not in short


def test_eval_prints_its_cost_before_scoring_and_records_the_views(tmp_path, tiny_checkpoint, capsys):
    out = evaluate(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "crops=10", *DIGITS]), run_dir=tmp_path)
    printed = capsys.readouterr().out.splitlines()
    cost = next(i for i, line in enumerate(printed) if "forward passes" in line)
    summary = next(i for i, line in enumerate(printed) if "acc1" in line)
    assert cost < summary and f"10 views/image × {out['n_images']} images" in printed[cost]
    assert any("without scale augmentation" in line for line in printed[:cost])  # trained with augmentation=none
    assert out["views"] == "protocol"
    train = evaluate(compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "eval.views=train", *DIGITS]),
                     run_dir=tmp_path / "train")
    assert train["views"] == "train" and train["views_per_image"] == 1  # no augmentation: the single view
