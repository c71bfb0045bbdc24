"""`cnnbench <command> [hydra overrides]` — each command is a Hydra app over conf/.

Thin by design: pick the command, hand the rest of the command line to Hydra, turn known
user errors into one line and a non-zero exit.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cnnbench.runtime as _runtime  # noqa: F401  (records the process start time first)
from cnnbench.runtime import conf_dir

# command → (one-line help, "module:function"); each function takes the composed DictConfig.
COMMANDS = {
    "train": ("train a model (Hydra groups: model, data, optimizer, schedule, augmentation, hardware, logger, "
              "experiment)", "cnnbench.commands.train:train"),
    "eval": ("evaluate a checkpoint on a dataset split (ckpt_path=…, crops=…), writes eval.json",
             "cnnbench.commands.evaluate:evaluate"),
    "profile": ("parameters and multiply-adds of a model at its input size, beside the paper's numbers",
                "cnnbench.commands.profile:profile"),
    "predict": ("top-k classes of an image or a folder (→ CSV) from a checkpoint (ckpt_path=… image=…)",
                "cnnbench.commands.predict:predict"),
    "export": ("a checkpoint as ONNX or TorchScript, checked against PyTorch (format=onnx|torchscript)",
               "cnnbench.commands.export:export"),
    "report": ("markdown table and PNG plots of many runs (runs=<glob>)", "cnnbench.commands.report:report"),
    "benchmark": ("images/s, step time, memory and MFU of a model vs a plain PyTorch loop (benchmark.mode=…)",
                  "cnnbench.commands.benchmark:benchmark"),
    "analyze": ("the analyses behind the papers' figures: layer_responses ckpt_path=…, degradation runs=<glob>",
                "cnnbench.commands.analyze:analyze"),
    "stylize": ("neural style transfer (Gatys et al.) content=… style=… with VGG features (weights=… | ckpt_path=…)",
                "cnnbench.commands.stylize:stylize"),
    "import-weights": ("a torchvision .pth state_dict as a cnnbench checkpoint (model=… path=…, docs/pretrained.md)",
                       "cnnbench.commands.import_weights:import_weights"),
}


def dispatch(command: str, cfg):
    """Call the function registered for `command` in `COMMANDS`."""
    import importlib

    module, function = COMMANDS[command][1].split(":")
    return getattr(importlib.import_module(module), function)(cfg)


def run_guarded(command: str, cfg):
    """Validate `cfg`, run `command`; a user's error or a deliberate stop becomes one line on stderr and
    the exit code of its type (`cnnbench.errors.exit_code`), anything else propagates as a bug."""
    from cnnbench.errors import exit_code, one_line

    try:
        from cnnbench.config_schema import validate

        validate(cfg)  # types, ranges and impossible combinations, before any work (config_schema.py)
        return dispatch(command, cfg)
    except Exception as err:  # noqa: BLE001 - re-raised unless its type is a user error
        code = exit_code(err)
        if code is None:
            raise
        kind = "stopped" if code == 3 else "error"
        print(f"cnnbench {command}: {kind}: {one_line(err)}", file=sys.stderr, flush=True)
        if code == 2:  # bad input: no half-made run directory (Hydra made it before the command ran)
            from cnnbench.runtime import hydra_output_dir, original_cwd, remove_unused_run_dir

            remove_unused_run_dir(hydra_output_dir(), original_cwd())
        sys.exit(code)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: cnnbench <command> [hydra overrides…]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "`cnnbench <command> --help` shows the config groups and options; `--cfg job` prints the",
              "composed config; `-m` runs a sweep (e.g. `cnnbench train -m optimizer.lr=0.1,0.05`).",
              "`cnnbench profile --list` lists every model and where its builder is defined."]
    return "\n".join(lines)


def _run(command: str) -> None:
    import hydra
    from omegaconf import DictConfig

    def task(cfg: DictConfig):
        result = run_guarded(command, cfg)
        # Sweepers (Optuna) optimise the value the job returns: the metric named by `optimized_metric`.
        metric = cfg.get("optimized_metric")
        if metric and isinstance(result, dict) and result.get(metric) is not None:
            return float(result[metric])
        return None

    task.__name__ = command
    hydra.main(version_base="1.3", config_path=conf_dir(), config_name=command)(task)()


_HYDRA_FLAGS = ("-m", "--multirun", "-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve",
                "--package", "-p", "--run", "-r", "--shell-completion", "-sc", "--config-path", "-cp",
                "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun")


def _config_error(command: str, err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors, as one line naming the bad value and the valid choices."""
    import re

    text = str(err)
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        choices = sorted(p.stem for p in (Path(conf_dir()) / group).glob("*.yaml"))
        return f"{group}={option} is not an option of the {group!r} group; valid choices: {', '.join(choices)}"
    override = re.search(r"Could not override '([^']+)'", text)
    if override:
        key = override.group(1)
        parent, _, leaf = key.rpartition(".")
        valid = _keys_of(command, parent, [o for o in overrides if not o.lstrip("+~").startswith(key + "=")])
        where = f"of {parent}" if parent else "at the top level"
        hint = f"; valid keys {where}: {', '.join(valid)}" if valid else ""
        return f"unknown key {key!r} ({leaf} is not a key {where}){hint}"
    return " ".join(text.split())


