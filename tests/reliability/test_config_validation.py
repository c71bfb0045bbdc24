"""Fault 4: bad configs give one clear line and a non-zero exit (cnnbench/config_schema.py)."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnbench.cli import run_guarded
from cnnbench.config_schema import problems, validate
from cnnbench.errors import UserError
from cnnbench.models import model_info
from tests.helpers import FAST, compose_cfg

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# integer ranges: hypothesis tries the bounds and small values first, so fewer examples (two composes each) do
SMALL_PROPERTY = settings(PROPERTY, max_examples=10)


def _problems(overrides, command="train"):
    return problems(compose_cfg(command, overrides))


@pytest.mark.parametrize("command", ["train", "eval", "predict", "profile"])
def test_shipped_defaults_are_valid(command):
    assert problems(compose_cfg(command, []), allow_missing=True) == []


@pytest.mark.parametrize("command,overrides,required", [
    ("predict", [], ["ckpt_path", "image"]),
    ("train", ["data=cifar10"], ["data.root"]),
    ("train", ["data=imagefolder"], ["data.root"]),
    ("export", [], ["ckpt_path"]),
])
def test_a_missing_mandatory_value_is_named(command, overrides, required):
    found = _problems(overrides, command)
    assert [p.split(" is required")[0] for p in found if " is required" in p] == required
    assert all(f"pass {key}=…" in " ".join(found) for key in required)


@PROPERTY
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                 st.from_regex(r"\A[a-z][a-z_]{0,8}\Z")))
def test_lr_must_be_a_positive_finite_number(value):
    text = str(value) if not isinstance(value, float) or math.isfinite(value) else {
        math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    found = _problems([f"optimizer.lr={text}"])
    parsed = value if not isinstance(value, str) else None
    if text in ("true", "false", "null", "inf", "nan"):
        parsed = None if text in ("true", "false", "null", "nan") else math.inf
    good = isinstance(parsed, (int, float)) and math.isfinite(parsed) and parsed > 0
    assert (found == []) == good, (text, found)
    if not good:
        assert found[0].startswith("optimizer.lr=") and "positive number" in found[0]


@SMALL_PROPERTY
@given(st.integers(-5, 40))
def test_batch_size_and_devices_ranges(n):
    assert (_problems([f"data.batch_size={n}"]) == []) == (n >= 1)
    assert (_problems([f"trainer.devices={n}"]) == []) == (n >= 1 or n == -1)


@PROPERTY
@given(st.integers(0, 200))
def test_eval_crops_choices(n):
    assert (_problems([f"crops={n}"], "eval") == []) == (n in (1, 10, 12, 50, 144))


@PROPERTY
@given(st.sampled_from(["resnet20", "googlenet", "inception_v3", "vgg11"]), st.integers(1, 400))
def test_image_size_against_the_model_minimum(model, size):
    found = _problems([f"model={model}", f"data.image_size={size}"])
    assert (found == []) == (size >= model_info(model).min_input_size)
    if found:
        assert f"model {model!r}" in found[0] and str(size) in found[0]


def test_unknown_groups_keys_are_left_alone():
    cfg = compose_cfg("train", ["+optimizer.some_new_option=whatever", "+brand_new_group.x=1"])
    assert problems(cfg) == []


@pytest.mark.parametrize("override, named", [
    ("optimizer.lr=abc", "optimizer.lr='abc'"), ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
    ("trainer.devices=0", "trainer.devices=0"), ("data.on_bad_image=ignore", "data.on_bad_image='ignore'"),
    ("loss.on_nonfinite=maybe", "loss.on_nonfinite='maybe'"), ("data.image_size=16 model=googlenet", "16"),
])
def test_one_line_and_exit_code_2_before_any_work(override, named, capsys, tmp_path):
    cfg = compose_cfg("train", FAST + override.split() + [f"data.root={tmp_path}/never-read"])
    with pytest.raises(SystemExit) as info:
        run_guarded("train", cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cnnbench train: error: ") and named in err


def test_several_problems_are_counted():
    with pytest.raises(UserError, match=r"optimizer.lr=.*\(and 1 more problem\)"):
        validate(compose_cfg("train", ["optimizer.lr=-1", "data.batch_size=0"]))
