"""Copy a run's JSON (benchmark.json, results.json, eval.json, …) into docs/measurements/ without the machine's
absolute paths, with the exact command that produced it (docs/measurements/README.md).

    python docs/measurements/trim.py DST.json SRC.json [SRC.json …] --command "cnnbench benchmark …" [--note "…"]

Every string that starts with the repository root, $HOME or a temporary directory gets that prefix replaced by
"…"; nothing else changes. One SRC is written as it is, with `command` and `note` added as top-level keys (a
`command` already in the file is kept); several (the jobs of one sweep, or repeated runs of one command) are
written as {"command", "note", "runs": [SRC, …]} in the order given."""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from cnnbench.analysis.zoo import trim  # noqa: E402  (the one trim: strings with a machine prefix → "…")


def prefixes() -> list[str]:
    found = {str(ROOT), os.path.expanduser("~"), tempfile.gettempdir(), "/tmp"}
    return sorted((p for p in found if p and p != "/"), key=len, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst", type=Path)
    parser.add_argument("src", type=Path, nargs="+")
    parser.add_argument("--command", required=True, help="the exact command that wrote SRC")
    parser.add_argument("--note", default=None, help="what the numbers need to be read with (machine load, …)")
    args = parser.parse_args()
    prefix_re = re.compile("|".join(re.escape(p) for p in prefixes()))
    runs = [trim(json.loads(src.read_text()), prefix_re) for src in args.src]
    if len(runs) == 1 and isinstance(runs[0], dict):
        data = runs[0]
        data.setdefault("command", args.command)
    else:
        data = {"command": args.command, "runs": runs}
    if args.note:
        data["note"] = args.note
    args.dst.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
