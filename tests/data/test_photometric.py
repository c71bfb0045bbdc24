"""data.photometric=device: the workers draw the photometric parameters as the CPU pipeline does, and the batched
device ops give the CPU pipeline's pixels within a stated tolerance (run on the CPU here)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.aug_params import VECTOR_SIZE, AugParams
from cnnbench.data.fastpath import fast_pipeline, read_bytes
from cnnbench.data.photometric import apply_photometric
from cnnbench.errors import UserError
from tests.helpers import CONF


def _aug(name):
    return OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")


def _gens(seed):
    return random.Random(seed), np.random.Generator(np.random.PCG64(seed))


@pytest.mark.parametrize("name", ["googlenet", "inception", "resnet_imagenet"])
def test_device_ops_give_the_cpu_pipelines_pixels_and_leave_the_generators_alike(photo_imagefolder, name):
    files = sorted(str(p) for p in (photo_imagefolder / "train").rglob("*.jpg"))
    cpu = fast_pipeline(_aug(name), 64, None, 0.875, train=True)
    device = fast_pipeline(_aug(name), 64, None, 0.875, train=True, photometric="device")
    crops, vectors, expected = [], [], []
    for seed in range(24):
        buf = read_bytes(files[seed % len(files)])
        (py_a, gen_a), (py_b, gen_b) = _gens(seed), _gens(seed)
        expected.append(cpu.apply(buf, py_a, gen_a))
        crop, vec = device.apply(buf, py_b, gen_b)
        assert (py_a.random(), gen_a.random()) == (py_b.random(), gen_b.random())  # the same draws were made
        crops.append(torch.from_numpy(crop).permute(2, 0, 1))
        vectors.append(torch.from_numpy(vec))
    out = apply_photometric(torch.stack(crops), torch.stack(vectors)).permute(0, 2, 3, 1).numpy()
    diff = np.abs(out.astype(int) - np.stack(expected).astype(int))
    assert diff.max() <= 3 and (diff > 1).mean() < 0.02
    assert any(AugParams.from_vector(v).photometric for v in vectors)  # parameters drawn


def test_grey_batches_get_brightness_contrast_and_pca_only():
    images = torch.arange(2 * 8 * 8, dtype=torch.float32).remainder(256).to(torch.uint8).view(2, 1, 8, 8)
    identity = AugParams(window=(0, 0, 8, 8), out_size=(8, 8))
    changed = AugParams(window=(0, 0, 8, 8), out_size=(8, 8), contrast=0.5, saturation=0.0, hue=0.3)  # s, h ignored
    out = apply_photometric(images, torch.from_numpy(np.stack([changed.to_vector(), identity.to_vector()])))
    x = images[0].float()
    assert torch.equal(out[0], ((x - x.mean()) * 0.5 + x.mean()).round().to(torch.uint8))
    assert torch.equal(out[1], images[1])


def _data(root, **kw):
    data = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "imagefolder.yaml"))
    data.update(root=str(root), num_workers=0, persistent_workers=False, batch_size=4, val_split=0, **kw)
    return data


def test_the_datamodule_runs_the_photometric_ops_on_the_batch(photo_imagefolder):
    from cnnbench.data import ImageDataModule

    aug = OmegaConf.to_container(_aug("inception"))
    dm = ImageDataModule(_data(photo_imagefolder, photometric="device"), aug, "resnet50").load()
    images, params, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and params.shape == (4, VECTOR_SIZE)
    x, y = dm.on_before_batch_transfer((images, params, labels), 0)
    cpu = ImageDataModule(_data(photo_imagefolder), aug, "resnet50").load()
    expected, expected_y = next(iter(cpu.train_dataloader()))
    assert torch.equal(y, expected_y) and (x.int() - expected.int()).abs().max() <= 3
    test_x, _ = next(iter(dm.test_dataloader()))  # evaluation has no photometric ops: plain batches
    assert test_x.shape == (4, 3, 224, 224)


def test_photometric_device_needs_the_fast_path(photo_imagefolder):
    from cnnbench.data import ImageDataModule

    aug = OmegaConf.to_container(_aug("googlenet"))
    with pytest.raises(UserError, match=r"^data.photometric=device runs with .*data.decode=pil\); valid choices here: cpu$"):
        ImageDataModule(_data(photo_imagefolder, photometric="device", decode="pil"), aug, "resnet50").load()


def test_a_policy_after_the_photometric_ops_keeps_them_on_the_cpu():
    aug = OmegaConf.merge(_aug("efficientnet"), {"color_jitter": {"brightness": 0.4}})
    with pytest.raises(UserError, match=r"runs AutoAugmentV0 after them; valid choices here: data.photometric=cpu$"):
        fast_pipeline(aug, 64, None, 0.875, train=True, photometric="device")
    assert fast_pipeline(_aug("efficientnet"), 64, None, 0.875, train=True, photometric="device").device_split is None
