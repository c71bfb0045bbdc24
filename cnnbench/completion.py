"""Shell completion for every command through Hydra's completion plugins.

`eval "$(cnnbench -sc install=bash)"` (or `cnnbench train -sc install=bash`) installs Hydra's bash function for
the `cnnbench` executable; `eval "$(cnnbench -sc install=zsh)"` installs a zsh widget (`ZSH_SCRIPT`: Hydra's zsh
plugin prints its bash script, which zsh cannot run). On <TAB> either runs `cnnbench -sc query=bash` with the line
in `$COMP_LINE`; `query` answers the command names while the first word is typed, and otherwise hands the line
without its command word to Hydra's completion over that command's config (groups, options, keys, file names).
"""
from __future__ import annotations

import os
import shlex

SHELLS = ("bash", "zsh")

# zsh (after `autoload -Uz compinit && compinit`): the candidates come from the same query as bash's
ZSH_SCRIPT = """_cnnbench_candidates() {
  COMP_LINE="$1" COMP_POINT=${#1} cnnbench -sc query=bash 2>/dev/null
}
_cnnbench() {
  local -a candidates
  candidates=(${=$(_cnnbench_candidates "${BUFFER[1,CURSOR]}")})
  compadd -Q -S '' -- $candidates
}
compdef _cnnbench cnnbench
"""


def parse(value: str) -> tuple[str, str]:
    """`install=bash` → ("install", "bash"); a bad value is a `UserError` naming the valid ones."""
    from cnnbench.errors import UserError

    action, _, shell = value.partition("=")
    if action not in ("install", "uninstall", "query") or shell not in SHELLS:
        raise UserError(f"-sc {value}: valid: install=bash, install=zsh, uninstall=bash, query=bash")
    return action, shell


def query_words(line: str) -> tuple[list[str], bool]:
    """The words of a completion line after the executable, and whether the cursor starts a new word."""
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote
        words = line.split()
    return words[1:], line.endswith(" ")


def command_candidates(commands: list[str], line: str) -> list[str] | None:
    """The command names when the first word is being typed; None when the command is already given."""
    words, new_word = query_words(line)
    if not words or (len(words) == 1 and not new_word):
        return commands
    return None


def hydra_line(line: str) -> str:
    """The completion line as Hydra's query expects it: the executable, then the words after the command."""
    words, new_word = query_words(line)
    rest = " ".join(shlex.quote(w) for w in words[1:])
    return f"cnnbench {rest}".rstrip() + (" " if new_word else "")


def query(commands: list[str]) -> str | None:
    """Answer a `query` from `$COMP_LINE`: the command names, or None (the command's own Hydra query must run,
    with `$COMP_LINE` rewritten by `hydra_line`)."""
    line = os.environ.get("COMP_LINE", "")
    candidates = command_candidates(commands, line)
    if candidates is not None:
        return " ".join(candidates)
    os.environ["COMP_LINE"] = hydra_line(line)
    return None


__all__ = ["SHELLS", "ZSH_SCRIPT", "command_candidates", "hydra_line", "parse", "query", "query_words"]
