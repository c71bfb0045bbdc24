"""cnnbench as a package: the wheel lists every package and config group, carries conf/ and its license, and the
installed wheel runs from any directory (not the source tree): --version, a user's own recipe, a one-epoch run."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_and_config_group_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cnnbench").rglob("*.py")
            if "__pycache__" not in p.parts and "conf" not in p.relative_to(ROOT / "cnnbench").parts}
    groups = {".".join(("cnnbench", *d.relative_to(ROOT).parts)) for d in [ROOT / "conf", *(ROOT / "conf").rglob("*")]
              if d.is_dir() and "__pycache__" not in d.parts}
    assert listed == code | groups
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"cnnbench.conf": "conf"}


def test_license_is_an_spdx_string_with_its_file():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_packaged_conf_dir_is_the_source_tree_conf_here():
    from cnnbench.config_paths import packaged_conf_dir

    assert packaged_conf_dir() == ROOT / "conf"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "deprecated" not in build.stderr.lower(), build.stderr[-3000:]
    return next(out.glob("cnnbench-*.whl"))


@pytest.mark.slow
def test_the_wheel_carries_configs_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("cnnbench/conf/") for n in names if n.startswith("cnnbench/conf/")}
    assert shipped == {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path):
    """Installed with `pip install --target` (dependencies from this environment) and run from a directory that
    is not the checkout: the configs come from the wheel."""
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "work"
    (work / "conf" / "experiment").mkdir(parents=True)
    (work / "conf" / "experiment" / "my_recipe.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: digits\noptimizer:\n  lr: 0.05\n")
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def cnnbench(*args):
        return subprocess.run([sys.executable, "-m", "cnnbench", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import cnnbench.config_paths as c; print(c.packaged_conf_dir())"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(target / "cnnbench" / "conf"), where.stderr
    assert cnnbench("--version").stdout.strip() == "cnnbench 0.1.0"
    trained = cnnbench("train", "experiment=my_recipe", "trainer.max_epochs=1", "logger=csv", "hardware=cpu",
                       "run_name=wheel", "trainer.enable_progress_bar=false", "data.num_workers=0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "resnet20 on digits — test acc1" in trained.stdout
    assert (work / "outputs" / "train" / "wheel" / "results.json").is_file()
