"""Model registry: one record (`ModelInfo`) and one builder per registered name.

`model_info(name)` is the single place that holds a model's input size, normalisation, crop
percentage, reference numbers (params / MACs / accuracy, each with its source) and aux-loss
weights. The data module, evaluation and `cnnbench profile` read it; nothing keeps a second copy.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnbench.errors import ConfigError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of cnnbench needs to know about a registered model."""

    name: str
    family: str
    paper: str  # short citation, e.g. "He et al. 2015, Table 1"
    input_size: int  # native square input side
    min_input_size: int  # smallest side the network accepts
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reference_num_classes: int = 1000  # class count the reference params/MACs refer to
    paper_params: int | None = None  # exact reference parameter count (aux heads off)
    paper_macs: float | None = None  # multiply-adds at input_size (aux heads off)
    paper_top1: float | None = None  # reference accuracy as a fraction, when known
    paper_top5: float | None = None
    reference_source: str = ""  # where params / MACs / accuracies come from
    aux_weights: tuple[float, ...] = ()  # loss weights of auxiliary heads, in output order
    # the builder's keyword defaults (its signature is the one place they are written), set by register_model
    default_kwargs: dict[str, Any] = field(default_factory=dict)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_INFOS: dict[str, ModelInfo] = {}


def builder_defaults(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """The keyword defaults of a builder's signature (num_classes and in_chans aside), copied."""
    return {k: copy.deepcopy(p.default) for k, p in inspect.signature(builder).parameters.items()
            if k not in ("num_classes", "in_chans") and p.default is not inspect.Parameter.empty}


def register_model(info: ModelInfo) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register `builder(num_classes=..., in_chans=..., **kwargs) -> nn.Module` under `info.name`."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if info.name in _BUILDERS:
            raise ValueError(f"model {info.name!r} registered twice")
        _BUILDERS[info.name] = builder
        _INFOS[info.name] = dataclasses.replace(info, default_kwargs=builder_defaults(builder))
        return builder

    return decorator


def _ensure_loaded() -> None:
    # Importing the family modules fills the registry.
    from cnnbench.models import _families  # noqa: F401


def list_models() -> list[str]:
    """Sorted registry names; each has a `conf/model/<name>.yaml`."""
    _ensure_loaded()
    return sorted(_BUILDERS)


class UnknownModelError(UserError, ValueError):
    pass


def _check_name(name: str) -> None:
    _ensure_loaded()
    if name not in _BUILDERS:
        raise UnknownModelError(
            f"unknown model {name!r}; valid choices: {', '.join(sorted(_BUILDERS))}"
        )


def model_info(name: str) -> ModelInfo:
    """The record of a registered model (see `ModelInfo`)."""
    _check_name(name)
    return _INFOS[name]


def builder_of(name: str) -> Callable[..., nn.Module]:
    """The registered builder function of `name` (`cnnbench profile --list` prints where each is defined)."""
    _check_name(name)
    return _BUILDERS[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model. Unknown names or options raise one clear `ValueError`."""
    _check_name(name)
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_var_kw:
        valid = sorted(k for k in params if k not in ("num_classes", "in_chans"))
        bad = sorted(set(kwargs) - set(valid))
        if bad:
            raise ConfigError(
                f"unknown option(s) {', '.join(bad)} for model {name!r}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )
    return builder(num_classes=num_classes, in_chans=in_chans, **kwargs)


def main_logits(output: Any) -> torch.Tensor:
    """Logits of a model output: models in training mode may return `(logits, aux1, ...)`."""
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def native_input_size(name: str, **kwargs: Any) -> int:
    """The native input side of a model as configured: `model_info`'s, or the scaled one when
    options (e.g. `scaling`) change it. Built on the meta device, so it costs nothing."""
    info = model_info(name)
    if not kwargs.get("scaling"):
        return info.input_size
    with torch.device("meta"):
        model = create_model(name, num_classes=info.reference_num_classes, **kwargs)
    size = getattr(model, "input_size", None)
    if size is None and getattr(model, "scaling", None) is not None and hasattr(model.scaling, "input_size"):
        size = model.scaling.input_size(info.input_size)
    return int(size or info.input_size)