def _keys_of(command: str, node: str, overrides: list[str]) -> list[str]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from cnnbench.hardware import deferred_device_probe

    try:
        with deferred_device_probe(), initialize_config_dir(config_dir=conf_dir(), version_base="1.3",
                                                            job_name=command):
            cfg = compose(config_name=command, overrides=overrides)
        value = OmegaConf.select(cfg, node) if node else cfg
        return sorted(str(k) for k in value.keys()) if OmegaConf.is_dict(value) else []
    except Exception:  # noqa: BLE001 - only a hint
        return []


def _precheck(command: str, args: list[str]) -> None:
    """Compose once before Hydra runs so that a bad group option or key is one clear line (exit 2).

    Skipped for Hydra's own flags and for sweeps (Hydra reports those itself)."""
    if any(a.split("=")[0] in _HYDRA_FLAGS for a in args):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from cnnbench.hardware import deferred_device_probe

    overrides = [a for a in args if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        with deferred_device_probe(), initialize_config_dir(config_dir=conf_dir(), version_base="1.3",
                                                            job_name=command):
            cfg = compose(config_name=command, overrides=overrides)  # no torch import to count GPUs
    except HydraException as err:
        print(f"cnnbench {command}: error: {_config_error(command, err, overrides)}", file=sys.stderr, flush=True)
        sys.exit(2)
    _precheck_values(command, cfg)  # values and combinations (config_schema.py) before Hydra makes a run dir
    if command == "eval":  # argument errors before torch loads and before Hydra makes a run dir
        _precheck_eval(cfg, args)
    if command == "train":  # a device request this machine cannot meet: before Hydra makes a run dir
        from cnnbench.errors import UserError
        from cnnbench.hardware import check_devices

        try:
            check_devices(cfg)
        except UserError as err:
            print(f"cnnbench {command}: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)


def _precheck_values(command: str, cfg) -> None:
    """`validate` on the composed config (again inside the Hydra job, where it is authoritative): a bad value
    is one line and exit 2 here. A config that needs Hydra's runtime to resolve is left to that second check."""
    from cnnbench.config_schema import validate
    from cnnbench.errors import UserError, one_line

    try:
        validate(cfg)
    except UserError as err:
        print(f"cnnbench {command}: error: {one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception:  # noqa: BLE001 - e.g. an interpolation of hydra:… that only resolves in the job
        return


def trainer_args(args: list[str]) -> list[str]:
    """`trainer.<name>=…` passes any `lightning.Trainer` argument, as the README says: each becomes
    `++trainer.<name>=…` (set or add) so it needs no `+`; a name Trainer does not take is one line with the
    closest names (exit 2). Lightning is imported only when the line has such an argument."""
    import re

    pattern = re.compile(r"^trainer\.([A-Za-z_][A-Za-z0-9_]*)=")
    if not any(pattern.match(a) for a in args):
        return args
    import difflib
    import inspect

    from lightning.pytorch import Trainer

    names = [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"]
    out = []
    for arg in args:
        match = pattern.match(arg)
        if match and match.group(1) not in names:
            close = difflib.get_close_matches(match.group(1), names, n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            print(f"cnnbench: error: trainer.{match.group(1)} is not an argument of lightning.Trainer{hint} "
                  "(cnnbench passes trainer.<name>=… straight to it)", file=sys.stderr, flush=True)
            sys.exit(2)
        out.append(f"++{arg}" if match else arg)
    return out


def _precheck_eval(cfg, args: list[str]) -> None:
    """Bare `cnnbench eval`: the newest finished training run's checkpoint, appended as `ckpt_path=`; a missing
    checkpoint as one line — before torch and Lightning load (bad values: `_precheck_values`, just before)."""
    from cnnbench.errors import UserError
    from cnnbench.run import checkpoint_paths, latest_run_checkpoint

    try:
        ckpt = cfg.get("ckpt_path")
        if ckpt is None:
            ckpt = latest_run_checkpoint([str(r) for r in cfg.eval.latest_from])  # says which, once
            args.append(f"ckpt_path={ckpt}")
        for path in checkpoint_paths(ckpt):
            if not Path(path).is_file():
                raise UserError(f"checkpoint not found: {path} (ckpt_path=)")
    except UserError as err:
        print(f"cnnbench eval: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if args else 2)
    command = args[0]
    if command not in COMMANDS:
        print(f"cnnbench: unknown command {command!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    if command == "profile" and "--list" in args[1:]:  # every registered model and where its builder is
        from cnnbench.commands.profile import model_listing

        print(model_listing())
        sys.exit(0)
    if command == "analyze" and len(args) > 1 and "=" not in args[1] and not args[1].startswith("-"):
        args = [command, f"analysis={args[1]}", *args[2:]]  # `cnnbench analyze <name>` ≡ analysis=<name>
    import cnnbench.runtime  # noqa: F401  (resolvers used by the configs)

    rest = trainer_args(args[1:])
    _precheck(command, rest)  # may add ckpt_path= (bare `cnnbench eval`)
    sys.argv = [sys.argv[0], *rest]  # Hydra parses the rest of the line
    try:
        _run(command)
    finally:
        sys.argv = [sys.argv[0], command, *sys.argv[1:]]


if __name__ == "__main__":
    main()
