"""The command line checked before Hydra starts a job and before torch loads: a bad group option, an unknown key,
a bad value, a missing mandatory value or an impossible device request is one `UserError` naming the value and
the valid choices ("did you mean …" where a close name exists). A sweep (`-m`) is checked job by job over the
values of each swept key, so no job of it fails on a value the line already shows to be bad.

The authoritative checks run again inside each job (`cnnbench.config_schema.validate`); this module only moves
them ahead of the heavy imports and of Hydra's run directory. It imports neither torch nor Lightning.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import re
from pathlib import Path

from cnnbench.config_schema import did_you_mean
from cnnbench.errors import UserError
from cnnbench.overrides import override_key

# Hydra's flags that take no config overrides of their own (the rest of the line still composes)
RUN_FLAGS = ("-m", "--multirun")
CFG_FLAGS = ("--cfg", "-c")
CFG_FLAG_VALUES = ("job", "hydra", "all")
MAX_SWEEP_CHECKS = 64  # composed configs checked for one sweep line (each costs ~50 ms)


# -- trainer.<name>= ---------------------------------------------------------------------------------
def lightning_trainer_arguments() -> list[str]:
    """The argument names of `lightning.Trainer.__init__`, read from its source file without importing Lightning
    (which would load torch); imported only when the file cannot be found."""
    spec = importlib.util.find_spec("lightning")
    source = Path(spec.origin).parent / "pytorch" / "trainer" / "trainer.py" if spec and spec.origin else None
    if source is not None and source.is_file():
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "Trainer":
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        args = item.args
                        return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.arg != "self"]
    import inspect

    from lightning.pytorch import Trainer

    return [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"]


def trainer_args(args: list[str]) -> list[str]:
    """`trainer.<name>=…` passes any `lightning.Trainer` argument, as the README says: each becomes
    `++trainer.<name>=…` (set or add) so it needs no `+`; a name Trainer does not take is a `UserError` with the
    closest names."""
    pattern = re.compile(r"^trainer\.([A-Za-z_][A-Za-z0-9_]*)=")
    if not any(pattern.match(a) for a in args):
        return args
    names = lightning_trainer_arguments()
    out = []
    for arg in args:
        match = pattern.match(arg)
        if match and match.group(1) not in names:
            close = difflib.get_close_matches(match.group(1), names, n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UserError(f"trainer.{match.group(1)} is not an argument of lightning.Trainer{hint} "
                            "(cnnbench passes trainer.<name>=… straight to it)")
        out.append(f"++{arg}" if match else arg)
    return out


# -- composition -------------------------------------------------------------------------------------
def compose(command: str, overrides: list[str]):
    """The command's config composed as Hydra would (user config dirs included), without counting GPUs."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cnnbench.config_paths import packaged_conf_dir
    from cnnbench.hardware import deferred_device_probe

    with deferred_device_probe(), initialize_config_dir(config_dir=str(packaged_conf_dir()), version_base="1.3",
                                                        job_name=command):
        return hydra_compose(config_name=command, overrides=overrides)


