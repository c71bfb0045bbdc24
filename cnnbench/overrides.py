"""Hydra's command-line overrides as text, read one way everywhere (a leaf: imports nothing from cnnbench).

`++trainer.max_epochs=40` sets key `trainer.max_epochs` to `40`; Hydra's prefixes say how (`+` adds a key, `++`
adds or replaces it, `~` deletes it) and are not part of the key."""
from __future__ import annotations


def split_override(override: str) -> tuple[str, str]:
    """`++trainer.max_epochs=40` → ("trainer.max_epochs", "40"); the value is "" where there is no `=` (`~key`)."""
    key, _, value = str(override).lstrip("+~").partition("=")
    return key, value


def override_key(override: str) -> str:
    """The key an override names, without Hydra's `+`, `++` and `~` prefixes."""
    return split_override(override)[0]


def is_deletion(override: str) -> bool:
    """`~key` or `~key=value`: Hydra removes the key from the config."""
    return str(override).startswith("~")
