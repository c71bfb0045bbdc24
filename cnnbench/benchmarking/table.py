"""The tables `cnnbench benchmark` prints from its benchmark.json dict (rich): the step modes side by side with
the plain loop, and the data loader rows (file-backed or in-memory)."""
from __future__ import annotations

from typing import Any


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 140))


def _figures(m: dict[str, Any]) -> list[str]:
    return [f"{m['images_per_s']:,.0f}", f"{m['step_ms']:.1f}", f"{m['cpu_ms']:.1f}", f"{m['peak_mem_mb']:,.0f}",
            f"{m['flops_per_s'] / 1e9:.1f}", f"{100 * m['mfu']:.1f}%"]


def mode_table(r: dict[str, Any]):
    """train / infer / eval: cnnbench's step and the plain loop's, with the ratio and its spread over rounds."""
    from rich.table import Table

    peaks = r["peak_flops"]
    title = (f"{r['model']} · {r['data']} {r['image_size']}² · batch {r['batch_size']} · {r['precision']}"
             f"{' · channels_last' if r['channels_last'] else ''}{' · compiled' if r['compile'] else ''} · "
             f"{r['device_name']} · matmul peak fp32 {peaks['fp32'] / 1e9:.0f} / bf16 {peaks['bf16'] / 1e9:.0f} "
             "GFLOP/s")
    table = Table(title=title)
    for col in ("mode", "", "images/s", "step ms", "CPU ms", "peak MB", "GFLOP/s", "MFU", "vs plain loop",
                "on CPU time"):
        table.add_column(col, justify="right")
    for mode, m in r["modes"].items():
        if mode == "data":
            continue
        spread = f" (±{m['ratio_spread'] / 2:.3f})" if m.get("ratio_spread") is not None else ""
        ratio = "—" if m.get("ratio_vs_plain_loop") is None else f"{m['ratio_vs_plain_loop']:.3f}{spread}"
        cpu_ratio = m.get("ratio_vs_plain_loop_cpu")
        table.add_row(mode, "cnnbench", *_figures(m), ratio, "—" if cpu_ratio is None else f"{cpu_ratio:.3f}")
        p = m.get("plain_loop")
        if p:
            table.add_row("", "plain loop", *_figures(p), "1", "1")
    return table


def file_loader_table(r: dict[str, Any], data: dict[str, Any]):
    """File-backed data: each pipeline's rows beside the OpenCV reference (cnnbench.benchmarking.loaders)."""
    from rich.table import Table

    device = data.get("photometric", "cpu") == "device"
    t = Table(title=f"{data['files']} files, {data['image_size']}², batch {data['batch_size']}, decode="
                    f"{data['decode']}" + (", photometric ops on the device" if device else "")
                    + f" — {r['model']} trains at {data['train_images_per_s']:,.0f} images/s")
    rounds = data["loaders"][0].get("rounds", 1)
    for col in ("kind", "pipeline", "workers", "images/s", "images/s per core",
                "vs OpenCV reference" + (f" (range, {rounds} rounds)" if rounds > 1 else ""),
                "÷ (workers × workers=0)", "× train") + (("device ms/image",) if device else ()):
        t.add_column(col, justify="right")
    for row in data["loaders"]:
        name = row["augmentation"] + (f" ({row['views_per_image']} views)" if row["views_per_image"] > 1 else "")
        lo, hi = row.get("vs_reference_range") or (row["vs_reference"],) * 2
        vs_ref = f"{row['vs_reference']:.2f}" + (f" ({lo:.2f}–{hi:.2f})" if rounds > 1 else "")
        t.add_row(row["kind"], name, str(row["workers"]), f"{row['images_per_s']:,.0f}",
                  f"{row['images_per_s_per_core']:,.0f}", vs_ref,
                  "—" if row.get("vs_workers0") is None else f"{row['vs_workers0']:.2f}",
                  "—" if row["vs_train"] is None else f"{row['vs_train']:.1f}",
                  *((f"{row['device_ms_per_image']:.3f}" if "device_ms_per_image" in row else "—",) if device else ()))
    return t


def memory_loader_table(data: dict[str, Any]):
    """In-memory data: images/s per source, augmentation and worker count, and × the train rate."""
    from rich.table import Table

    t = Table(title=f"data loader alone vs train {data['train_images_per_s']:,.0f} images/s "
                    f"(batch {data['batch_size']}) — needs ≥ 2×")
    for col in ("source", "augmentation", "workers", "images/s", "× train"):
        t.add_column(col, justify="right")
    for row in data["loaders"]:
        t.add_row(row["source"], row["augmentation"], str(row["workers"]), f"{row['images_per_s']:,.0f}",
                  f"{row['vs_train']:.1f}")
    return t


def print_result(r: dict[str, Any]) -> None:
    """Print the tables of one benchmark.json dict."""
    console = _console()
    table = mode_table(r)
    if table.rows:
        console.print(table)
    data = r["modes"].get("data")
    if data and data["loaders"] and "kind" in data["loaders"][0]:
        console.print(file_loader_table(r, data))
    elif data:
        console.print(memory_loader_table(data))


__all__ = ["file_loader_table", "memory_loader_table", "mode_table", "print_result"]
