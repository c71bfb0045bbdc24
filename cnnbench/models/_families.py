"""Imports every model family module in this package so its `@register_model` decorators run."""
import importlib
import pkgutil

import cnnbench.models as _pkg

_NOT_FAMILIES = {"registry", "layers", "_families", "scaling"}

for _mod in pkgutil.iter_modules(_pkg.__path__):
    if _mod.name not in _NOT_FAMILIES and not _mod.name.startswith("_"):
        importlib.import_module(f"cnnbench.models.{_mod.name}")
