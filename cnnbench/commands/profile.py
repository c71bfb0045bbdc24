"""`cnnbench profile model=X`: parameters and multiply-adds beside the paper's numbers."""
from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cnnbench.models import create_model, model_info
from cnnbench.models.registry import native_input_size
from cnnbench.profiling import count_macs, count_params
from cnnbench.runtime import resolve_run_dir, write_json
from cnnbench.training.module import model_kwargs


def model_listing() -> str:
    """One line per registered model: name, family, native input size, the paper's parameter count and
    where its builder is defined (file:line), so that every model can be found from its name."""
    import inspect
    from pathlib import Path

    from cnnbench.models import list_models
    from cnnbench.models.registry import builder_of

    root = Path(__file__).resolve().parents[2]
    rows = []
    for name in list_models():
        info, builder = model_info(name), builder_of(name)
        source = Path(inspect.getsourcefile(builder) or "?").resolve()
        where = f"{source.relative_to(root) if source.is_relative_to(root) else source}:" \
                f"{inspect.getsourcelines(builder)[1]}"
        params = f"{info.paper_params:,}" if info.paper_params else "—"
        rows.append((name, info.family, str(info.input_size), params, where))
    widths = [max(len(r[i]) for r in rows + [("model", "family", "input", "paper params", "builder")])
              for i in range(5)]
    header = ("model", "family", "input", "paper params", "builder")
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _rel(ours: float, ref: float | None) -> float | None:
    return None if not ref else (ours - ref) / ref


def profile(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    run_dir = resolve_run_dir(run_dir)
    name = cfg.model.name
    info = model_info(name)
    num_classes = int(cfg.num_classes or info.reference_num_classes)
    kwargs = model_kwargs(OmegaConf.to_container(cfg.model, resolve=True))
    scaled = any(v is not None for v in (kwargs.get("scaling") or {}).values())
    size = int(cfg.input_size or native_input_size(name, **kwargs))
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=int(cfg.in_chans), **kwargs)
        macs = count_macs(model, size, in_chans=int(cfg.in_chans))
        device = "meta"
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU
        model = create_model(name, num_classes=num_classes, in_chans=int(cfg.in_chans), **kwargs)
        macs = count_macs(model, size, in_chans=int(cfg.in_chans))
        device = "cpu"
    params = count_params(model)
    # the paper's numbers describe the unscaled network at its native size and class count
    same_setting = num_classes == info.reference_num_classes and size == info.input_size and not scaled
    result = {
        "model": name,
        "params": params,
        "macs": macs,
        "input_size": size,
        "num_classes": num_classes,
        "paper_params": info.paper_params if same_setting else None,
        "paper_macs": info.paper_macs if same_setting else None,
        "params_rel_diff": _rel(params, info.paper_params) if same_setting else None,
        "macs_rel_diff": _rel(macs, info.paper_macs) if same_setting else None,
        "reference_source": info.reference_source,
        "counted_on": device,
    }
    write_json(run_dir / "profile.json", result)
    _print(result, info.paper)
    return result


def _print(r: dict[str, Any], paper: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{r['model']} — {paper}", show_lines=False)
    for col in ("", "cnnbench", "reference", "rel. diff"):
        table.add_column(col, justify="right")

    def fmt(v, unit=""):
        if v is None:
            return "—"
        return f"{v / 1e9:.3f} G{unit}" if v >= 1e9 else f"{v / 1e6:.3f} M{unit}" if v >= 1e6 else f"{v:,.0f}"

    def pct(v):
        return "—" if v is None else f"{100 * v:+.2f}%"

    table.add_row("params", f"{r['params']:,}", "—" if r["paper_params"] is None else f"{r['paper_params']:,}",
                  pct(r["params_rel_diff"]))
    table.add_row(f"MACs @ {r['input_size']}²", fmt(r["macs"]), fmt(r["paper_macs"]), pct(r["macs_rel_diff"]))
    Console().print(table)
