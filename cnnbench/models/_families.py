"""Imports every model family module in this package so its `@register_model` decorators run."""
import importlib
import pkgutil
from pathlib import Path

_NOT_FAMILIES = {"registry", "layers", "_families", "scaling"}

# the package's folder, read from this file: importing the package itself here would close an import cycle
# (cnnbench.models → registry → _families → cnnbench.models)
for _mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _mod.name not in _NOT_FAMILIES and not _mod.name.startswith("_"):
        importlib.import_module(f"cnnbench.models.{_mod.name}")
