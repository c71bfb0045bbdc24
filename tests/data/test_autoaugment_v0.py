"""EfficientNet's AutoAugment policy "v0" (Tan & Le 2019 §5.2, "AutoAugment")."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.autoaugment_v0 import POLICY_V0, AutoAugmentV0, apply_op, apply_v0, level_to_arg
from cnnbench.data.transforms import train_transform
from tests.helpers import CONF

IMG = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)


def test_the_table_has_25_two_step_sub_policies_with_valid_entries():
    assert len(POLICY_V0) == 25 and all(len(sub) == 2 for sub in POLICY_V0)
    for sub in POLICY_V0:
        for op, prob, level in sub:
            assert 0.0 <= prob <= 1.0 and 0 <= level <= 10
            apply_op(torch.from_numpy(IMG).permute(2, 0, 1), op, level_to_arg(op, level, 32))  # every op runs
    ops = Counter(op for sub in POLICY_V0 for op, _, _ in sub)
    # v0 differs from the AutoAugment paper's ImageNet policy: SolarizeAdd and TranslateY, no Sharpness/Contrast
    assert {"SolarizeAdd", "TranslateY"} <= set(ops) and not {"Sharpness", "Contrast", "Brightness"} & set(ops)
    assert ops["Equalize"] == 12 and ops["Rotate"] == 7


def test_level_to_argument_mapping_matches_the_reference():
    assert level_to_arg("Rotate", 8, 224) == pytest.approx(24.0)
    assert level_to_arg("ShearY", 4, 224) == pytest.approx(0.12)
    assert level_to_arg("Color", 9, 224) == pytest.approx(1.72)
    assert level_to_arg("Posterize", 6, 224) == 2 and level_to_arg("Posterize", 2, 224) == 0
    assert level_to_arg("Solarize", 3, 224) == 76 and level_to_arg("SolarizeAdd", 7, 224) == 77
    assert level_to_arg("TranslateY", 9, 224) == pytest.approx(225.0)   # absolute px at ImageNet size
    assert level_to_arg("TranslateY", 9, 600) == pytest.approx(225.0)
    assert level_to_arg("TranslateY", 9, 28) == pytest.approx(225.0 * 28 / 224)  # scaled below 224 px


def test_pixel_ops_on_known_values():
    x = torch.tensor([[[0, 100, 127, 128, 200, 255]]], dtype=torch.uint8)
    assert apply_op(x, "Solarize", 128).tolist() == [[[0, 100, 127, 127, 55, 0]]]
    assert apply_op(x, "SolarizeAdd", 77).tolist() == [[[77, 177, 204, 128, 200, 255]]]
    assert apply_op(x, "Posterize", 2).tolist() == [[[0, 64, 64, 128, 192, 192]]]
    assert apply_op(x, "Posterize", 0).max() == 0
    assert apply_op(x, "Invert", 0).tolist() == [[[255, 155, 128, 127, 55, 0]]]


def test_geometric_ops_fill_with_grey_and_keep_the_shape():
    x = torch.zeros(3, 20, 20, dtype=torch.uint8)
    moved = apply_op(x, "TranslateY", 10.0)
    assert moved.shape == x.shape and (moved[:, :10] == 128).all() and (moved[:, 10:] == 0).all()
    turned = apply_op(x, "Rotate", 30.0)
    assert (turned == 128).any() and turned[:, 10, 10].tolist() == [0, 0, 0]


def test_policy_is_seeded_and_draws_every_sub_policy():
    assert np.array_equal(apply_v0(IMG, random.Random(3)), apply_v0(IMG, random.Random(3)))
    outs = {apply_v0(IMG, random.Random(s)).tobytes() for s in range(40)}
    assert len(outs) > 15


def test_efficientnet_augmentation_uses_v0_by_default():
    aug = OmegaConf.load(CONF / "augmentation" / "efficientnet.yaml")
    assert aug.auto_augment == "v0"
    steps = [type(t).__name__ for t in train_transform(aug, 32, None, 0.875).transforms]
    assert steps[-1] == AutoAugmentV0.__name__
    torchvision_policy = train_transform(OmegaConf.merge(aug, {"auto_augment": "imagenet"}), 32, None, 0.875)
    assert type(torchvision_policy.transforms[-1]).__name__ == "TorchvisionPolicy"
