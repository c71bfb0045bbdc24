"""`cnnbench export ckpt_path=… format=onnx|torchscript`: the network of a checkpoint as a standalone
file, checked numerically against PyTorch before it is kept.

The exported graph takes float32 RGB (or gray, as trained) NCHW images in [0, 1] at the checkpoint's
image size and returns logits: the normalisation (mean/std, or the mean image) is inside the graph.
The batch dimension is dynamic. A JSON sidecar (`<file>.json`) holds the class names and input
description; `export.json` in the run dir holds the check's figures.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cnnbench.choices import EXPORT_FORMATS
from cnnbench.errors import UserError
from cnnbench.evaluation.engine import load_member
from cnnbench.runtime import absolute, resolve_run_dir, write_json

FORMATS = EXPORT_FORMATS
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportWrapper(torch.nn.Module):
    """float [0, 1] NCHW → logits of the main head (normalisation included)."""

    def __init__(self, module) -> None:
        super().__init__()
        self.normalize = module.normalize
        self.model = module.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.normalize(x))
        return out[0] if isinstance(out, (tuple, list)) else out


def _export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> None:
    import logging

    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # per-pass INFO lines would flood the run log
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1, max=4096)
    kwargs: dict[str, Any] = {"dynamo": True, "input_names": ["images"], "output_names": ["logits"],
                              "dynamic_shapes": ({0: batch},), "external_data": False}
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    program = torch.onnx.export(net, (example,), **kwargs)
    program.save(str(path))


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _export_torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated upstream; still what many runtimes load
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(traced, str(path))


def _run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return loaded(x)


def export(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    start = time.time()
    fmt = str(cfg.get("format", "onnx"))
    if cfg.get("ckpt_path") is None:  # absent, null or missing (???)
        raise UserError("ckpt_path is required: cnnbench export ckpt_path=path/to.ckpt format=onnx")
    ckpt = absolute(str(cfg.ckpt_path))
    member = load_member(ckpt, str(cfg.get("weights", "averaged")))
    record = member.record
    run_dir = resolve_run_dir(run_dir)
    out = Path(absolute(str(cfg.output))) if cfg.get("output") else run_dir / f"{member.name}{SUFFIX[fmt]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    net = ExportWrapper(member.module).eval()
    size = int(record["image_size"])
    channels = len(record["normalization"]["mean"])
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    example = torch.rand(2, channels, size, size, generator=gen)
    check = torch.rand(int(cfg.get("check_batch", 3)), channels, size, size, generator=gen)  # another batch size
    tmp = out.with_name(out.name + ".tmp")
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _export_onnx(net, example, tmp, cfg.get("opset"))
                got = _run_onnx(tmp, check)
            else:
                _export_torchscript(net, example, tmp)
                got = _run_torchscript(tmp, check)
            want = net(check)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    diff = float((got.float() - want.float()).abs().max())
    atol, rtol = float(cfg.get("atol", 1e-4)), float(cfg.get("rtol", 1e-3))
    close = bool(torch.allclose(got.float(), want.float(), atol=atol, rtol=rtol))
    same_top1 = bool((got.argmax(1) == want.argmax(1)).all())
    result = {
        "format": fmt,
        "file": str(out),
        "checkpoint": ckpt,
        "model": member.name,
        "weights": member.weights,
        "input": {"shape": ["batch", channels, size, size], "dtype": "float32", "range": [0.0, 1.0],
                  "normalization": "inside the graph"},
        "classes": record["classes"],
        "check": {"batch": int(check.shape[0]), "max_abs_diff": diff, "atol": atol, "rtol": rtol,
                  "allclose": close, "same_top1": same_top1},
        "wall_s": round(time.time() - start, 2),
    }
    if not close:
        tmp.unlink(missing_ok=True)
        write_json(run_dir / "export.json", result)
        raise UserError(f"the {fmt} export of {ckpt} differs from PyTorch by {diff:.3g} (atol={atol}, rtol={rtol}); "
                        f"not written (details in {run_dir / 'export.json'})")
    tmp.replace(out)
    write_json(out.with_name(out.name + ".json"), {k: v for k, v in result.items() if k != "wall_s"})
    write_json(run_dir / "export.json", result)
    print(f"cnnbench export: {member.name} → {out} ({fmt}; max |Δlogit| vs PyTorch {diff:.2e} on a batch of "
          f"{check.shape[0]})", flush=True)
    return result
