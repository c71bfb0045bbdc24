"""The pieces of cnnbench's image DataLoaders: the dataset of one split with its augmentation (`AugmentedImages`), the
epoch sampler (`EpochSampler`), the per-sample augmentation seed, the worker initialiser and the batch collate
(shared by the data module, the eval readers and the loader benchmark). The determinism and resume rules they
implement are the data module's (cnnbench.data.datamodule)."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

# private, no public equivalent: torch exports default_collate only, with no way to extend its type map
from torch.utils.data._utils.collate import collate, collate_tensor_fn, default_collate_fn_map

from cnnbench.data.image_io import load_image_file
from cnnbench.data.sources import BadImageError, Split


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch: a function of (seed, epoch, index) only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def _stack_tensors(batch, *, collate_fn_map=None):
    """torch's tensor collate, except for image samples that are CHW views of contiguous HWC arrays (the fast
    path's crops): those are stacked as HWC, a plain copy instead of a transposing one (about 3× less time for
    a 224² batch), and the batch is the NCHW view of that (channels-last strides). Normalize (training.module)
    lays it out in the model's memory format in its float conversion."""
    if batch[0].ndim == 3 and all(not x.is_contiguous() and x.permute(1, 2, 0).is_contiguous() for x in batch):
        return collate_tensor_fn([x.permute(1, 2, 0) for x in batch]).permute(0, 3, 1, 2)
    return collate_tensor_fn(batch, collate_fn_map=collate_fn_map)


# default_collate's map with `_stack_tensors` for tensors (the collate_fn_map extension that default_collate's
# documentation describes)
_COLLATE_FN_MAP = {**default_collate_fn_map, torch.Tensor: _stack_tensors}


def collate_images(batch):
    """default_collate, with the fast path's crops stacked as NHWC (`_stack_tensors`)."""
    return collate(batch, collate_fn_map=_COLLATE_FN_MAP)


def init_loader_worker(worker_id: int) -> None:
    """One thread per loader worker for both torch and OpenCV (docs/performance.md, data loading); the stop
    signals are the training process's (docs/reliability.md): a signal sent to the whole job, as SLURM and
    `kill -- -<pgid>` send it, must not kill the workers under the batch that the training process finishes."""
    import signal

    import cv2

    for name in ("SIGTERM", "SIGUSR1", "SIGUSR2"):  # torch's workers already ignore SIGINT the same way
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    cv2.setNumThreads(0)
    torch.set_num_threads(1)



class AugmentedImages(Dataset):
    """A split with an albumentations pipeline; item `k` is image `k mod N` in epoch `k div N`."""

    def __init__(self, split: Split, transform, seed: int | None, fast=None) -> None:
        self.split, self.transform, self.seed = split, transform, seed
        self.fast = fast if split.images is None else None  # cnnbench.data.fastpath.FastPipeline
        self.n = len(split)
        self.substitutes: dict[int, int] = {}  # skip mode: a bad file found at first touch → a good one
        self.skip_bad = False

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        index, epoch = k % self.n, k // self.n
        if self.fast is not None:
            return self._fast_item(index, epoch)
        if self.split.images is not None:
            image, label = self.split.images[index], int(self.split.labels[index])
        else:
            image, label = self._read_file(index)
        if self.seed is not None:
            s = sample_seed(self.seed, epoch, index)
            self.transform.set_random_state(np.random.Generator(np.random.PCG64(s)), random.Random(s))
        out = self.transform(image=image)["image"]
        if out.ndim == 2:
            out = out[..., None]
        # C-contiguous and writable (a read-only stored image passed through unchanged would warn in torch)
        return torch.from_numpy(np.require(out.transpose(2, 0, 1), requirements=["C", "W"])), label

    def _generators(self, epoch: int, index: int) -> tuple[random.Random, np.random.Generator]:
        s = sample_seed(self.seed, epoch, index) if self.seed is not None else 0
        return random.Random(s), np.random.Generator(np.random.PCG64(s))

    def _fast_item(self, index: int, epoch: int) -> tuple[torch.Tensor, int]:
        for attempt in range(self.n):
            j = (index + attempt) % self.n
            path, label = self.split.files[j]
            py, gen = self._generators(epoch, index)
            try:
                out = self.fast(path, py, gen)
            except BadImageError:
                if not self.skip_bad:
                    raise
                import logging

                logging.getLogger("cnnbench").warning("skipping unreadable image %s (data.on_bad_image=skip)", path)
                continue
            if isinstance(out, tuple):  # data.photometric=device: (crop, the sample's photometric parameters)
                crop, params = out
                return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1), torch.from_numpy(params), int(label)
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1), int(label)  # HWC → CHW view
        raise BadImageError(f"no readable image in a split of {self.n} files")

    def _read_file(self, index: int) -> tuple[np.ndarray, int]:
        # the scan at `load()` catches bad files up front; this guards files that change afterwards
        for attempt in range(self.n):
            j = (index + attempt) % self.n
            path, label = self.split.files[j]
            try:
                return load_image_file(path), int(label)
            except BadImageError:
                if not self.skip_bad:
                    raise
                import logging

                logging.getLogger("cnnbench").warning("skipping unreadable image %s (data.on_bad_image=skip)", path)
        raise BadImageError(f"no readable image in a split of {self.n} files")


class EpochSampler(Sampler[int]):
    """Shuffled (or ordered) indices for one rank, as `epoch·N + i`; `set_epoch` is called by Lightning.

    With several ranks each takes an equal share (the tail that does not divide is dropped for
    training so that every rank runs the same number of steps; evaluation keeps every image).
    """

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1, even: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world, self.even = n, seed, shuffle, rank, world, even
        self.epoch = 0
        self.resume: tuple[int, int] | None = None  # (epoch, samples of this rank's order to skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.world > 1:
            if self.even:
                order = order[: (self.n // self.world) * self.world]
            order = order[self.rank :: self.world]
        return order

    def __iter__(self):
        skip = 0
        if self.resume is not None:
            epoch, skip = self.resume
            self.resume = None
            # A resumed run's first iterator continues the checkpoint's epoch, or starts the next one when that
            # epoch was complete. Lightning creates this iterator before it calls set_epoch, and with loader
            # workers the iterator reads the sampler at once, so the epoch comes from the checkpoint here.
            if epoch < self.epoch:  # set_epoch came first and moved past the checkpoint's epoch
                skip = 0
            elif skip >= len(self):
                self.epoch, skip = epoch + 1, 0
            else:
                self.epoch = epoch
        offset = self.epoch * self.n if self.shuffle else 0
        order = self._indices()[skip:] + offset
        return iter(order.tolist())

    def __len__(self) -> int:
        return len(self._indices())


__all__ = ["AugmentedImages", "EpochSampler", "collate_images", "init_loader_worker", "sample_seed"]
