"""data.decode=gpu: the CPU-side logic (bytes + seeded parameters, the batched decode and GPU ops run on the CPU
here) and the one-line error on a machine without a GPU."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.aug_params import VECTOR_SIZE, AugParams
from cnnbench.data.gpu_decode import GpuAugment, GpuDecodeImages, collate, unsupported
from cnnbench.data.sources import load_imagefolder
from cnnbench.errors import UserError
from tests.helpers import CONF


def _aug(name):
    return OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")


@pytest.mark.parametrize("name", ["inception", "resnet_imagenet", "googlenet"])
def test_batches_decode_and_augment_with_per_sample_seeds(photo_imagefolder, name):
    split = load_imagefolder(str(photo_imagefolder)).train
    data = GpuDecodeImages(split, _aug(name), 64, 0.875, seed=3, train=True)
    batch = collate([data[i] for i in range(4)])
    assert isinstance(batch[0], list) and batch[0][0].dtype == torch.uint8 and batch[1].shape == (4, VECTOR_SIZE)
    again = collate([data[i] for i in range(4)])
    assert torch.equal(batch[1], again[1])  # parameters depend only on (seed, epoch, index)
    x, y = GpuAugment(_aug(name), 64, train=True)(batch, "cpu")
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.uint8 and y.tolist() == [lab for _, lab in split.files[:4]]
    # the crop window is the CPU fast path's (the same draw on the same generators)
    import random

    import numpy as np

    from cnnbench.data.aug_params import draw
    from cnnbench.data.image_io import header_size, read_bytes
    from cnnbench.data.loading import sample_seed as _sample_seed

    s = _sample_seed(3, 0, 0)
    shape = header_size(read_bytes(split.files[0][0]))
    drawn = draw(_aug(name), shape, 64, random.Random(s), np.random.Generator(np.random.PCG64(s)))
    assert AugParams.from_vector(batch[1][0]).window == pytest.approx(drawn.window)


def test_eval_views_have_no_random_parameters(photo_imagefolder):
    split = load_imagefolder(str(photo_imagefolder)).test
    data = GpuDecodeImages(split, _aug("inception"), 48, 0.875, seed=None, train=False)
    batch = collate([data[i] for i in range(2)])
    for row in batch[1]:
        p = AugParams.from_vector(row)
        assert not p.flip and not p.photometric and p.out_size == (48, 48)
    x, _ = GpuAugment(_aug("inception"), 48, train=False)(batch, "cpu")
    assert x.shape == (2, 3, 48, 48)


def test_unsupported_pipelines_name_the_choices():
    assert "valid choices: imagenet, randaugment, none" in unsupported(_aug("efficientnet"))
    assert unsupported(OmegaConf.merge(_aug("efficientnet"), {"auto_augment": "imagenet"})) is None
    assert unsupported(_aug("vgg")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_decode_gpu_without_a_gpu_is_a_one_line_error(photo_imagefolder):
    from cnnbench.data import ImageDataModule

    data = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "imagefolder.yaml"))
    data.update(root=str(photo_imagefolder), decode="gpu", num_workers=0)
    with pytest.raises(UserError, match=r"^data.decode=gpu needs a CUDA GPU .*valid choices here: opencv, pil$"):
        ImageDataModule(data, OmegaConf.to_container(_aug("inception")), "resnet50").load()
