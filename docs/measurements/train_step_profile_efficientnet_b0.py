"""One training step of EfficientNet-B0 (32², batch 128, gray input, channels_last, one thread) under
`torch.profiler`, in bf16 autocast and in fp32: where the step's CPU time goes (docs/performance.md, "Training in
bf16 on a CPU with AVX512-BF16 but no AMX").

    python docs/measurements/train_step_profile_efficientnet_b0.py docs/measurements/train_step_profile_efficientnet_b0.json
"""
from __future__ import annotations

import json
import sys

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from cnnbench.hardware import cpu_flags
from cnnbench.models import create_model


def main(dst: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model("efficientnet_b0", num_classes=10, in_chans=1).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(128, 1, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    out: dict = {"command": f"python {' '.join(sys.argv)}", "torch": torch.__version__,
                 "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))), "steps": {}}
    for name, bf16 in (("bf16_autocast", True), ("fp32", False)):
        step(bf16), step(bf16)  # warm-up
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            step(bf16)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        # convolution_backward's inputs are (grad_output, input, weight, …): a depthwise conv has a (C, 1, k, k)
        # weight on a C-channel input (the stem's (32, 1, 3, 3) on the 1-channel image is not one)
        backward = {"depthwise": 0.0, "other": 0.0}
        for e in prof.key_averages(group_by_input_shape=True):
            if e.key == "aten::convolution_backward":
                weight, channels = e.input_shapes[2], e.input_shapes[1][1]
                kind = "depthwise" if weight[1] == 1 and channels == weight[0] > 1 else "other"
                backward[kind] += e.self_cpu_time_total / 1e6
        out["steps"][name] = {
            "self_cpu_s_total": sum(e.self_cpu_time_total for e in ops) / 1e6,
            "top_ops_self_cpu_s": {e.key: e.self_cpu_time_total / 1e6 for e in ops[:6]},
            "convolution_backward_self_cpu_s": backward,
        }
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
