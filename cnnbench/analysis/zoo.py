"""The model zoo (docs/zoo.md): one row per `conf/experiment/zoo_<model>.yaml` recipe, filled from its training
runs — the run dirs themselves (`outputs/train/zoo_<model>`, with `.hydra/`) or the artifacts committed under
`docs/zoo/<recipe>/seed<seed>/` (results.json + metrics.csv, trimmed of the machine's paths, with the row's
recipe, command and network profile added under `zoo`).

A row gives the network as trained (parameters and multiply-adds at its input size, counted on the meta device
as `cnnbench profile` does), the recipe's epochs, the test top-1 on the official 10k test images (mean ± sample
std over the runs that share the recipe, with their seeds; one run is stated as one seed), the wall time and
the CPU class of the machine that ran it, the command, and the link to the artifact. The four architectures
that the dataset's public benchmark also lists carry its number beside ours (`PUBLIC`).
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from cnnbench.analysis.metrics import read_metrics
from cnnbench.analysis.zoo_rows import RECIPE_PREFIX, RunRecord, adopted_overrides, not_a_row, recipe_edited

# The zalandoresearch/fashion-mnist README, section "Benchmark" (the table of submitted benchmarks), as shipped by
# the Debian package dataset-fashion-mnist: /usr/share/doc/dataset-fashion-mnist/README.md.gz.
TARGET = 0.90  # every row's test top-1 target (docs/zoo.md)
PUBLIC_SOURCE = ("zalandoresearch/fashion-mnist README, \"Benchmark\" "
                 "(/usr/share/doc/dataset-fashion-mnist/README.md.gz)")
PUBLIC = {"resnet18": ("ResNet18", 0.949), "googlenet": ("GoogleNet with cross-entropy loss", 0.937),
          "vgg16": ("VGG16 26M parameters", 0.935), "alexnet": ("AlexNet with Triplet loss", 0.899)}
NOT_RUN = "not yet run"


# the zoo's rows, one recipe each (conf/experiment/zoo_<row>.yaml), in the table's order: the seed networks,
# roughly by year (other recipes follow, sorted)
ZOO_ROWS = ("alexnet", "vgg11", "vgg16", "googlenet", "inception_v2", "inception_v3", "inception_v4",
            "inception_resnet_v1", "inception_resnet_v2", "resnet18", "resnet50", "resnet20", "resnet56",
            "highway_conv", "efficientnet_b0")


def _order(recipe: str) -> tuple[int, str]:
    model = recipe[len(RECIPE_PREFIX):]
    return (ZOO_ROWS.index(model) if model in ZOO_ROWS else len(ZOO_ROWS), model)


def zoo_recipes() -> list[str]:
    """The recipe names (`zoo_<model>`: conf/experiment/zoo_*.yaml, and a user config dir's), in the table's order."""
    from cnnbench.config_paths import group_options

    return sorted((o for o in group_options("experiment") if o.startswith(RECIPE_PREFIX)), key=_order)


def run_command(record: RunRecord) -> str | None:
    """`cnnbench train <the run's overrides>` (Hydra's .hydra/overrides.yaml; those the recipe file has since
    adopted left out, as the row's command no longer needs them), or the artifact's `zoo.command`."""
    results = record.results
    if (results.get("zoo") or {}).get("command"):
        return str(results["zoo"]["command"])
    if record.overrides is None:
        return results.get("command")
    adopted = set(adopted_overrides(record))
    return " ".join(["cnnbench train", *(_quote(o) for o in record.overrides if o not in adopted)])


def _quote(override: str) -> str:
    return f"'{override}'" if re.search(r"[\s\[\]{}*?'\"$,]", override) else override


def network_profile(record: RunRecord) -> dict[str, Any] | None:
    """Parameters and MACs of the network as the run trained it, built on the meta device from the run's
    composed config (the record's .hydra/config.yaml: model kwargs, input size, channels, classes); an artifact
    carries it."""
    if (record.results.get("zoo") or {}).get("profile"):
        return dict(record.results["zoo"]["profile"])
    if record.config is None:
        return None
    from omegaconf import OmegaConf

    from cnnbench.models import create_model
    from cnnbench.models.registry import native_input_size
    from cnnbench.profiling import build_on_meta, count_macs, count_params
    from cnnbench.training.module import model_kwargs

    cfg = OmegaConf.create(record.config)
    kwargs = model_kwargs(OmegaConf.to_container(cfg.model, resolve=False))
    name = str(cfg.model.name)
    size = cfg.data.get("image_size")
    size = int(size) if size is not None else int(native_input_size(name, **kwargs))
    in_chans = int(cfg.data.get("in_chans") or 3)
    num_classes = int(cfg.data.get("num_classes") or 10)
    model = build_on_meta(create_model, name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return {"model": name, "params": count_params(model), "macs": count_macs(model, size, in_chans=in_chans),
            "input_size": size, "in_chans": in_chans, "num_classes": num_classes,
            "width_mult": (kwargs.get("scaling") or {}).get("width_mult")}


def _logged_steps(metrics: Path) -> int | None:
    """The last training step metrics.csv logged (a check on results.json's `steps`)."""
    steps = [p.step for points in read_metrics(metrics).values() for p in points if p.step is not None]
    return max(steps) if steps else None


def cpu_class(machine: dict[str, Any] | None) -> str:
    """`AMD EPYC, 2 cores (1 thread), avx2 avx512f avx512_bf16` from results.json's `machine` record."""
    if not machine:
        return "unknown machine"
    flags = " ".join(machine.get("cpu_flags") or []) or "no AVX2"
    threads = machine.get("torch_threads")
    used = f" ({threads} thread{'' if threads == 1 else 's'})" if threads else ""
    return f"{machine.get('cpu_model', '?')}, {machine.get('cpu_cores', '?')} cores{used}, {flags}"


def summarize_zoo_run(run: Path, record: RunRecord | None = None) -> dict[str, Any] | None:
    """One run's row inputs (`record`: the run as read, where the caller has it); None for a run that is not a
    zoo recipe's."""
    record = RunRecord.read(run) if record is None else record
    results, recipe = record.results, record.recipe
    if recipe is None:
        return None
    acc = results.get("test/acc1")
    return {"recipe": recipe, "model": results.get("model"), "seed": results.get("seed"),
            "test_acc1": float(acc) if acc is not None and acc == acc else None,  # NaN: never tested
            "epochs": results.get("epochs"), "logged_steps": _logged_steps(run / "metrics.csv"),
            "steps": results.get("steps"), "wall_s": results.get("wall_s"),
            "resumed": results.get("resumed_from") is not None,
            "stopped": results.get("stopped"), "precision": (results.get("hardware") or {}).get("precision"),
            "machine": cpu_class(results.get("machine")), "command": run_command(record),
            "profile": network_profile(record), "artifact": "zoo" in results, "run_dir": str(run)}


def _si(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1e9:.2f} G" if v >= 1e9 else f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def _minutes(seconds: list[float]) -> str:
    """One run's minutes; several runs' range ("16–25 min"), or "21 min each" where they round alike."""
    if not seconds:
        return "—"
    low, high = f"{min(seconds) / 60:.0f}", f"{max(seconds) / 60:.0f}"
    if len(seconds) == 1:
        return f"{low} min"
    return f"{low} min each" if low == high else f"{low}–{high} min"


def row_cells(recipe: str, runs: list[dict[str, Any]], artifact_root: str = "zoo") -> dict[str, str]:
    """The table cells of one recipe from its runs (an empty list: the row says it was not run)."""
    model = recipe[len(RECIPE_PREFIX):]
    public = PUBLIC.get(model)
    cells = {"network": model, "recipe": f"`{recipe}`",
             "public": f"{public[1]:.3f}" if public else "—"}
    done = [r for r in runs if r["test_acc1"] is not None]
    if not done:
        stopped = next((r["stopped"] for r in runs if r.get("stopped")), None)
        status = NOT_RUN if not runs else f"stopped ({(stopped or {}).get('reason', 'no test result')})" \
            if isinstance(stopped, dict) else "no test result"
        return {**cells, "params": "—", "macs": "—", "input": "—", "epochs": "—", "top1": status, "wall": "—",
                "command": f"`cnnbench train experiment={recipe} run_name={recipe} resume=auto`", "artifact": "—"}
    done = sorted(done, key=lambda r: (r["seed"] is None, r["seed"]))
    first = done[0]
    prof = first["profile"] or {}
    accs = [r["test_acc1"] for r in done]
    seeds = ", ".join(str(r["seed"]) for r in done)
    if len(accs) > 1:
        top1 = f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f} (seeds {seeds})"
    else:
        top1 = f"{accs[0]:.4f} (one seed: {seeds})"
    if statistics.fmean(accs) < TARGET:
        top1 += f", {TARGET - statistics.fmean(accs):.3f} below the {TARGET:.2f} target"
    if public:
        gap = statistics.fmean(accs) - public[1]
        top1 += f", {abs(gap):.3f} {'above' if gap >= 0 else 'below'} public"
    walls = [float(r["wall_s"]) for r in done if r.get("wall_s") is not None]
    wall = _minutes(walls) + (" (last sitting)" if any(r["resumed"] for r in done) else "")
    machines = sorted({r["machine"] for r in done})
    size = prof.get("input_size")
    width = prof.get("width_mult")
    return {**cells, "params": _si(prof.get("params")), "macs": _si(prof.get("macs")),
            "input": f"{size}²×{prof.get('in_chans', '?')}" if size else "—",
            "epochs": str(first.get("epochs") or "—")
            + (f", width ×{width}" if width else ""),
            "top1": top1, "wall": f"{wall}, {'; '.join(machines)}",
            "command": f"`{first['command']}`" if first.get("command") else "—",
            "artifact": f"[{recipe}/]({artifact_root}/{recipe}/)" if all(r["artifact"] for r in done)
            else "— (not copied: `copy_to=docs/zoo`)"}


def row_numbers(recipe: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers one table row prints, as JSON leaves (zoo.json), so the page can be checked against them."""
    done = [r for r in runs if r["test_acc1"] is not None]
    if not done:
        return {"status": NOT_RUN if not runs else "no test result"}
    accs = [r["test_acc1"] for r in done]
    prof = done[0]["profile"] or {}
    public = PUBLIC.get(recipe[len(RECIPE_PREFIX):])
    walls = [float(r["wall_s"]) for r in done if r.get("wall_s") is not None]
    return {"seeds": [r["seed"] for r in done], "test_acc1": accs, "test_acc1_mean": statistics.fmean(accs),
            "test_acc1_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "public_test_acc1": public[1] if public else None,
            "gap_vs_public": statistics.fmean(accs) - public[1] if public else None,
            "distance_to_public": abs(statistics.fmean(accs) - public[1]) if public else None,  # as the table prints it
            "target": TARGET, "below_target": max(0.0, TARGET - statistics.fmean(accs)),
            "params": prof.get("params"), "macs": prof.get("macs"), "input_size": prof.get("input_size"),
            "epochs": done[0].get("epochs"), "wall_s": walls,
            "wall_s_mean": statistics.fmean(walls) if walls else None}


def table_numbers(recipes: list[str], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_recipe.setdefault(r["recipe"], []).append(r)
    return {recipe: row_numbers(recipe, by_recipe.get(recipe, []))
            for recipe in list(recipes) + sorted(set(by_recipe) - set(recipes), key=_order)}


COLUMNS = (("network", "network"), ("params", "parameters"), ("macs", "MACs / image"), ("input", "input"),
           ("recipe", "recipe (`experiment=`)"), ("epochs", "epochs"), ("top1", "test top-1 (10k)"),
           ("public", "public benchmark"), ("wall", "wall time, CPU"), ("command", "command"),
           ("artifact", "artifact"))


def zoo_table(recipes: list[str], rows: list[dict[str, Any]], artifact_root: str = "zoo") -> str:
    """The markdown table: one line per recipe (in the order given), its runs' cells or "not yet run".
    Artifact links are relative to docs/ (the table's page is docs/zoo.md)."""
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_recipe.setdefault(r["recipe"], []).append(r)
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for recipe in list(recipes) + sorted(set(by_recipe) - set(recipes), key=_order):
        cells = row_cells(recipe, by_recipe.get(recipe, []), artifact_root)
        lines.append("| " + " | ".join(cells[key].replace("|", "\\|") for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


TABLE_BEGIN, TABLE_END = "<!-- zoo-table: begin (cnnbench analyze zoo) -->", "<!-- zoo-table: end -->"


def check_doc(doc: Path) -> str:
    """The text of `doc`, a page holding the zoo-table markers; a UserError naming the page otherwise."""
    from cnnbench.errors import UserError

    if not doc.is_file():
        raise UserError(f"doc={doc}: no such file; doc= names a page with the zoo-table markers, e.g. docs/zoo.md")
    text = doc.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise UserError(f"doc={doc}: no '{TABLE_BEGIN}' … '{TABLE_END}' markers to put the table between")
    return text


def replace_table(doc: Path, table: str) -> None:
    """Write `table` between the zoo-table markers of `doc` (the rest of the page is left as it is)."""
    text = check_doc(doc)
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    doc.write_text(f"{head}{TABLE_BEGIN}\n{table}{TABLE_END}{tail}")


def prefix_re(extra: list[str]) -> re.Pattern:
    import os
    import tempfile

    found = {os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", *extra}
    prefixes = sorted((p.rstrip("/") for p in found if p and p.rstrip("/")), key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in prefixes))


def trim(value: Any, pattern: re.Pattern) -> Any:
    """Every string that starts with one of the machine's prefixes gets it replaced by "…" (as
    docs/measurements/trim.py does)."""
    if isinstance(value, dict):
        return {k: trim(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [trim(v, pattern) for v in value]
    if isinstance(value, str):
        return pattern.sub("…", value)
    return value


def copy_artifact(run: Path, dst_root: Path, roots: list[str] = (), row: dict[str, Any] | None = None) -> Path:
    """Copy a finished zoo run's results.json and metrics.csv into `dst_root/<recipe>/seed<seed>/`, with the
    machine's path prefixes (`roots`, $HOME, the temporary directory) replaced by "…" and the row's recipe,
    command and network profile (`row`, summarize_zoo_run's, where the caller has it) added under `zoo`. Returns
    the artifact folder."""
    from cnnbench.errors import UserError

    row = summarize_zoo_run(run) if row is None else row
    if row is None:
        raise UserError(f"run {run} is not a zoo run (no experiment=zoo_<model> in .hydra/overrides.yaml)")
    if row["test_acc1"] is None:
        raise UserError(f"run {run} has no test result yet (finish it: rerun its command with resume=auto)")
    prefixes = prefix_re([str(Path(r).resolve()) for r in roots])
    results = json.loads((run / "results.json").read_text())
    results["zoo"] = {"recipe": row["recipe"], "command": row["command"], "profile": row["profile"]}
    target = Path(dst_root) / row["recipe"] / f"seed{row['seed']}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(trim(results, prefixes), indent=1, ensure_ascii=False) + "\n")
    metrics = run / "metrics.csv"
    if metrics.is_file():
        (target / "metrics.csv").write_text(prefixes.sub("…", metrics.read_text()))
    return target


def _filter_rows(runs: list[Path]) -> list[dict[str, Any]]:
    """The rows of the runs that ran a recipe as written (the others are named and left out)."""
    rows = []
    for run in runs:
        record = RunRecord.read(run)
        changed = not_a_row(record)
        edited = [] if changed else recipe_edited(record)
        if changed or edited:
            why = f"it changes the row ({' '.join(changed)})" if changed else \
                f"its recipe file has changed since it ran ({'; '.join(edited)})"
            print(f"cnnbench analyze: zoo: {run} left out: {why}", flush=True)
        elif (row := summarize_zoo_run(run, record)) is not None:
            rows.append(row)
    return rows


def _from_artifacts(rows: list[dict[str, Any]], target: Path, roots: list[str]) -> list[dict[str, Any]]:
    """Copy the finished runs' artifacts to `target`, then read every artifact there (unfinished runs keep
    their row): the committed artifacts are the table's source."""
    for r in rows:
        if r["test_acc1"] is not None and not r["artifact"]:
            print(f"cnnbench analyze: zoo: {r['run_dir']} → {copy_artifact(Path(r['run_dir']), target, roots, r)}",
                  flush=True)
    kept = [r for r in rows if r["test_acc1"] is None and not r["artifact"]]
    return kept + [r for r in (summarize_zoo_run(p.parent) for p in sorted(target.glob("*/seed*/results.json")))
                   if r is not None]


def zoo_analysis(runs: list[Path], run_dir: Path, roots: list[str], pattern: str = "", copy_to: Path | None = None,
                 doc: Path | None = None) -> tuple[dict[str, Any], list[Path]]:
    """`cnnbench analyze zoo`: zoo.md and zoo.json in `run_dir`; with `copy_to` the artifacts and the table's
    numbers (`<copy_to>/zoo.json`, paths under `roots` trimmed); with `doc` the table written into that page."""
    from cnnbench.errors import UserError
    from cnnbench.runtime import write_json

    if doc is not None:  # before anything is copied or written
        check_doc(doc)
    rows = _filter_rows(runs)
    if copy_to is not None:
        rows = _from_artifacts(rows, copy_to, roots)
    if not rows:
        raise UserError(f"runs={pattern!r}: no run of an experiment=zoo_<model> recipe as written")
    recipes = zoo_recipes()
    table = zoo_table(recipes, rows)
    md_path, json_path = run_dir / "zoo.md", run_dir / "zoo.json"
    md_path.write_text(table)
    public = {k: {"row": v[0], "test_acc1": v[1]} for k, v in PUBLIC.items()}
    summary = {"analysis": "zoo", "public_benchmark": {"source": PUBLIC_SOURCE, "rows": public},
               "table": table_numbers(recipes, rows), "runs": rows}
    write_json(json_path, summary)
    if copy_to is not None:  # the table's numbers beside the artifacts, without the machine's paths
        write_json(copy_to / "zoo.json", trim(summary, prefix_re(roots)))
    if doc is not None:
        replace_table(doc, table)
        print(f"cnnbench analyze: zoo: table written into {doc}", flush=True)
    for r in rows:
        acc = "—" if r["test_acc1"] is None else f"{r['test_acc1']:.4f}"
        print(f"cnnbench analyze: zoo: {r['recipe']:<26} seed {r['seed']}  test acc1 {acc}  ({r['run_dir']})", flush=True)
    return summary, [md_path, json_path]
