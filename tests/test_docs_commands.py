"""Every `cnnbench …` command in README.md and docs/*.md code blocks composes (Hydra's compose API, as
`--cfg job` does) into a config that cnnbench's rules accept (cnnbench/config_schema.py): documentation that
cannot rot. Placeholders (`…/last.ckpt`, `$SLURM_JOB_ID`) are filled in;
a sweep (`-m a=1,2`) is composed at its first value."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from cnnbench.cli import COMMANDS
from cnnbench.config_schema import problems
from cnnbench.precheck import trainer_args
from tests.helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS_WITHOUT_COMPOSE = ("--help", "-h", "--list", "--hydra-help", "--info")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        in_block, pending = False, ""
        for line in doc.read_text().splitlines():
            if line.strip().startswith("```"):
                in_block, pending = not in_block, ""
                continue
            if not in_block:
                continue
            text = (pending + line.strip()).split(" #")[0].rstrip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            # "cnnbench eval: …" is a line of cnnbench's output shown in the doc, not a command
            match = re.search(r"(?:^|\s|/|-m )cnnbench (?![\w-]+: )(\S.*)$", text)
            if match and not text.startswith("#"):
                found.append((doc.name, "cnnbench " + match.group(1).strip()))
    return found


def _args(command_line: str) -> tuple[str, list[str]]:
    filled = command_line.replace("…", "x").replace("$SLURM_JOB_ID", "1").replace("$NODE_RANK", "0")
    words = [os.path.expandvars(w) for w in shlex.split(filled)[1:]]  # the shell expands $HOME before cnnbench
    command, rest = words[0], [w for w in words[1:] if w not in ("-m", "--multirun")]
    if command == "analyze" and rest and "=" not in rest[0]:
        rest[0] = f"analysis={rest[0]}"
    out, rest = [], [w for i, w in enumerate(rest) if w != "--config-dir" and (i == 0 or rest[i - 1] != "--config-dir")]
    for word in rest:
        if word in ("--cfg", "job", "...", "x") or word.startswith((">", "hydra.", "hydra/")) or word in ("|", "&&"):
            continue  # Hydra's own settings are not composed by compose()
        key, _, value = word.partition("=")
        if value and "," in value and not value.startswith("["):  # a sweep: its first value
            value = value.split(",")[0]
        out.append(f"{key}={value}" if _ else word)
    return command, out


COMMAND_LINES = documented_commands()


@pytest.fixture(scope="module", autouse=True)
def readme_user_configs(tmp_path_factory):
    """README's own-configs example, searched as `./conf` and `~/team-configs` would be."""
    from cnnbench.config_paths import UserConfigDirs
    from tests.helpers import write_readme_configs

    saved = list(UserConfigDirs.dirs)
    UserConfigDirs.dirs = [str(d) for d in write_readme_configs(tmp_path_factory.mktemp("project"))]
    from hydra.core.plugins import Plugins

    Plugins.instance().register(UserConfigDirs)
    yield
    UserConfigDirs.dirs = saved


def test_the_docs_have_commands():
    assert len(COMMAND_LINES) > 40


@pytest.mark.parametrize("doc,line", COMMAND_LINES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(COMMAND_LINES)])
def test_documented_command_composes(doc, line):
    command, args = _args(line)
    if command.startswith("-"):  # cnnbench --help
        return
    assert command in COMMANDS, f"{doc}: unknown command in {line!r}"
    if any(a in FLAGS_WITHOUT_COMPOSE for a in args):
        return
    # `--cfg job` prints a config whose mandatory values are unset; `…` stands for arguments left out
    allow_missing = "--cfg" in line or "…" in line.replace("…/", "")
    assert problems(compose_cfg(command, trainer_args(args)), allow_missing) == [], f"{doc}: {line!r}"