def config_error(command: str, err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors, as one line naming the bad value and the valid choices."""
    from cnnbench.config_paths import group_options

    text = str(err)
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        choices = group_options(group)
        return (f"{group}={option} is not an option of the {group!r} group; {did_you_mean(option, choices)}"
                f"valid choices: {', '.join(choices)}")
    override = re.search(r"Could not override '([^']+)'", text)
    if override:
        key = override.group(1)
        parent, _, leaf = key.rpartition(".")
        valid = _keys_of(command, parent, [o for o in overrides if override_key(o) != key])
        where = f"of {parent}" if parent else "at the top level"
        hint = f"; {did_you_mean(leaf, valid)}valid keys {where}: {', '.join(valid)}" if valid else ""
        return f"unknown key {key!r} ({leaf} is not a key {where}){hint}"
    return " ".join(text.split())


def _keys_of(command: str, node: str, overrides: list[str]) -> list[str]:
    from omegaconf import OmegaConf

    try:
        cfg = compose(command, overrides)
        value = OmegaConf.select(cfg, node) if node else cfg
        return sorted(str(k) for k in value.keys()) if OmegaConf.is_dict(value) else []
    except Exception:  # noqa: BLE001 - only a hint
        return []


def check_overrides(command: str, overrides: list[str], allow_missing: bool = False):
    """Compose `overrides` and check every value (config_schema) and the device request; the composed config.
    `allow_missing`: mandatory values may stay unset (`--cfg job` prints such a config)."""
    from hydra.errors import HydraException

    from cnnbench.config_schema import validate

    try:
        cfg = compose(command, overrides)
    except HydraException as err:
        raise UserError(config_error(command, err, overrides)) from None
    try:
        validate(cfg, allow_missing)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - e.g. an interpolation of hydra:… that only resolves in the job
        return cfg
    if command == "train":
        from cnnbench.hardware import check_devices

        check_devices(cfg)
    return cfg


# -- sweeps ------------------------------------------------------------------------------------------
def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Override lists to check for a `-m` line: the first job (every swept key at its first value), then each
    further value of each swept key with the others at their first. Keys swept over a continuous range
    (Optuna's `interval(…)`) are left to the sweeper."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(" ".join(str(err).split())) from None
    first: list[str] = []
    swept: list[tuple[int, list[str]]] = []
    for override in parsed:
        if not override.is_sweep_override():
            first.append(override.input_line)
            continue
        if not isinstance(override.value(), (ChoiceSweep, RangeSweep)):
            continue
        key = override.get_key_element()
        values = [f"{key}={v}" for v in override.sweep_string_iterator()]
        if values:
            swept.append((len(first), values))
            first.append(values[0])
    jobs = [first]
    for index, values in swept:
        for value in values[1:]:
            jobs.append(first[:index] + [value] + first[index + 1:])
    return jobs[:MAX_SWEEP_CHECKS]


def first_job_line(args: list[str]) -> list[str]:
    """`-m … --cfg job`: the arguments of the sweep's first job, run without `-m` (Hydra prints its config)."""
    flags, overrides = _split_flags([a for a in args if a not in RUN_FLAGS])
    return [*sweep_jobs(overrides)[0], *flags]


def _split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides)."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg in CFG_FLAGS and i + 1 < len(args) and args[i + 1] in CFG_FLAG_VALUES:
            flags += args[i:i + 2]
            i += 2
            continue
        (flags if arg.startswith("-") else overrides).append(arg)
        i += 1
    return flags, overrides


def check_line(command: str, args: list[str]) -> list[str]:
    """Check a command line (after the command word); returns it to hand to Hydra, with `ckpt_path=` added for a
    bare `cnnbench eval` and a `-m … --cfg job` line turned into its first job's `--cfg job`."""
    multirun = any(a in RUN_FLAGS for a in args)
    if multirun and any(a in CFG_FLAGS for a in args):
        args = first_job_line(args)
        multirun = False
        import sys

        print(f"cnnbench {command}: -m with --cfg: the config of the sweep's first job "
              f"({' '.join(a for a in args if not a.startswith('-') and a not in CFG_FLAG_VALUES) or 'no overrides'})",
              file=sys.stderr, flush=True)
    _, overrides = _split_flags(args)
    overrides = [o for o in overrides if not override_key(o).startswith(("hydra.", "hydra/"))]
    jobs = sweep_jobs(overrides) if multirun else [overrides]
    cfg, printing = None, any(a in CFG_FLAGS for a in args)
    for job in jobs:
        checked = check_overrides(command, job, allow_missing=printing)
        cfg = cfg if cfg is not None else checked
    if command == "eval" and not multirun and not printing:
        return check_eval(cfg, args)
    return args


def check_eval(cfg, args: list[str]) -> list[str]:
    """Bare `cnnbench eval`: the newest finished training run's checkpoint, appended as `ckpt_path=`; a missing
    checkpoint is a `UserError` — before torch and Lightning load."""
    from cnnbench.run import checkpoint_paths, latest_run_checkpoint

    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        ckpt = latest_run_checkpoint([str(r) for r in cfg.eval.latest_from])  # says which, once
        args = [*args, f"ckpt_path={ckpt}"]
    for path in checkpoint_paths(ckpt):
        if not Path(path).is_file():
            raise UserError(f"checkpoint not found: {path} (ckpt_path=)")
    return args


__all__ = ["check_eval", "check_line", "check_overrides", "compose", "config_error", "did_you_mean",
           "first_job_line", "lightning_trainer_arguments", "sweep_jobs", "trainer_args"]
