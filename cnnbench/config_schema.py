"""Validation of composed configs: a table of rules, checked at the start of every command.

Hydra's struct mode already rejects unknown keys and OmegaConf keeps the YAML types; this adds
types, ranges and impossible combinations, each reported as one line naming the key, the bad
value and what is valid. Keys not in the table are left alone (other config groups may add
their own); a rule whose key is absent from the composed config is skipped.

Add a rule: `RULES.append(Rule("group.key", check, "what is valid"))` where `check(value)` returns
True for a valid value; `COMBINATIONS` holds checks over the whole config.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnbench.choices import BENCHMARK_PRECISIONS
from cnnbench.errors import UserError
from cnnbench.hardware import DEFERRED

_MISSING = object()  # OmegaConf.select default: the key is absent or its value is missing (???)


def choices(values: tuple) -> str:
    """`a, b or c` — the valid choices as a rule states them."""
    shown = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    return ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]


class Choices:
    """The valid text of a choice rule, which also knows the choices themselves (for "did you mean")."""

    def __init__(self, values: Callable[[], tuple]) -> None:
        self.values = values

    def __call__(self) -> str:
        return choices(self.values())


def did_you_mean(word: str, options: list[str]) -> str:
    """`did you mean X? ` for the closest of `options` (equally similar names: the nearer trailing number)."""
    import difflib
    import re

    close = difflib.get_close_matches(word, options, n=5, cutoff=0.6)
    if not close:
        return ""
    best = difflib.SequenceMatcher(None, word, close[0]).ratio()
    ties = [c for c in close if difflib.SequenceMatcher(None, word, c).ratio() >= best - 1e-9]

    def gap(option: str) -> int:
        a, b = re.search(r"(\d+)$", word), re.search(r"(\d+)$", option)
        return abs(int(a.group(1)) - int(b.group(1))) if a and b else 0

    return f"did you mean {min(ties, key=gap)}? "


def code_choices(where: str) -> tuple[Callable[[Any], bool], Choices]:
    """(check, valid) for the choices the code holds in the constant `module:NAME[.ATTR]`. The module is
    imported only when a composed config has the key, so validation stays ahead of the heavy imports."""
    def values() -> tuple:
        module, _, attr = where.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return tuple(obj)

    return (lambda v: one_of(*values())(v)), Choices(values)


def _listed(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple, ListConfig)) else [v]


def each_of(where: str, non_empty: bool = False) -> tuple[Callable[[Any], bool], Choices]:
    """(check, valid) for a value that is one choice of `module:NAME` or a list of such choices (`non_empty`:
    not the empty list)."""
    check, valid = code_choices(where)
    return (lambda v: (bool(_listed(v)) or not non_empty) and all(check(x) for x in _listed(v))), valid


def group_option(group: str) -> tuple[Callable[[Any], bool], Choices]:
    """(check, valid) for the name of an option of a config group (a file `conf/<group>/<name>.yaml`)."""
    def values() -> tuple:
        from cnnbench.config_paths import group_options

        return tuple(group_options(group))

    return (lambda v: str(v) in values()), Choices(values)


def each_option(group: str, non_empty: bool = False) -> tuple[Callable[[Any], bool], Choices]:
    """(check, valid) for a list of options of a config group (`non_empty`: not the empty list)."""
    check, valid = group_option(group)
    return (lambda v: isinstance(v, (list, tuple, ListConfig)) and (len(v) > 0 or not non_empty)
            and all(check(x) for x in v)), valid


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def positive(v: Any) -> bool:
    return _number(v) and v > 0


def non_negative(v: Any) -> bool:
    return _number(v) and v >= 0


def pos_int(v: Any) -> bool:
    return _int(v) and v >= 1


def nonneg_int(v: Any) -> bool:
    return _int(v) and v >= 0


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices and not (isinstance(v, bool) and not any(isinstance(c, bool) for c in choices))


def in_range(lo: float, hi: float, hi_open: bool = False) -> Callable[[Any], bool]:
    return lambda v: _number(v) and lo <= v and (v < hi if hi_open else v <= hi)


def _devices(v: Any) -> bool:
    if v in ("auto", -1, "-1"):
        return True
    if _int(v):
        return v >= 1
    if isinstance(v, (list, tuple, ListConfig)):
        return len(v) > 0 and all(nonneg_int(d) for d in v)
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",") if p.strip()]
        return bool(parts) and all(p.isdigit() for p in parts) and (len(parts) > 1 or int(parts[0]) >= 1)
    return False


def _val_split(v: Any) -> bool:
    return v is None or (_number(v) and v >= 0 and (v < 1 or float(v).is_integer()))


@dataclass(frozen=True)
class Rule:
    key: str
    check: Callable[[Any], bool]
    valid: str | Callable[[], str]  # what is valid, as text (a callable, e.g. `Choices`: read when needed)

    def valid_text(self) -> str:
        return self.valid() if callable(self.valid) else self.valid


RULES: list[Rule] = [
    Rule("seed", _int, "an integer"),
    Rule("resume", one_of(None, "auto"), "auto or null"),
    Rule("optimizer.name", *code_choices("cnnbench.choices:OPTIMIZERS")),
    Rule("optimizer.lr", positive, "a positive number"),
    Rule("schedule.name", *code_choices("cnnbench.choices:SCHEDULES")),
    Rule("augmentation.name", *code_choices("cnnbench.choices:AUGMENTATIONS")),
    Rule("optimizer.weight_decay", non_negative, "a number >= 0"),
    Rule("optimizer.momentum", in_range(0.0, 1.0, hi_open=True), "a number in [0, 1)"),
    Rule("optimizer.eps", positive, "a positive number"),
    Rule("loss.label_smoothing", in_range(0.0, 1.0, hi_open=True), "a number in [0, 1)"),
    Rule("loss.on_nonfinite", *code_choices("cnnbench.choices:NONFINITE_MODES")),
    Rule("data.batch_size", pos_int, "an integer >= 1"),
    Rule("data.num_workers", nonneg_int, "an integer >= 0"),
    Rule("data.image_size", optional(pos_int), "null or an integer >= 1"),
    Rule("data.in_chans", one_of(1, 3), "1 or 3"),
    Rule("data.val_split", _val_split, "a fraction in [0, 1) or a whole count >= 0"),
    Rule("data.limit_train", optional(pos_int), "null or an integer >= 1"),
    Rule("data.limit_val", optional(pos_int), "null or an integer >= 1"),
    Rule("data.limit_test", optional(pos_int), "null or an integer >= 1"),
    Rule("data.on_bad_image", *code_choices("cnnbench.choices:ON_BAD_IMAGE")),
    Rule("data.mean_mode", *code_choices("cnnbench.choices:MEAN_MODES")),
    Rule("data.decode", *code_choices("cnnbench.choices:DECODES")),
    Rule("data.reduced_decode", one_of(True, False), "true or false"),
    Rule("data.photometric", *code_choices("cnnbench.choices:PHOTOMETRIC")),
    Rule("trainer.max_epochs", lambda v: v is None or (_int(v) and v >= -1), "null, -1 or an integer >= 0"),
    Rule("trainer.max_steps", lambda v: v is None or (_int(v) and v >= -1), "-1 or an integer >= 0"),
    Rule("trainer.devices", _devices, "auto, -1, an integer >= 1 or a list of device indices"),
    Rule("trainer.num_nodes", pos_int, "an integer >= 1"),
    Rule("trainer.accumulate_grad_batches", pos_int, "an integer >= 1"),
    Rule("trainer.gradient_clip_val", optional(non_negative), "null or a number >= 0"),
    Rule("trainer.log_every_n_steps", pos_int, "an integer >= 1"),
    Rule("checkpoint.every_n_steps", optional(pos_int), "null or an integer >= 1"),
    Rule("stuck_at_chance.after_steps", pos_int, "an integer >= 1"),
    Rule("stuck_at_chance.window", pos_int, "an integer >= 1"),
    Rule("hardware.ddp_timeout_s", positive, "a positive number of seconds"),
    Rule("hardware.strategy", *code_choices("cnnbench.choices:STRATEGIES")),
    Rule("logger.name", *code_choices("cnnbench.choices:LOGGERS")),
    Rule("hardware.backend", one_of(None, "gloo", "nccl", "mpi"), "null, gloo, nccl or mpi"),
    # recipes (docs/recipes.md)
    Rule("optimizer.scale_lr", one_of(None, "none", "linear"), "none or linear"),
    Rule("optimizer.reference_batch", pos_int, "an integer >= 1"),
    Rule("hardware.target_global_batch", optional(pos_int), "null or an integer >= 1"),
    Rule("ema.decay", in_range(0.0, 1.0, hi_open=True), "a number in [0, 1)"),
    Rule("ema.every_n_steps", pos_int, "an integer >= 1"),
    Rule("conditional_warmup.enabled", *code_choices("cnnbench.choices:WARMUP_ENABLED")),
    Rule("schedule.gamma", positive, "a positive number"),
    # eval / predict: choices from a module without imports, so a bad value is reported before torch loads
    Rule("crops", *code_choices("cnnbench.evaluation.choices:CROP_CHOICES")),
    Rule("split", *code_choices("cnnbench.evaluation.choices:SPLITS")),
    Rule("eval.mode", *code_choices("cnnbench.evaluation.choices:MODES")),
    Rule("eval.twelve", *code_choices("cnnbench.evaluation.choices:TWELVE")),
    Rule("eval.views", *code_choices("cnnbench.evaluation.choices:VIEWS")),
    Rule("eval.aggregate", *code_choices("cnnbench.evaluation.choices:AGGREGATES")),
    Rule("eval.weights", *code_choices("cnnbench.evaluation.choices:WEIGHTS")),
    Rule("topk", pos_int, "an integer >= 1"),
    Rule("stylize.solver", *code_choices("cnnbench.choices:STYLIZE_SOLVERS")),
    Rule("stylize.pool", *code_choices("cnnbench.choices:STYLIZE_POOLS")),
    Rule("stylize.init", *code_choices("cnnbench.choices:STYLIZE_INITS")),
    Rule("stylize.lr", optional(positive), "null or a positive number"),
    Rule("stylize.content_weight", non_negative, "a number >= 0"),
    Rule("stylize.style_weight", non_negative, "a number >= 0"),
    Rule("eval.batch_size", pos_int, "an integer >= 1"),
    Rule("model.name", *group_option("model")),
    Rule("format", *code_choices("cnnbench.choices:EXPORT_FORMATS")),
    Rule("source", *code_choices("cnnbench.choices:WEIGHT_SOURCES")),
    Rule("benchmark.mode", *each_of("cnnbench.choices:BENCHMARK_MODES", non_empty=True)),
    Rule("benchmark.sources", *each_of("cnnbench.choices:BENCHMARK_SOURCES", non_empty=True)),
    Rule("benchmark.augmentations", *each_option("augmentation", non_empty=True)),
    Rule("benchmark.file_augmentations", *each_option("augmentation")),
    Rule("benchmark.workers", lambda v: isinstance(v, (list, tuple, ListConfig)) and len(v) > 0
         and all(nonneg_int(w) for w in v), "a non-empty list of integers >= 0"),
    Rule("benchmark.protocols", *each_of("cnnbench.evaluation.choices:CROP_CHOICES")),
    Rule("benchmark.steps", lambda v: _int(v) and v >= 2, "an integer >= 2"),
    Rule("benchmark.rounds", pos_int, "an integer >= 1"),
    Rule("benchmark.warmup", nonneg_int, "an integer >= 0"),
]


def _show(v: Any) -> str:
    return repr(OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v)


def _model_minimum(cfg: DictConfig) -> str | None:
    """data.image_size against the model's minimum input size (the data module checks it again with the data,
    ImageSizeError). The one upward import of this leaf: the model registry, read only when both keys are set
    (tests/test_layering.py names it)."""
    size = OmegaConf.select(cfg, "data.image_size", default=_MISSING)
    name = OmegaConf.select(cfg, "model.name", default=_MISSING)
    if size is _MISSING or size is None or name is _MISSING or not pos_int(size):
        return None
    from cnnbench.models import model_info

    try:
        minimum = model_info(str(name)).min_input_size
    except Exception:  # noqa: BLE001 - an unknown model is reported by the model registry itself
        return None
    if size < minimum:
        return f"data.image_size={size} is below the minimum input size {minimum} of model {name!r}"
    return None


def _backend_matches_accelerator(cfg: DictConfig) -> str | None:
    backend = OmegaConf.select(cfg, "hardware.backend", default=_MISSING)
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=_MISSING)
    if backend == "nccl" and accelerator == "cpu":
        return "hardware.backend=nccl needs GPUs but trainer.accelerator=cpu; use hardware.backend=gloo"
    return None


def optimized_metric_is_produced(cfg: DictConfig) -> str | None:
    """A search (hparams_search=…) optimising a validation metric needs a validation split, or every trial
    returns nothing and the study fails only at its end. Also checked once before a sweep starts
    (`cnnbench.sweep.SweepSummary.on_multirun_start`)."""
    metric = OmegaConf.select(cfg, "optimized_metric", default=None)
    split = OmegaConf.select(cfg, "data.val_split", default=_MISSING)
    if isinstance(metric, str) and metric.startswith("val/") and split in (0, 0.0, None):
        return (f"optimized_metric={metric} is only produced with a validation split, but data.val_split={split}; "
                "set data.val_split=<count or fraction> (e.g. data.val_split=5000) or optimized_metric=test/acc1")
    return None


def _benchmark_precision(cfg: DictConfig) -> str | None:
    """`cnnbench benchmark` runs the plain loop in fp32 or one of Lightning's two autocast precisions (with
    their short aliases): `choices.BENCHMARK_PRECISIONS`. A precision the device probe has not resolved yet
    (`hardware.DEFERRED`, inside the CLI's check) is hardware=auto's own choice, always one of them."""
    if OmegaConf.select(cfg, "benchmark", default=None) is None:
        return None
    precision = OmegaConf.select(cfg, "trainer.precision", default=_MISSING)
    if precision is _MISSING or precision == DEFERRED or str(precision) in BENCHMARK_PRECISIONS:
        return None
    return f"trainer.precision={_show(precision)} is invalid for benchmark; valid: {choices(BENCHMARK_PRECISIONS)}"


COMBINATIONS: list[Callable[[DictConfig], str | None]] = [_model_minimum, _backend_matches_accelerator,
                                                         optimized_metric_is_produced, _benchmark_precision]


def missing_values(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Keys whose value is still `???` (mandatory, no default), as dotted names; Hydra's own node is skipped."""
    found = []
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if name == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            found.append(name)
        else:
            node = cfg._get_node(key)
            if isinstance(node, DictConfig) and not node._is_none() and not node._is_interpolation():
                found += missing_values(node, f"{name}.")
    return found


def _required(key: str, cfg: DictConfig) -> str:
    group = key.split(".")[0]
    option = OmegaConf.select(cfg, f"{group}.name", default=None) if "." in key else None
    where = f" by {group}={option}" if option else ""
    return f"{key} is required{where} and has no default; pass {key}=…"


def _broken(rule: Rule, value: Any) -> str:
    hint = ""
    if isinstance(rule.valid, Choices) and isinstance(value, str):
        hint = did_you_mean(value, [str(v) for v in rule.valid.values()])
    return f"{rule.key}={_show(value)} is invalid; {hint}valid: {rule.valid_text()}"


def problems(cfg: DictConfig, allow_missing: bool = False) -> list[str]:
    """Every rule the config breaks, one line each (empty: valid). `allow_missing`: a mandatory value (`???`)
    not given is no problem (`--cfg job` prints such a config)."""
    required = [] if allow_missing else [_required(key, cfg) for key in missing_values(cfg)]
    found = []
    from_checkpoint = OmegaConf.select(cfg, "data.name", default=None) == "checkpoint"  # eval without data=
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=_MISSING)
        if value is _MISSING or (from_checkpoint and value is None and rule.key.startswith("data.")):
            continue  # eval without data=: a null data.<key> is the checkpoint's value (checked when merged)
        if not rule.check(value):
            found.append(_broken(rule, value))
    if not found:  # combinations assume the single values are sound
        found += [msg for check in COMBINATIONS if (msg := check(cfg))]
    return required + found


def validate(cfg: DictConfig, allow_missing: bool = False) -> None:
    """Raise `UserError` with the first problem (and how many more there are)."""
    found = problems(cfg, allow_missing)
    if found:
        more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise UserError(found[0] + more)


__all__ = ["Rule", "RULES", "COMBINATIONS", "did_you_mean", "missing_values", "problems", "validate", "optimized_metric_is_produced"]
