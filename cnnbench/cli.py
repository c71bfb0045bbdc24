"""`cnnbench <command> [hydra overrides]` — each command is a Hydra app over conf/.

Thin by design: pick the command, hand the rest of the command line to Hydra, turn known
user errors into one line and a non-zero exit.
"""
from __future__ import annotations

import cnnbench.runtime as _runtime  # noqa: F401  (records the process start time first)

import os
import sys
from pathlib import Path

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
}


def conf_dir() -> str:
    env = os.environ.get("CNNBENCH_CONF")
    if env:
        return str(Path(env).absolute())
    return str(Path(__file__).resolve().parent.parent / "conf")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: cnnbench <command> [hydra overrides…]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "`cnnbench <command> --help` shows the config groups and options; `--cfg job` prints the",
              "composed config; `-m` runs a sweep (e.g. `cnnbench train -m optimizer.lr=0.1,0.05`)."]
    return "\n".join(lines)


def _run(command: str) -> None:
    import hydra
    from omegaconf import DictConfig

    def task(cfg: DictConfig):
        from cnnbench.errors import run_guarded

        result = run_guarded(command, cfg)
        # Sweepers (Optuna) optimise the value the job returns: the metric named by `optimized_metric`.
        metric = cfg.get("optimized_metric")
        if metric and isinstance(result, dict) and result.get(metric) is not None:
            return float(result[metric])
        return None

    task.__name__ = command
    hydra.main(version_base="1.3", config_path=conf_dir(), config_name=command)(task)()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if args else 2)
    command = args[0]
    if command not in COMMANDS:
        print(f"cnnbench: unknown command {command!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *args[1:]]  # Hydra parses the rest of the line
    try:
        _run(command)
    finally:
        sys.argv = [sys.argv[0], command, *sys.argv[1:]]


if __name__ == "__main__":
    main()
