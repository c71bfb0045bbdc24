"""`cnnbench <command> --help`: what the command does, the config groups it reads (default and choices) and its
own keys with their defaults and comments, all read from `conf/<command>.yaml` (the user's config dirs first).
Imports neither torch nor Hydra's app machinery."""
from __future__ import annotations

import shutil
import textwrap

from omegaconf import OmegaConf

from cnnbench.config_paths import find_config, group_options


def _header_and_body(text: str) -> tuple[list[str], list[str]]:
    """The leading comment block (the command's description) and the rest of the file."""
    lines = text.splitlines()
    head = 0
    while head < len(lines) and lines[head].startswith("#"):
        head += 1
    return [line.lstrip("# ").rstrip() for line in lines[:head]], lines[head:]


def _own_keys(body: list[str]) -> list[str]:
    """The file's lines without its `defaults:` list and its `hydra:` block (Hydra's settings, not the command's)."""
    out, skipping = [], False
    for line in body:
        top_level = line and not line[0].isspace() and not line.startswith("#")
        if top_level:
            skipping = line.startswith(("defaults:", "hydra:"))
        if not skipping:
            out.append(line)
    while out and not out[0].strip():
        out.pop(0)
    return out


def _groups(command: str) -> list[tuple[str, str]]:
    """(group, default option) for each config group in the command's defaults list."""
    path = find_config("", command)
    defaults = OmegaConf.load(path).get("defaults", []) if path else []
    found = []
    for entry in defaults:
        if isinstance(entry, str) or not OmegaConf.is_dict(entry):
            continue
        for group, option in entry.items():
            group = str(group).removeprefix("override ").strip()
            if not group.startswith("hydra"):
                found.append((group, "null" if option is None else str(option)))
    return found


def command_help(command: str, summary: str) -> str:
    """The help page of one command."""
    path = find_config("", command)
    header, body = _header_and_body(path.read_text()) if path else ([], [])
    width = max(60, min(110, shutil.get_terminal_size((100, 20)).columns))
    lines = [f"usage: cnnbench {command} [KEY=VALUE …] [GROUP=OPTION …] [-m] [--cfg job] [--config-dir DIR]", "",
             *textwrap.wrap(summary, width), ""]
    lines += [h for h in header if h] + ([""] if header else [])
    groups = _groups(command)
    if groups:
        lines.append("config groups it reads (GROUP=OPTION; default first):")
        name_width = max(len(g) for g, _ in groups)
        for group, default in groups:
            options = [o for o in group_options(group) if o != default]
            text = f"{default}; also: {', '.join(options)}" if options else default
            lines += textwrap.wrap(text, width, initial_indent=f"  {group:<{name_width}}  ",
                                   subsequent_indent=" " * (name_width + 4))
        lines.append("")
    lines.append(f"its own keys (KEY=VALUE; default and meaning), from {path.name if path else '?'}:")
    lines += [f"  {line}" if line.strip() else "" for line in _own_keys(body)]
    lines += ["", f"`cnnbench {command} --cfg job` prints the composed config (groups included); "
              "`--config-dir DIR` or ./conf adds your own configs (README, \"Your own configs\")."]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["command_help"]
