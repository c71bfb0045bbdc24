"""Datasets (local files only) and the LightningDataModule."""
from cnnbench.data.datamodule import ImageDataModule, ImageSizeError
from cnnbench.data.sources import DATASETS, DatasetNotFoundError

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataModule", "ImageSizeError"]
