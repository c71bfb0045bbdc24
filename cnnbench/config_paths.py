"""Where the configs come from: the packaged `conf/` and the user's own config directories before it.

Search order, first match wins (a user file shadows the packaged one of the same group and name):

1. every `--config-dir DIR` (`-cd DIR`) on the command line, in the order given;
2. every directory in `$CNNBENCH_CONFIG_DIR` (separated by `os.pathsep`, ':' on Linux);
3. `./conf` in the working directory, when it exists and is not the packaged one;
4. the packaged configs: `cnnbench/conf` inside an installed wheel, the repository's `conf/` in a source
   checkout or an editable install.

So `conf/experiment/my_recipe.yaml` in a user's project works as `cnnbench train experiment=my_recipe`
(README, "Your own configs"). Hydra is told through a search-path plugin registered at run time, which
both `hydra.main` and the compose API (`cnnbench.precheck`) consult. Imports neither torch nor Lightning.
"""
from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENV_VAR = "CNNBENCH_CONFIG_DIR"
_PACKAGE = Path(__file__).resolve().parent


def packaged_conf_dir() -> Path:
    """The configs that ship with cnnbench: in the wheel (`cnnbench/conf`) or the source tree (`conf/`)."""
    installed = _PACKAGE / "conf"
    if (installed / "train.yaml").is_file():
        return installed
    return _PACKAGE.parent / "conf"


def user_conf_dirs(cli_dirs: list[str] | tuple = ()) -> list[Path]:
    """The user's config directories in search order (see the module docstring); missing ones are an
    error for `--config-dir`, skipped for the environment variable."""
    from cnnbench.errors import UserError

    found: list[Path] = []
    for d in cli_dirs:
        path = Path(d).expanduser().absolute()
        if not path.is_dir():
            raise UserError(f"--config-dir {d}: no such directory")
        found.append(path)
    found += [Path(d).expanduser().absolute() for d in os.environ.get(ENV_VAR, "").split(os.pathsep)
              if d and Path(d).expanduser().is_dir()]
    local = Path("conf").absolute()
    if local.is_dir():
        found.append(local)
    packaged = packaged_conf_dir().resolve()
    unique: list[Path] = []
    for path in found:
        if path.resolve() != packaged and path.resolve() not in [u.resolve() for u in unique]:
            unique.append(path)
    return unique


class UserConfigDirs(SearchPathPlugin):
    """Puts the user's config directories ahead of everything else on Hydra's search path."""

    dirs: list[str] = []

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for d in reversed(UserConfigDirs.dirs):
            search_path.prepend(provider="cnnbench-user", path=f"file://{d}")


def use_user_conf_dirs(cli_dirs: list[str] | tuple = ()) -> list[Path]:
    """Register the user's config directories with Hydra for this process; returns them."""
    from hydra.core.plugins import Plugins

    dirs = user_conf_dirs(cli_dirs)
    UserConfigDirs.dirs = [str(d) for d in dirs]
    Plugins.instance().register(UserConfigDirs)
    return dirs


def search_dirs() -> list[Path]:
    """Every config directory in search order: the registered user ones, then the packaged one."""
    return [Path(d) for d in UserConfigDirs.dirs] + [packaged_conf_dir()]


def find_config(group: str, name: str) -> Path | None:
    """The file `<group>/<name>.yaml` as Hydra would pick it (first in search order), or None."""
    for d in search_dirs():
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def group_options(group: str) -> list[str]:
    """Every option of a config group over all search directories, sorted."""
    return sorted({p.stem for d in search_dirs() for p in (d / group).glob("*.yaml")})


__all__ = ["ENV_VAR", "UserConfigDirs", "find_config", "group_options", "packaged_conf_dir", "search_dirs",
           "use_user_conf_dirs", "user_conf_dirs"]
