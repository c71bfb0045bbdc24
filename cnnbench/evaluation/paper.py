"""Which evaluation setting a `model_info` accuracy refers to, so that eval.json puts the paper's
number beside ours only when the two were measured the same way.

The numbers themselves live in `model_info` (`paper_top1`, `paper_top5`, `reference_source`);
this module only knows the protocol each family's number was taken with.
"""
from __future__ import annotations

from typing import Any

from cnnbench.models import model_info

# family → the protocol of its `model_info` accuracy (see each family's reference_source)
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    # He et al. 2015, Tables 2 and 3: 10-crop, ImageNet val
    "resnet": {"crops": 10, "mode": "crops"},
    "plain": {"crops": 10, "mode": "crops"},
    # Simonyan & Zisserman 2015, Table 3: single test scale Q = S = 256, dense evaluation
    "vgg": {"crops": 1, "mode": "dense", "scales": [256]},
}
DEFAULT_SETTING = {"crops": 1, "mode": "crops"}  # single center crop (GoogLeNet Table 3 row 1, Inception Table 2, …)

IMAGENET_DATA = ("imagefolder", "imagenet")


def paper_setting(model_name: str) -> dict[str, Any]:
    return dict(PAPER_SETTINGS.get(model_info(model_name).family, DEFAULT_SETTING))


def paper_reference(model_name: str, data_name: str, num_classes: int, crops: int, mode: str,
                    scales: list[int] | None, n_models: int) -> dict[str, Any] | None:
    """The paper's accuracy for this exact setting (single model, the paper's dataset and
    protocol), or None."""
    info = model_info(model_name)
    if n_models != 1 or (info.paper_top1 is None and info.paper_top5 is None):
        return None
    if info.family == "resnet_cifar":
        same_data = data_name == "cifar10" and num_classes == 10
    else:
        same_data = data_name in IMAGENET_DATA and num_classes == info.reference_num_classes
    setting = paper_setting(model_name)
    if not same_data or setting["crops"] != crops or setting["mode"] != mode:
        return None
    if "scales" in setting and list(scales or []) != setting["scales"]:
        return None
    out: dict[str, Any] = {"setting": setting, "source": info.reference_source}
    for k, v in (("acc1", info.paper_top1), ("acc5", info.paper_top5)):
        if v is not None:
            out[k] = v
            out[f"top{k[-1]}_err"] = round(1 - v, 6)
    return out
