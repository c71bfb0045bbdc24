"""Pretrained weights from torchvision, imported as cnnbench checkpoints (docs/pretrained.md)."""
from cnnbench.pretrained.core import SOURCES, Pretrained, WeightsError, entries, import_torchvision, save

__all__ = ["SOURCES", "Pretrained", "WeightsError", "entries", "import_torchvision", "save"]
