"""Which positions of each ResNet stage's output map reach the logits (docs/zoo.md, the ResNet-50 row).

He et al. (2015), Table 1 and §3.3: the first block of conv3_x, conv4_x and conv5_x halves the map. In the original
models' bottleneck (Fig. 5 right with `stride_in_1x1=true`, cnnbench's default: the placement that gives Table 1's
FLOPs) the stride sits on the first 1×1 convolution of the branch and on the 1×1 projection shortcut: both read one
position in four of the previous stage's output and nothing else reads the other three. In the basic block
(ResNet-18) and in the bottleneck with the stride on the 3×3 (`stride_in_1x1=false`, torchvision's) a 3×3 window
reads every position.

For each network, at the zoo's input side (32²), one backward pass from a random projection of the logits; a
position (h, w) of a stage's output counts as "reaching the logits" when its gradient is non-zero in any channel
of any image. Training mode (batch statistics), fp32, one thread, seed 0.

A second list scans every zoo network (the registered default of each row's model, on the meta device) for the
layers that can skip positions this way: a convolution or pooling whose kernel is smaller than its stride.

    python docs/zoo/stage_coverage.py docs/zoo/stage_coverage.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cnnbench.analysis.zoo import ZOO_ROWS  # noqa: E402
from cnnbench.hardware import machine_record  # noqa: E402
from cnnbench.models.registry import create_model  # noqa: E402

# (label, model, overrides) at the zoo's 32² input.
NETWORKS = [
    ("resnet18", "resnet18", {}),
    ("resnet50 (stride on the 1×1: the paper's, the zoo row's)", "resnet50", {"stride_in_1x1": True}),
    ("resnet50 (stride on the 3×3: torchvision's)", "resnet50", {"stride_in_1x1": False}),
]


def coverage(model_name: str, overrides: dict, side: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=1, **overrides).train()
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, out):
            out.retain_grad()
            outputs[name] = out
        return hook

    model.stem.register_forward_hook(keep("stem"))
    for name, stage in model.stages.named_children():
        stage.register_forward_hook(keep(name))
    images = torch.randn(batch, 1, side, side, requires_grad=True)
    logits = model(images)
    (logits * torch.randn_like(logits)).sum().backward()
    maps = {"input": images}
    maps.update(outputs)
    stages = []
    for name, tensor in maps.items():
        reached = tensor.grad.ne(0).any(dim=0).any(dim=0)  # (H, W): any image, any channel
        stages.append({"output_of": name, "map": f"{reached.shape[0]}×{reached.shape[1]}",
                       "positions": reached.numel(), "reaching_logits": int(reached.sum()),
                       "fraction": round(float(reached.float().mean()), 4)})
    return {"stages": stages}


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def skipping_layers(model_name: str) -> list[str]:
    """The convolutions and poolings whose kernel is smaller than their stride (they read a subset of positions)."""
    with torch.device("meta"):
        model = create_model(model_name, num_classes=10, in_chans=1)
    found = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            kernel, stride = _pair(module.kernel_size), _pair(module.stride)
            if any(k < s for k, s in zip(kernel, stride, strict=True)):
                found.append(name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, name, overrides in NETWORKS:
        rows.append({"network": label, "model": name, "overrides": overrides, "input_side": args.side,
                     **coverage(name, overrides, args.side, args.batch)})
    scan = {name: skipping_layers(name) for name in ZOO_ROWS}
    out = {"command": "python docs/zoo/stage_coverage.py " + " ".join(sys.argv[1:]),
           "batch": args.batch, "images": "N(0, 1), seed 0", "mode": "training (batch statistics), fp32",
           "networks": rows, "layers_with_kernel_smaller_than_stride": scan, "machine": machine_record()}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        cells = ", ".join(f"{s['output_of']} {s['reaching_logits']}/{s['positions']}" for s in r["stages"])
        print(f"{r['network']} at {r['input_side']}²: {cells}")
    for name, layers in scan.items():
        print(f"{name}: {len(layers)} layers with kernel < stride {layers}")


if __name__ == "__main__":
    main()
