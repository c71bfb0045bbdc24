"""Crop geometry against the protocols' definitions (and torchvision's TenCrop), and aggregation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnbench.evaluation.aggregate import aggregate_views, average
from cnnbench.evaluation.crops import (
    extract,
    five_boxes,
    grid_boxes,
    protocol_views,
    resized_shape,
    six_boxes,
    square_boxes,
    whole_views,
)


def _coords(h: int, w: int) -> np.ndarray:
    """An image whose pixel (y, x) holds y mod 256 in channel 0, x mod 256 in channel 1."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy, xx, (yy * 7 + xx * 3) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("h,w,c", [(37, 50, 24), (64, 48, 31), (40, 40, 40), (29, 30, 28)])
def test_ten_crops_equal_torchvision_tencrop(h, w, c):
    from torchvision.transforms import TenCrop

    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = extract(image, protocol_views(10, (h, w), c, scales=[min(h, w)]))
    theirs = TenCrop(c)(torch.from_numpy(image).permute(2, 0, 1))
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b.permute(1, 2, 0).numpy())


def test_ten_crop_resizes_short_side_first():
    views = protocol_views(10, (300, 400), 224, scales=[256])
    assert {v.scale for v in views} == {256}
    assert resized_shape(300, 400, 256) == (256, 341)
    crops = extract(_coords(200, 250), protocol_views(10, (200, 250), 100, scales=[128]))
    assert all(c.shape == (100, 100, 3) for c in crops)


def test_grid_50_positions_cover_the_image_evenly():
    h, w, c = 256, 320, 224
    boxes = grid_boxes(h, w, c)
    assert len(boxes) == 25 and len(set(boxes)) == 25
    xs = sorted({b[0] for b in boxes})
    ys = sorted({b[1] for b in boxes})
    assert xs == [round(i * (w - c) / 4) for i in range(5)] and xs[0] == 0 and xs[-1] == w - c
    assert ys == [round(j * (h - c) / 4) for j in range(5)] and ys[-1] == h - c
    views = protocol_views(50, (h, w), c, scales=[256])
    assert len(views) == 50 and sum(v.flip for v in views) == 25
    image = _coords(h, w)
    crops = extract(image, views)
    for v, crop in zip(views, crops, strict=True):
        assert crop.shape == (c, c, 3)
        left, top, _, _ = v.box
        first_x = left + c - 1 if v.flip else left  # a mirrored crop starts at its box's right edge
        assert crop[0, 0, 0] == top % 256 and crop[0, 0, 1] == first_x % 256
    # VGG's 150 crops over three scales
    assert len(protocol_views(50, (480, 640), c, scales=[256, 384, 512])) == 150


@pytest.mark.parametrize("h,w", [(256, 340), (330, 256), (256, 256)])
def test_googlenet_144_crops_count_sizes_positions(h, w):
    c, scales = 224, [256, 288, 320, 352]
    views = protocol_views(144, (h, w), c, scales)
    assert len(views) == 4 * 3 * 6 * 2 == 144
    for s in scales:
        at_scale = [v for v in views if v.scale == s]
        assert len(at_scale) == 36
        rh, rw = resized_shape(h, w, s)
        assert min(rh, rw) == s
        squares = square_boxes(rh, rw)
        # the three s×s squares: left/center/right (landscape) or top/center/bottom (portrait)
        if rw >= rh:
            assert [q[0] for q in squares] == [0, round((rw - s) / 2), rw - s] and all(q[1] == 0 for q in squares)
        else:
            assert [q[1] for q in squares] == [0, round((rh - s) / 2), rh - s] and all(q[0] == 0 for q in squares)
        for q in squares:
            assert q[2] == q[3] == s
            six = six_boxes(q, c)
            corners = {(b[0] - q[0], b[1] - q[1]) for b, _ in six[:4]}
            assert corners == {(0, 0), (s - c, 0), (0, s - c), (s - c, s - c)}
            cb, _ = six[4]
            assert (cb[0] - q[0], cb[1] - q[1]) == (round((s - c) / 2), round((s - c) / 2))
            assert six[5] == (q, c)  # the whole square, resized to c
        unflipped = [v for v in at_scale if not v.flip]
        assert len(unflipped) == 18 and sum(v.out == c for v in unflipped) == 3
    crops = extract(_coords(h, w), views)
    assert all(cr.shape == (c, c, 3) for cr in crops)
    # at the scale equal to the short side nothing is resized: a corner crop reads the original pixels
    if min(h, w) == 256:
        v = next(v for v in views if v.scale == 256 and not v.flip and v.out is None)
        crop = extract(_coords(h, w), [v])[0]
        assert crop[0, 0, 0] == v.box[1] % 256 and crop[0, 0, 1] == v.box[0] % 256


def test_twelve_crops_both_readings():
    views = protocol_views(12, (256, 300), 224, scales=[256])
    assert len(views) == 12 and sum(v.flip for v in views) == 6
    square = square_boxes(256, 300)[1]
    assert {v.box for v in views if not v.flip} == {b for b, _ in six_boxes(square, 224)}
    alt = protocol_views(12, (256, 300), 224, scales=[256, 288, 320, 352], twelve="four_scales")
    assert len(alt) == 12 and all(v.out == 224 and v.box[2] == v.scale for v in alt)


def test_crop_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        five_boxes(20, 30, 24)


def test_whole_views_keep_aspect_ratio_and_mirror():
    views = whole_views([16, 24])
    out = extract(_coords(20, 30), views)
    assert [o.shape[:2] for o in out] == [(16, 24), (16, 24), (24, 36), (24, 36)]
    assert np.array_equal(out[1], out[0][:, ::-1])


def test_aggregation_on_constructed_logits():
    # two views: one confident for class 0, one mildly for class 1
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    soft = aggregate_views(logits, "softmax_mean")[0]
    mean_logit = aggregate_views(logits, "logit_mean")[0]
    expected = (torch.softmax(logits[0, 0], 0) + torch.softmax(logits[0, 1], 0)) / 2
    assert torch.allclose(soft, expected)
    assert torch.allclose(mean_logit, torch.softmax(torch.tensor([5.0, 0.5, 0.0]), 0))
    assert soft.sum().item() == pytest.approx(1.0) and mean_logit.sum().item() == pytest.approx(1.0)
    assert not torch.allclose(soft, mean_logit)
    # where the two rules disagree on the winner
    logits = torch.tensor([[[0.0, 20.0], [3.0, 0.0], [3.0, 0.0]]])
    assert aggregate_views(logits, "logit_mean")[0].argmax() == 1  # the one extreme logit wins the mean
    sm = aggregate_views(logits, "softmax_mean")[0]
    assert sm.argmax() == 0  # softmax saturates: two views for class 0 outvote it
    assert sm[0].item() == pytest.approx(float(torch.softmax(logits[0], -1)[:, 0].mean()))
    assert torch.allclose(average([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="valid choices: softmax_mean, logit_mean"):
        aggregate_views(logits, "max")
