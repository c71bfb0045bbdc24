"""The LightningDataModule: one dataset config (`conf/data/`) + one augmentation config in, loaders out.

Determinism: the training sampler yields `epoch·N + index`, and every sample's augmentation is seeded
from (seed, epoch, index). The images a run sees therefore depend only on the seed — not on the number
of workers, the process count, or where a run was resumed.

Mid-epoch resume (docs/reliability.md): the data module's `state_dict` (which Lightning stores in every
checkpoint and hands back through `load_state_dict` on resume) records the epoch and how many
training batches of it were consumed; the resumed sampler skips exactly those, so the rest of the
epoch sees the same images in the same order with the same augmentation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cnnbench.data.image_io import load_image_file
from cnnbench.data.loading import AugmentedImages, EpochSampler, collate_images, init_loader_worker
from cnnbench.data.sources import BadImageError, Source, Split, load_source, scan_images
from cnnbench.data.transforms import eval_crop_pct, eval_transform, train_transform
from cnnbench.errors import ConfigError, UserError
from cnnbench.models import model_info
from cnnbench.models.registry import native_input_size


class ImageSizeError(UserError, ValueError):
    pass


PIXEL_MEAN_FILES = 10_000  # files averaged for a file-backed mean image (data.mean_mode=pixel)


def _count(value: float | int | None, n: int) -> int:
    if value is None:
        return 0
    if isinstance(value, float) and 0 <= value < 1:
        return int(round(value * n))
    return int(value)  # a negative value is refused by cnnbench.config_schema


class ImageDataModule(L.LightningDataModule):
    """Train / val / test loaders for one `conf/data/*.yaml`, resolved against the model's `model_info`."""

    def __init__(self, data: dict[str, Any], augmentation: dict[str, Any], model_name: str, seed: int = 0,
                 model_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        from omegaconf import OmegaConf

        self.cfg = OmegaConf.create(data)
        self.aug = OmegaConf.create(augmentation)
        self.batch_device: torch.device | None = None  # where on_before_batch_transfer puts batches without a trainer
        self.model_name = model_name
        self.seed = seed
        self.info = model_info(model_name)
        self.model_kwargs = dict(model_kwargs or {})
        self._source: Source | None = None
        self.train_split = self.val_split = self.test_split = None
        self.skipped_images: list[dict[str, str]] = []
        self._resume: dict[str, int] | None = None

    # -- resolved properties (valid after `load()`) ------------------------------------------------
    def load(self) -> ImageDataModule:
        """Read the dataset, split off validation, apply limits, settle image size and normalisation."""
        if self._source is not None:
            return self
        cfg = self.cfg
        source = load_source(cfg, self.seed)
        self._source = source
        self._check_images(source)
        train = source.train
        n_val = _count(cfg.val_split, len(train))
        if n_val >= len(train):
            raise ConfigError(f"data.val_split={cfg.val_split} leaves no training images (train has {len(train)})")
        order = np.random.default_rng([self.seed, 1]).permutation(len(train))
        self.val_split = train.subset(np.sort(order[:n_val])) if n_val else None
        self.train_split = train.subset(np.sort(order[n_val:]))
        self.test_split = source.test
        self.train_split = self._limit(self.train_split, cfg.limit_train, 2)
        if self.val_split is not None:
            self.val_split = self._limit(self.val_split, cfg.limit_val, 3)
        self.test_split = self._limit(self.test_split, cfg.limit_test, 4)
        self.classes = list(source.classes)
        self.num_classes = len(self.classes)
        self.native_size = source.native_size
        self.image_size = self._resolve_image_size()
        self.crop_pct = eval_crop_pct(self.aug, source.native_size, self.info.crop_pct)
        self.normalization = self._normalization()
        if self.photometric == "device" and (self.native_size is not None or self.decode != "opencv"):
            raise UserError(f"data.photometric=device runs with file-backed data and data.decode=opencv (here "
                            f"{'fixed-size data' if self.native_size is not None else 'data.decode=' + self.decode}); "
                            "valid choices here: cpu")
        if self.decode == "gpu" and self.native_size is None:
            from cnnbench.data.gpu_decode import require_gpu, unsupported

            reason = unsupported(self.aug)
            if reason:
                raise UserError(reason)
            require_gpu()
        return self

    def _check_images(self, source: Source) -> None:
        """Scan file-backed splits before training (data.on_bad_image): `error` names the first bad
        file, `skip` drops every bad file and records it in `skipped_images`."""
        mode = self.cfg.get("on_bad_image", "error")
        for name in ("train", "test"):
            split = getattr(source, name)
            if split.images is not None:
                continue
            bad = scan_images([path for path, _ in split.files], stop_at_first=mode == "error")
            if not bad:
                continue
            if mode == "error":
                path, reason = bad[0]
                raise BadImageError(f"bad image {path}: {reason} (data.on_bad_image=skip drops such files)")
            dropped = {path for path, _ in bad}
            split.files[:] = [(p, label) for p, label in split.files if p not in dropped]
            self.skipped_images += [{"path": p, "reason": r, "split": name} for p, r in bad]
            import logging

            logging.getLogger("cnnbench").warning(
                "data.on_bad_image=skip: skipped %d bad %s image(s): %s", len(bad), name,
                "; ".join(f"{p} ({r})" for p, r in bad[:20]) + (" …" if len(bad) > 20 else ""))
        if not source.train.files and source.train.images is None:
            raise BadImageError("every training image was bad and skipped")

    def _limit(self, split: Split, limit: int | None, stream: int) -> Split:
        if limit is None or limit >= len(split):  # limits below 1 are refused by cnnbench.config_schema
            return split
        pick = np.sort(np.random.default_rng([self.seed, stream]).permutation(len(split))[:limit])
        return split.subset(pick)

    def _resolve_image_size(self) -> int:
        wanted = self.cfg.image_size
        minimum = self.info.min_input_size
        if wanted is None:
            if self.native_size is None:  # ImageNet layout: the model's native size (scaled if configured)
                return native_input_size(self.model_name, **self.model_kwargs)
            return max(self.native_size, minimum)
        wanted = int(wanted)
        if wanted < minimum:
            raise ImageSizeError(
                f"data.image_size={wanted} is below the minimum input size {minimum} of model {self.model_name!r}"
            )
        return wanted

    def _normalization(self) -> dict[str, Any]:
        mode = self.cfg.mean_mode
        split = self.train_split
        if split.images is None:  # file-backed: the model's own statistics, or a mean image from the files
            if mode == "pixel":
                return self._file_pixel_mean(split)
            return {"mode": "channel", "mean": list(self.info.mean), "std": list(self.info.std)}
        sample = split.images[: 20000].astype(np.float32) / 255.0
        if mode == "channel":
            mean = sample.mean(axis=(0, 1, 2)).tolist()
            std = sample.std(axis=(0, 1, 2)).tolist()
            return {"mode": "channel", "mean": mean, "std": std}
        # He et al. 2015 §4.2: subtract the per-pixel mean (the mean image at the input size).
        mean_image, _ = self._average_views(split.images[:20000],
                                            eval_transform(self.image_size, self.native_size, self.crop_pct))
        return {
            "mode": "pixel",
            "mean_image": mean_image.transpose(2, 0, 1).tolist(),
            "std": [float(sample.std())] * sample.shape[-1],
            "mean": sample.mean(axis=(0, 1, 2)).tolist(),
        }

    def _average_views(self, images, view) -> tuple[np.ndarray, float]:
        """Mean image (H, W, C in [0, 1]) of the eval views of `images`, and the mean of their squared values."""
        total, square, count = 0.0, 0.0, 0
        for image in images:
            pixels = view(image=image)["image"].reshape(self.image_size, self.image_size, -1) / 255.0
            total = total + pixels
            square += float((pixels**2).mean())
            count += 1
        return total / count, square / count

    def _file_pixel_mean(self, split: Split) -> dict[str, Any]:
        """The mean image of a file-backed training split (He et al. 2015 §3.4 "the per-pixel mean subtracted",
        AlexNet §2): the eval view (short side, center crop) of a seeded sample of up to PIXEL_MEAN_FILES files,
        averaged. Computed once and cached beside the data (`.cnnbench_mean_<key>.npz`; not cached where the data
        folder is read-only); the checkpoint stores it with the rest of the normalisation."""
        import hashlib
        import logging

        count = min(len(split), PIXEL_MEAN_FILES)
        pick = np.sort(np.random.default_rng([self.seed, 5]).permutation(len(split))[:count])
        paths = [split.files[i][0] for i in pick]
        key = hashlib.sha1("\n".join([str(self.image_size), f"{self.crop_pct:.6f}", *paths]).encode()).hexdigest()[:16]
        data_root = Path(str(self.cfg.get("root") or Path(paths[0]).parent.parent))
        cache = (data_root if data_root.is_dir() else data_root.parent) / f".cnnbench_mean_{key}.npz"
        if cache.is_file():
            stats = np.load(cache)
            mean_image, std = stats["mean_image"], float(stats["std"])
        else:
            view = eval_transform(self.image_size, self.native_size, self.crop_pct)
            mean_image, mean_square = self._average_views((load_image_file(path) for path in paths), view)
            std = float(np.sqrt(max(mean_square - float(mean_image.mean()) ** 2, 1e-12)))
            try:
                np.savez(cache, mean_image=mean_image, std=std)
            except OSError as err:
                logging.getLogger("cnnbench").warning("mean image not cached (%s): %s", cache, err)
        return {
            "mode": "pixel",
            "mean_image": mean_image.transpose(2, 0, 1).tolist(),
            "std": [std] * 3,
            "mean": mean_image.mean(axis=(0, 1)).tolist(),
        }

    @property
    def in_chans(self) -> int:
        return int(self.cfg.in_chans)

    # -- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    @property
    def decode(self) -> str:
        return str(self.cfg.get("decode", "opencv"))

    @property
    def photometric(self) -> str:
        return str(self.cfg.get("photometric", "cpu"))

    def _fast(self, train: bool):
        """The fast CPU path for file-backed data (data.decode=opencv), None where it does not apply."""
        if self.native_size is not None or self.decode != "opencv":
            return None
        from cnnbench.data.fastpath import fast_pipeline

        return fast_pipeline(self.aug, self.image_size, self.native_size, self.crop_pct, train,
                             reduced=bool(self.cfg.get("reduced_decode", True)),
                             photometric=self.photometric if train else "cpu")

    def loader(self, split: Split, train: bool) -> DataLoader:
        """A DataLoader over `split`: train (augmented, shuffled per epoch, resumable) or eval."""
        rank, world = self._world()
        if train:
            transform = train_transform(self.aug, self.image_size, self.native_size, self.crop_pct)
        else:
            transform = eval_transform(self.image_size, self.native_size, self.crop_pct)
        dataset = AugmentedImages(split, transform, self.seed if train else None, fast=self._fast(train))
        dataset.skip_bad = self.cfg.get("on_bad_image", "error") == "skip"
        sampler = EpochSampler(len(split), self.seed, shuffle=train, rank=rank, world=world, even=train)
        if train and self._resume is not None:
            sampler.resume = (int(self._resume["epoch"]), int(self._resume["batches"]) * int(self.cfg.batch_size))
            self._resume = None
        workers = int(self.cfg.num_workers)
        collate = collate_images
        if self.decode == "gpu" and split.images is None:  # bytes + parameters; decoded in on_before_batch_transfer
            from cnnbench.data.gpu_decode import GpuDecodeImages, collate

            dataset = GpuDecodeImages(split, self.aug, self.image_size, self.crop_pct, self.seed if train else None,
                                      train)
        return DataLoader(
            dataset,
            collate_fn=collate,
            batch_size=int(self.cfg.batch_size),
            sampler=sampler,
            num_workers=workers,
            pin_memory=bool(self.cfg.pin_memory),
            persistent_workers=bool(self.cfg.persistent_workers) and workers > 0,
            drop_last=False,
            worker_init_fn=init_loader_worker,
            # worker seeds come from this generator, so creating an iterator never draws from the
            # global torch RNG (which a resumed run restores exactly)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """data.decode=gpu: decode and augment the batch on the run's device (cnnbench.data.gpu_decode);
        data.photometric=device: the batch's photometric ops there (cnnbench.data.photometric)."""
        if not (isinstance(batch, (list, tuple)) and len(batch) == 3):
            return batch
        trainer = getattr(self, "trainer", None)

        def device(default: torch.device) -> torch.device:  # the run's device; without a trainer, batch_device
            return trainer.strategy.root_device if trainer is not None else (self.batch_device or default)

        if self.decode == "gpu" and isinstance(batch[0], list):
            from cnnbench.data.gpu_decode import GpuAugment

            training = trainer is not None and trainer.training
            return GpuAugment(self.aug, self.image_size, train=training)(batch, device(torch.device("cuda")))
        if self.photometric == "device" and isinstance(batch[0], torch.Tensor):
            from cnnbench.data.photometric import apply_photometric

            images, params, labels = batch
            target = device(images.device)
            return apply_photometric(images.to(target, non_blocking=True), params), labels.to(target)
        return batch

    # -- resume state (stored by Lightning in every checkpoint) -------------------------------------
    def state_dict(self) -> dict[str, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        # `processed` counts the batches whose training step ran, which is what Lightning's own
        # counters report as done once it restores from this checkpoint
        return {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict) if state_dict else None

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_split, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self.loader(self.val_split, train=False) if self.val_split is not None else []

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_split, train=False)
