"""He et al. 2015 §4.2, Fig. 7: standard deviations of the layer responses.

"The responses are the outputs of each 3×3 layer, after BN and before other nonlinearity (ReLU/addition)."
The layers are found by running one batch and pairing every BatchNorm2d whose input is the very tensor a 3×3
Conv2d produced; the forward hooks on those BN modules then accumulate Σx and Σx² (float64, on the device)
while the test images pass through — statistics are taken inside the hook, before an in-place ReLU that
follows the BN can overwrite its output. Reported per layer, in execution order:

- `std`: the std of all response values of the layer (every image, channel and position pooled);
- `std_channel_mean`: the std within each channel (over images and positions), averaged over channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _is_3x3_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3)


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(3×3 conv name, BN name) for every BN fed directly by a 3×3 conv, in the order they run on `example`."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}  # id of a 3×3 conv's output tensor → the conv's name
    keep: list[torch.Tensor] = []  # keeps those outputs alive so their ids stay unique during the pass
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(module, inputs, output):
        produced[id(output)] = names[module]
        keep.append(output)

    def bn_hook(module, inputs, output):
        conv = produced.get(id(inputs[0]))
        if conv is not None and (conv, names[module]) not in pairs:
            pairs.append((conv, names[module]))

    for m in model.modules():
        if _is_3x3_conv(m):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_hook(bn_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return pairs


@dataclass
class _Moments:
    count: int = 0                       # values per channel seen so far
    sum: torch.Tensor | None = None      # per channel, float64
    sumsq: torch.Tensor | None = None

    def update(self, y: torch.Tensor) -> None:
        y = y.detach().to(torch.float64)
        s, ss = y.sum(dim=(0, 2, 3)), y.square().sum(dim=(0, 2, 3))
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = ss if self.sumsq is None else self.sumsq + ss
        self.count += y.numel() // y.shape[1]

    def stds(self) -> tuple[float, float]:
        n = self.count
        mean_c = self.sum / n
        var_c = (self.sumsq / n - mean_c.square()).clamp_min(0)
        total = self.sum.sum() / (n * mean_c.numel())
        var_all = (self.sumsq.sum() / (n * mean_c.numel()) - total.square()).clamp_min(0)
        return float(var_all.sqrt()), float(var_c.sqrt().mean())


@dataclass
class LayerResponses:
    """Forward hooks on the BN modules that follow 3×3 convs; `with` attaches them, `result()` reads them."""

    model: nn.Module
    pairs: list[tuple[str, str]]
    moments: dict[str, _Moments] = field(default_factory=dict)
    _handles: list = field(default_factory=list)

    def __enter__(self) -> LayerResponses:
        modules = dict(self.model.named_modules())
        for _, bn in self.pairs:
            self.moments[bn] = _Moments()
            self._handles.append(modules[bn].register_forward_hook(self._hook(bn)))
        return self

    def _hook(self, bn: str):
        def hook(module, inputs, output):
            self.moments[bn].update(output)
        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def result(self) -> list[dict[str, Any]]:
        rows = []
        for i, (conv, bn) in enumerate(self.pairs):
            std, std_c = self.moments[bn].stds()
            rows.append({"index": i + 1, "conv": conv, "bn": bn, "std": std, "std_channel_mean": std_c})
        return rows


@torch.no_grad()
def layer_responses(network: nn.Module, batches, prepare=None, device: torch.device | str = "cpu",
                    limit: int | None = None) -> dict[str, Any]:
    """Stds of the 3×3 layers' responses of `network` over `batches` of (images, labels).

    `prepare` turns a loader batch into the network's input (cnnbench: `ClassificationModule.prepare`, the
    training normalisation); at most `limit` images are used. The network runs in eval mode (BN uses its
    running statistics, as at test time)."""
    network.eval().to(device)
    prepare = prepare or (lambda t: t)
    responses: LayerResponses | None = None
    seen = 0
    try:
        for x, _ in batches:
            if limit is not None and seen >= limit:
                break
            if limit is not None:
                x = x[: limit - seen]
            x = prepare(x.to(device))
            if responses is None:
                pairs = find_conv_bn_pairs(network, x[:2])
                if not pairs:
                    from cnnbench.errors import UserError

                    raise UserError("this network has no 3×3 convolution followed by a BatchNorm2d: "
                                    "layer_responses needs the He et al. layout (conv 3×3 → BN)")
                responses = LayerResponses(network, pairs).__enter__()
            network(x)
            seen += x.shape[0]
    finally:
        if responses is not None:
            responses.__exit__()
    if responses is None:
        raise ValueError("no images to analyse")
    layers = responses.result()
    stds = [r["std"] for r in layers]
    return {"n_images": seen, "n_layers": len(layers), "layers": layers,
            "std_layer_order": stds, "std_sorted": sorted(stds, reverse=True)}


def plot_layer_responses(results: dict[str, dict[str, Any]], path, title: str | None = None) -> None:
    """Fig. 7's layout: std vs layer index (top) and the same stds sorted in descending order (bottom);
    one line per model, plain nets dashed, residual nets solid. Several checkpoints of one model (its seeds):
    the mean per layer index, with the seeds' min–max range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_model: dict[str, list[dict[str, Any]]] = {}
    for label, res in results.items():
        by_model.setdefault(str(res.get("model", label)), []).append(res)
    fig, (ax_order, ax_sorted) = plt.subplots(2, 1, figsize=(7, 6.5))
    for model, members in by_model.items():
        style = "--" if model.startswith("plain") else "-"
        label = model if len(members) == 1 else f"{model} (mean of {len(members)} seeds)"
        for ax, key in ((ax_order, "std_layer_order"), (ax_sorted, "std_sorted")):
            columns = list(zip(*(m[key] for m in members), strict=True))
            xs = range(1, len(columns) + 1)
            line, = ax.plot(xs, [sum(c) / len(c) for c in columns], style, marker=".", markersize=3, linewidth=1,
                            label=label)
            if len(members) > 1:
                ax.fill_between(xs, [min(c) for c in columns], [max(c) for c in columns], color=line.get_color(),
                                alpha=0.18, linewidth=0)
    ax_order.set(xlabel="layer index (original)", ylabel="std", title=title or "std of 3×3 layer responses")
    ax_sorted.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
    for ax in (ax_order, ax_sorted):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def layer_responses_summary(networks: dict[str, Any], data_name: str, run_dir: Path,
                            rule) -> tuple[dict[str, Any], list[Path]]:
    """layer_responses.json and .png of the measured networks, with the seeds' verdict on each network's mean
    response std (its layers averaged; `expect=["resnet56 < resnet20"]`)."""
    from cnnbench.runtime import write_json

    summary = {"analysis": "layer_responses", "paper": "He et al. 2015 §4.2, Fig. 7", "data": data_name,
               "split": "test",
               "response": "output of the BatchNorm2d that follows each 3x3 conv (before ReLU/addition), eval mode",
               "std": "pooled over images, channels and positions (std_channel_mean: per channel, averaged)",
               "networks": networks}
    rows = [{"label": n["model"], "seed": n["seed"], "run_dir": n["checkpoint"],
             "response_std_mean": sum(n["std_layer_order"]) / n["n_layers"]} for n in networks.values()]
    summary.update(rule.apply(rows, metric="response_std_mean"))
    json_path, png_path = run_dir / "layer_responses.json", run_dir / "layer_responses.png"
    write_json(json_path, summary)
    plot_layer_responses(dict(networks), png_path,
                         title=f"std of 3×3 layer responses on {data_name} test images (cf. He et al. Fig. 7)")
    return summary, [json_path, png_path]
