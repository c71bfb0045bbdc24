"""Datasets read from local files only; splits, limits, image size, channels and seeded augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data import DatasetNotFoundError, ImageDataModule, ImageSizeError
from tests.helpers import compose_cfg


def make_dm(overrides, model="resnet20", seed=0):
    cfg = compose_cfg("train", [*overrides, f"model={model}"])
    return ImageDataModule(OmegaConf.to_container(cfg.data), OmegaConf.to_container(cfg.augmentation), model,
                           seed=seed)


def first_batch(dm, train=True):
    dm.load()
    loader = dm.loader(dm.train_split if train else dm.test_split, train=train)
    return next(iter(loader))


def test_fashion_mnist_reads_debian_files(fashion_mnist):
    dm = make_dm(["data=fashion_mnist", "data.limit_test=100"]).load()
    assert len(dm.train_split) == 55000 and len(dm.val_split) == 5000 and len(dm.test_split) == 100
    assert dm.classes[9] == "Ankle boot" and dm.image_size == 28
    x, y = first_batch(dm)
    assert x.dtype == torch.uint8 and x.shape == (128, 1, 28, 28)
    # all ten classes, labels in range
    assert set(np.unique(dm.train_split.labels)) == set(range(10))


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        make_dm([f"data.root={tmp_path}"]).load()


def test_digits_and_val_split_fraction_count_zero():
    dm = make_dm(["data=digits", "data.val_split=0.1"]).load()
    n_all = len(dm.train_split) + len(dm.val_split)
    assert len(dm.val_split) == round(0.1 * n_all)
    assert len(make_dm(["data=digits", "data.val_split=100"]).load().val_split) == 100
    assert make_dm(["data=digits", "data.val_split=0"]).load().val_split is None


def test_val_split_is_seeded_and_disjoint():
    a = make_dm(["data=synthetic"], seed=3).load()
    b = make_dm(["data=synthetic"], seed=3).load()
    assert np.array_equal(a.val_split.images, b.val_split.images)
    train_rows = {im.tobytes() for im in a.train_split.images}
    assert not any(im.tobytes() in train_rows for im in a.val_split.images)


def test_limits_subsample():
    dm = make_dm(["data=synthetic", "data.limit_train=50", "data.limit_val=10", "data.limit_test=7"]).load()
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (50, 10, 7)


@pytest.mark.parametrize("key", ["cifar10", "cifar10_tar", "cifar100", "cifar100_tar"])
def test_cifar_archives(fake_cifar, key):
    name = key.replace("_tar", "")
    dm = make_dm([f"data={name}", f"data.root={fake_cifar[key]}", "data.val_split=0"]).load()
    assert dm.num_classes == (10 if name == "cifar10" else 100)
    assert dm.train_split.images.shape[1:] == (32, 32, 3) and len(dm.test_split) == 20
    x, _ = first_batch(dm)
    assert x.shape[1:] == (3, 32, 32)


def test_cifar_missing_explains(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        make_dm(["data=cifar10", f"data.root={tmp_path}"]).load()


def test_imagefolder_uses_model_native_size_and_stats(jpeg_imagefolder):
    dm = make_dm(["data=imagefolder", f"data.root={jpeg_imagefolder}", "data.val_split=0", "data.batch_size=4"]).load()
    assert dm.num_classes == 4 and dm.image_size == 32  # resnet20's native size
    assert dm.normalization["mean"] == list(dm.info.mean)
    x, y = first_batch(dm, train=False)
    assert x.shape == (4, 3, 32, 32)


def test_image_size_below_model_minimum_is_an_error():
    with pytest.raises(ImageSizeError, match="below the minimum input size 8"):
        make_dm(["data=synthetic", "data.image_size=4"]).load()


def test_image_size_default_raised_to_model_minimum():
    dm = make_dm(["data=digits"], model="resnet20").load()
    assert dm.image_size == 8
    dm = make_dm(["data=digits", "data.image_size=16"], model="resnet20").load()
    x, _ = first_batch(dm)
    assert x.shape[-2:] == (16, 16)


def test_augmentation_depends_only_on_seed_not_workers():
    def batch(workers, seed=0):
        dm = make_dm(["data=synthetic", f"data.num_workers={workers}", "data.persistent_workers=false",
                      "augmentation=pad_crop_flip"], seed=seed).load()
        return first_batch(dm)[0]

    a, b = batch(0), batch(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, batch(0, seed=1))


def test_epochs_see_different_order_and_augmentation():
    from cnnbench.data.datamodule import EpochSampler

    s = EpochSampler(10, seed=0, shuffle=True)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(x % 10 for x in e0) == list(range(10)) and all(10 <= x < 20 for x in e1)
    assert [x % 10 for x in e0] != [x % 10 for x in e1]


def test_ranks_get_disjoint_equal_shards():
    from cnnbench.data.datamodule import EpochSampler

    shards = [list(EpochSampler(11, seed=0, shuffle=True, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])


def test_gray_images_become_rgb_for_the_model():
    from cnnbench.training.module import Normalize

    norm = Normalize({"mean": [0.5], "std": [0.25]}, in_chans=3)
    out = norm(torch.full((2, 1, 4, 4), 255, dtype=torch.uint8))
    assert out.shape == (2, 3, 4, 4) and torch.allclose(out, torch.full_like(out, 2.0))


def test_pixel_mean_mode_subtracts_mean_image():
    dm = make_dm(["data=synthetic", "data.mean_mode=pixel"]).load()
    mean_image = np.array(dm.normalization["mean_image"])
    assert mean_image.shape == (3, 32, 32)
    expected = dm.train_split.images.astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255
    assert np.allclose(mean_image, expected, atol=1e-6)


def test_pixel_mean_of_an_imagefolder_is_the_mean_eval_view_and_is_cached(jpeg_imagefolder, tmp_path):
    """He et al. §3.4 (experiment=resnet_imagenet): the mean image of file-backed data, cached beside it."""
    import shutil

    from cnnbench.data.datamodule import load_image_file
    from cnnbench.data.transforms import eval_transform

    root = tmp_path / "data"
    shutil.copytree(jpeg_imagefolder, root)
    overrides = ["data=imagefolder", f"data.root={root}", "data.val_split=0", "data.mean_mode=pixel",
                 "data.image_size=32"]
    dm = make_dm(overrides).load()
    mean_image = np.array(dm.normalization["mean_image"])
    assert mean_image.shape == (3, 32, 32) and dm.normalization["mode"] == "pixel"
    view = eval_transform(32, dm.native_size, dm.crop_pct)
    views = [view(image=load_image_file(path))["image"] / 255.0 for path, _ in dm.train_split.files]
    assert np.allclose(mean_image, np.mean(views, axis=0).transpose(2, 0, 1), atol=1e-6)
    (cache,) = root.glob(".cnnbench_mean_*.npz")
    np.savez(cache, mean_image=np.full((32, 32, 3), 0.25), std=0.5)  # a second run reads the cache, not the files
    cached = make_dm(overrides).load()
    assert np.allclose(np.array(cached.normalization["mean_image"]), 0.25) and cached.normalization["std"] == [0.5] * 3


def test_resumed_sampler_skips_exactly_the_consumed_part_of_its_epoch():
    from cnnbench.data.datamodule import EpochSampler

    full = EpochSampler(50, seed=3, shuffle=True, rank=1, world=2)
    full.set_epoch(2)
    order = list(full)
    resumed = EpochSampler(50, seed=3, shuffle=True, rank=1, world=2)
    resumed.resume = (2, 8)
    resumed.set_epoch(2)
    assert list(resumed) == order[8:] and len(resumed) == len(order)  # Lightning still counts the whole epoch
    assert list(resumed) == order  # the skip applies to the resumed epoch's first pass only
    other = EpochSampler(50, seed=3, shuffle=True)
    other.resume = (0, 8)
    other.set_epoch(1)  # the checkpoint was written at the end of epoch 0: nothing to skip in epoch 1
    assert len(list(other)) == 50


def test_resumed_sampler_read_before_set_epoch_takes_the_checkpoints_epoch():
    # with loader workers, Lightning's first iterator of a resumed run reads the sampler before set_epoch
    from cnnbench.data.datamodule import EpochSampler

    def order(epoch):
        full = EpochSampler(50, seed=3, shuffle=True)
        full.set_epoch(epoch)
        return list(full)

    early = EpochSampler(50, seed=3, shuffle=True)
    early.resume = (2, 8)
    assert list(early) == order(2)[8:]
    early.set_epoch(2)
    assert list(early) == order(2)
    complete = EpochSampler(50, seed=3, shuffle=True)
    complete.resume = (0, 56)  # the checkpoint's epoch was finished (the last batch partial): the next one, whole
    assert list(complete) == order(1)


def test_datamodule_state_turns_into_a_sampler_skip_of_whole_batches():
    cfg = compose_cfg("train", ["data=synthetic", "data.batch_size=16", "data.num_workers=0"])
    dm = ImageDataModule(OmegaConf.to_container(cfg.data), OmegaConf.to_container(cfg.augmentation),
                         cfg.model.name, seed=0).load()
    assert dm.state_dict() == {}  # outside a trainer there is no position to save
    dm.load_state_dict({"epoch": 0, "batches": 3})
    loader = dm.train_dataloader()
    assert loader.sampler.resume == (0, 48)
    assert len(list(loader)) == len(loader) - 3


def test_scale_jittered_fixed_size_images_are_tested_at_the_smallest_training_scale():
    """Krizhevsky et al. §4.1, He et al. §3.4: the test view of a scale-jittered recipe is the centre of the image
    at the smallest training scale (short side 256/224 of the crop: 36 px for 32² crops), not the whole image,
    which no training crop shows at that size; the mean image is that view's. Pad-crop recipes keep the whole image."""
    import cv2

    overrides = ["data=digits", "data.image_size=32", "data.val_split=0", "data.mean_mode=pixel"]
    dm = make_dm([*overrides, "augmentation=resnet_imagenet"], model="resnet18").load()
    assert dm.crop_pct == pytest.approx(224 / 256)
    x, _ = first_batch(dm, train=False)
    image = dm.test_split.images[0]
    resized = cv2.resize(image, (36, 36), interpolation=cv2.INTER_LINEAR).reshape(36, 36, -1)
    assert torch.equal(x[0], torch.from_numpy(resized[2:34, 2:34].transpose(2, 0, 1).copy()))
    views = [cv2.resize(im, (36, 36), interpolation=cv2.INTER_LINEAR)[2:34, 2:34] / 255.0
             for im in dm.train_split.images]
    assert np.allclose(np.array(dm.normalization["mean_image"])[0], np.mean(views, axis=0), atol=1e-5)
    whole = make_dm([*overrides, "augmentation=cifar"], model="resnet18").load()
    assert whole.crop_pct == 1.0 and first_batch(whole, train=False)[0].shape[-1] == 32
