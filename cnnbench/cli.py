"""`cnnbench <command> [hydra overrides]` — each command is a Hydra app over the packaged `conf/` and the user's
config dirs (`cnnbench.config_paths`).

`main` picks the command, answers `--version`, `--help` and shell completion, checks the line before torch loads
(`cnnbench.precheck`), hands it to Hydra, and turns a user's error into one line `cnnbench <command>: error: …`
and a non-zero exit. Importing this module registers the config resolvers (`runtime.register_resolvers`). The
checks themselves live in precheck.py, config_schema.py and command_help.py/completion.py; this module only
routes (docs/architecture.md).
"""
from __future__ import annotations

import sys

import cnnbench.runtime as _runtime  # records the process start time first
from cnnbench.config_paths import packaged_conf_dir

# the resolvers the configs use; at import too, so that a launcher's worker that unpickles `task` below has them
_runtime.register_resolvers()

# command → (one-line help, "module:function"); each function takes the composed DictConfig.
COMMANDS = {
    "train": ("train a model with a paper's recipe (model=, data=, experiment=, …); writes checkpoints and "
              "results.json", "cnnbench.commands.train:train"),
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
    lines = ["usage: cnnbench <command> [KEY=VALUE | GROUP=OPTION …]   (cnnbench --version)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "`cnnbench <command> --help` shows what a command does, the config groups it reads and its keys;",
              "`--cfg job` prints the composed config; `-m` runs a sweep (`cnnbench train -m optimizer.lr=0.1,0.05`);",
              "`--config-dir DIR`, $CNNBENCH_CONFIG_DIR or ./conf add your own configs ahead of the packaged ones.",
              "`cnnbench profile --list` lists every model and where its builder is defined.",
              'Shell completion: eval "$(cnnbench -sc install=bash)" (zsh: after autoload -Uz bashcompinit && '
              "bashcompinit)."]
    return "\n".join(lines)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("cnnbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


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
    hydra.main(version_base="1.3", config_path=str(packaged_conf_dir()), config_name=command)(task)()


def _fail(command: str | None, message: str, code: int = 2) -> None:
    print(f"cnnbench{' ' + command if command else ''}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _take_config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """(the line without `--config-dir DIR` / `-cd DIR` / `--config-dir=DIR`, those dirs in order)."""
    rest, dirs, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
            i += 2
            continue
        if arg.startswith(("--config-dir=", "-cd=")):
            dirs.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, dirs


def _completion(command: str | None, value: str) -> None:
    """`-sc install=bash|zsh` prints Hydra's completion script; `-sc query=bash` answers a <TAB> from $COMP_LINE."""
    import os

    from cnnbench import completion

    action, shell = completion.parse(value)
    if shell == "zsh" and action != "query":
        print(completion.ZSH_SCRIPT if action == "install" else "compdef -d cnnbench")
        sys.exit(0)
    if action == "query":
        words, _ = completion.query_words(os.environ.get("COMP_LINE", ""))
        answer = completion.query(list(COMMANDS))  # rewrites $COMP_LINE for Hydra when a command is given
        if answer is not None or words[0] not in COMMANDS:
            print(answer or "")
            sys.exit(0)
        command = words[0]
    sys.argv = [sys.argv[0], "-sc", f"{action}={shell}"]
    _run(command or "train")
    sys.exit(0)


PRINT_ONLY = ("-h", "--help", "help", "--version", "-V", "-sc", "--shell-completion", "--cfg", "-c", "--info", "-i",
              "--hydra-help")


def _quiet_broken_pipe(args: list[str]) -> None:
    """A line that only prints (`--help`, `--cfg job`, …) piped into `head` ends quietly, as Unix tools do, instead
    of a BrokenPipeError traceback. Runs that train keep Python's default (an error, not a silent kill)."""
    import signal

    if argv_prints_only(args) and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def argv_prints_only(args: list[str]) -> bool:
    return not args or any(a in PRINT_ONLY for a in args) or (args[0] == "profile" and "--list" in args)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        _quiet_broken_pipe(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if args else 2)
    if args[0] in ("--version", "-V"):
        print(f"cnnbench {version()}")
        sys.exit(0)
    command, rest = (None, args) if args[0].startswith("-") else (args[0], args[1:])
    if command is not None and command not in COMMANDS:
        from cnnbench.precheck import did_you_mean

        _fail(None, f"unknown command {command!r}; {did_you_mean(command, list(COMMANDS))}"
                    f"valid commands: {', '.join(COMMANDS)}")
    from cnnbench.config_paths import use_user_conf_dirs
    from cnnbench.errors import UserError

    rest, config_dirs = _take_config_dirs(rest)
    try:
        use_user_conf_dirs(config_dirs)
        if rest and rest[0] in ("-sc", "--shell-completion") and len(rest) == 2:
            _completion(command, rest[1])
        if command is None:
            raise UserError(f"{args[0]} needs a command first; usage: cnnbench <command> … (cnnbench --help)")
        if "-h" in rest or "--help" in rest:
            from cnnbench.command_help import command_help

            print(command_help(command, COMMANDS[command][0]), end="")
            sys.exit(0)
        if command == "profile" and "--list" in rest:  # every registered model and where its builder is
            from cnnbench.commands.profile import model_listing

            print(model_listing())
            sys.exit(0)
        if command == "analyze" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
            rest = [f"analysis={rest[0]}", *rest[1:]]  # `cnnbench analyze <name>` ≡ analysis=<name>
        from cnnbench.precheck import check_line, trainer_args

        rest = check_line(command, trainer_args(rest))  # may add ckpt_path= (bare `cnnbench eval`)
    except UserError as err:
        _fail(command, str(err))
    sys.argv = [sys.argv[0], *rest]  # Hydra parses the rest of the line
    try:
        _run(command)
    finally:
        sys.argv = [sys.argv[0], command, *sys.argv[1:]]


if __name__ == "__main__":
    main()
