"""Neural style transfer — Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style" (2015; CVPR 2016
as "Image Style Transfer Using Convolutional Neural Networks").

The image itself is optimised (L-BFGS as in the paper, or Adam) so that its VGG responses match the
content image's at one layer and the style image's Gram matrices at several:

- content loss (eq. 1): ½ Σ (F − P)² at `conv4_2`;
- Gram matrix (eq. 3): G = F Fᵀ with F the layer's responses as an N × M matrix (N channels, M positions);
- style loss (eqs. 4–5): Σ_l w_l · 1/(4 N_l² M_l²) Σ (G − A)², w_l = 1/5 on `conv1_1` … `conv5_1`;
- total (eq. 7): α·content + β·style, α/β = 10⁻³ (the paper's Fig. 2 ratio; `content_weight`, `style_weight`).

"convX_Y" names the ReLU output of the Y-th conv of VGG stack X (the paper's layer responses). §2 notes
average pooling gives slightly better images than max pooling (`pool=avg`).

The feature extractor is any VGG: a cnnbench checkpoint of a `vgg*` model, or a torchvision-format VGG
state dict the user already has (`features.<i>.weight` …); nothing is ever downloaded. The VGG's conv
stack is rebuilt from the state dict's own shapes, so any widths (and torchvision's `_bn` layout) work.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnbench.choices import STYLIZE_INITS, STYLIZE_POOLS, STYLIZE_SOLVERS
from cnnbench.errors import ConfigError, UserError
from cnnbench.models.registry import IMAGENET_MEAN, IMAGENET_STD

CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
SOLVERS, POOLS, INITS = STYLIZE_SOLVERS, STYLIZE_POOLS, STYLIZE_INITS


def gram(features: torch.Tensor) -> torch.Tensor:
    """Eq. 3: G_ij = Σ_k F_ik F_jk for responses (B, N, H, W) → (B, N, N), vectorised (one batched matmul)."""
    b, n = features.shape[:2]
    f = features.reshape(b, n, -1)
    return torch.bmm(f, f.transpose(1, 2))


# ----------------------------------------------------------------------------- the feature extractor
def features_from_state_dict(state: dict[str, torch.Tensor], source: str) -> nn.Sequential:
    """A VGG conv stack rebuilt from a torchvision-layout state dict: `features.<i>` convs (4-D weights),
    optional BatchNorms (with running stats) right after them, a ReLU after each conv (or its BN), and a
    2×2 max-pool wherever the indices skip one more place (torchvision's `features` Sequential). A bare
    `features` state dict (keys `<i>.weight`) is read the same way."""
    if not any(k.startswith("features.") for k in state):  # a bare `vgg.features.state_dict()`
        state = {f"features.{k}": v for k, v in state.items() if k.split(".")[0].isdigit()}
    layers: dict[int, nn.Module] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "features" or not parts[1].isdigit() or parts[2] != "weight":
            continue
        i = int(parts[1])
        if value.ndim == 4:
            conv = nn.Conv2d(value.shape[1], value.shape[0], value.shape[2:], padding=value.shape[2] // 2,
                             bias=f"features.{i}.bias" in state)
            layers[i] = conv
        elif value.ndim == 1 and f"features.{i}.running_mean" in state:
            layers[i] = nn.BatchNorm2d(value.shape[0])
    if not any(isinstance(m, nn.Conv2d) for m in layers.values()):
        raise UserError(f"{source} holds no VGG conv weights (features.<i>.weight); pass a VGG state dict")
    seq: list[nn.Module] = []
    after_conv = False
    for i in range(max(layers) + 1):
        if i in layers:
            seq.append(layers[i])
            after_conv = True
        elif after_conv:
            seq.append(nn.ReLU(inplace=False))
            after_conv = False
        else:
            seq.append(nn.MaxPool2d(2, 2))
    seq += [nn.ReLU(inplace=False), nn.MaxPool2d(2, 2)]  # the last conv's ReLU and the stack's last pool
    features = nn.Sequential(*seq)
    own = {k: v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict({k[len("features."):]: v for k, v in own.items()})
    except RuntimeError as err:
        raise UserError(f"cannot load the VGG weights of {source}: {str(err).splitlines()[0]}") from None
    return features


def load_extractor(ckpt_path: str | None, weights: str | None) -> tuple[nn.Sequential, tuple, tuple]:
    """(conv stack, mean, std) of a cnnbench VGG checkpoint or a torchvision-format VGG state-dict file."""
    if ckpt_path and weights:
        raise UserError("give either ckpt_path=<cnnbench VGG checkpoint> or weights=<VGG .pth>, not both")
    if ckpt_path:
        from cnnbench.checkpoint import load_checkpoint, record_of

        ckpt = load_checkpoint(ckpt_path)
        record = record_of(ckpt, ckpt_path)
        name = record["model"]["name"]
        if not str(name).startswith("vgg") or int(record.get("in_chans", 3)) != 3:
            raise UserError(f"checkpoint {ckpt_path} holds model {name!r}; stylize needs an RGB vgg* checkpoint")
        state = {k[len("model."):].replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items()
                 if k.startswith("model.")}
        norm = record.get("normalization", {})
        mean, std = tuple(norm.get("mean") or IMAGENET_MEAN), tuple(norm.get("std") or IMAGENET_STD)
        return features_from_state_dict(state, ckpt_path), mean, std
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file not found: {path} (a torchvision vgg16/vgg19 state dict .pth)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input
            raise UserError(f"cannot read weights {path}: {str(err).strip().splitlines()[0]}") from None
        if not isinstance(state, dict):
            raise UserError(f"{path} is not a state dict (a dict of tensors)")
        state = state.get("state_dict", state)
        return features_from_state_dict(state, str(path)), IMAGENET_MEAN, IMAGENET_STD
    raise UserError("stylize needs VGG features: pass ckpt_path=<cnnbench vgg* checkpoint> or "
                    "weights=<torchvision vgg16/vgg19 state_dict .pth already on disk> (nothing is downloaded)")


class LayerTaps(nn.Module):
    """Runs the conv stack and returns the responses at the named "convX_Y" layers (ReLU outputs)."""

    def __init__(self, features: nn.Sequential, layers: Sequence[str], pool: str = "max") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"pool={pool!r}; valid choices: {', '.join(POOLS)}")
        names: dict[int, str] = {}
        block, conv, last = 1, 0, None
        mods: list[nn.Module] = []
        for i, m in enumerate(features):
            if isinstance(m, nn.MaxPool2d):
                block, conv = block + 1, 0
                m = nn.AvgPool2d(2, 2) if pool == "avg" else m
            elif isinstance(m, nn.Conv2d):
                conv += 1
                last = f"conv{block}_{conv}"
            elif isinstance(m, nn.ReLU):
                names[i] = last
                m = nn.ReLU(inplace=False)
            mods.append(m)
        available = list(names.values())
        missing = [n for n in layers if n not in available]
        if missing:
            raise ConfigError(f"layer(s) {', '.join(missing)} not in this VGG; valid choices: {', '.join(available)}")
        wanted = set(layers)
        self.taps = {i: n for i, n in names.items() if n in wanted}
        self.body = nn.Sequential(*mods[: max(self.taps) + 1])
        for p in self.body.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.body):
            x = m(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out


# ----------------------------------------------------------------------------- the optimisation
@dataclass
class StyleSettings:
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None → 1 / len(style_layers) each
    content_weight: float = 1.0  # α
    style_weight: float = 1e3  # β (α/β = 1e-3)
    steps: int = 300
    solver: str = "lbfgs"
    lr: float | None = None  # None → 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1])
    pool: str = "max"
    init: str = "content"
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        """What no config rule can check (solver, pool and init: config_schema.RULES)."""
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}; it must be at least 1")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ConfigError(f"style_layer_weights needs {len(self.style_layers)} values (one per style layer), "
                              f"got {len(self.style_layer_weights)}")


def style_losses(taps: LayerTaps, content: torch.Tensor, style: torch.Tensor, s: StyleSettings
                 ) -> Callable[[torch.Tensor], tuple[torch.Tensor, float, float]]:
    """The loss of an image (1, 3, H, W), normalised as the VGG expects: (total, content, style)."""
    with torch.no_grad():
        targets_p = {n: t.detach() for n, t in taps(content).items() if n in s.content_layers}
        targets_a = {n: gram(t).detach() for n, t in taps(style).items() if n in s.style_layers}
    w_l = s.style_layer_weights or tuple(1.0 / len(s.style_layers) for _ in s.style_layers)

    def loss(x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        acts = taps(x)
        lc = sum(0.5 * (acts[n] - targets_p[n]).pow(2).sum() for n in s.content_layers)
        ls = 0.0
        for n, w in zip(s.style_layers, w_l, strict=True):
            _, ch, h, wd = acts[n].shape
            ls = ls + w * (gram(acts[n]) - targets_a[n]).pow(2).sum() / (4.0 * ch**2 * (h * wd) ** 2)
        total = s.content_weight * lc + s.style_weight * ls
        return total, float(lc.detach()), float(ls.detach())

    return loss


def optimise(loss_fn, start: torch.Tensor, normalize, s: StyleSettings) -> tuple[torch.Tensor, list[dict]]:
    """Optimise the pixels (in [0, 1], clamped after each step); one record per step."""
    from tqdm import tqdm

    img = start.clone().requires_grad_(True)
    if s.solver == "lbfgs":
        # tolerances 0: the step count alone ends the run (the losses here can be far below the defaults' scale)
        opt = torch.optim.LBFGS([img], lr=s.lr or 1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=0.0, tolerance_change=0.0)
    else:
        opt = torch.optim.Adam([img], lr=s.lr or 0.02)
    curve: list[dict] = []
    last: dict[str, float] = {}

    def closure():
        opt.zero_grad()
        total, lc, ls = loss_fn(normalize(img))
        total.backward()
        last.update(total=float(total.detach()), content=lc, style=ls)
        return total

    bar = tqdm(range(s.steps), desc="stylize", disable=not s.progress, leave=False)
    for step in bar:
        opt.step(closure)
        with torch.no_grad():
            img.clamp_(0.0, 1.0)
        curve.append({"step": step + 1, **last})
        bar.set_postfix(loss=f"{last['total']:.4g}")
    with torch.no_grad():
        total, lc, ls = loss_fn(normalize(img))
    curve.append({"step": s.steps, "total": float(total), "content": lc, "style": ls, "final": True})
    return img.detach(), curve


# ----------------------------------------------------------------------------- images
def read_image(path: str, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} image not found: {p}")
    try:
        with Image.open(p) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read {what} image {p}: {err}") from None


def to_tensor(im, size: int) -> torch.Tensor:
    """Resize so that the longer side is `size` (aspect kept), → (1, 3, H, W) in [0, 1]."""
    from PIL import Image

    scale = size / max(im.size)
    w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    arr = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def save_png(img: torch.Tensor, size_wh: tuple[int, int], path: Path) -> None:
    from PIL import Image

    arr = (img[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    out = Image.fromarray(arr).resize(size_wh, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    out.save(tmp, format="PNG")
    tmp.replace(path)


def stylize_images(content_path: str, style_path: str, extractor: tuple[nn.Sequential, tuple, tuple],
                   size: int, s: StyleSettings, device: torch.device) -> tuple[torch.Tensor, list[dict], tuple]:
    """The stylised image (1, 3, h, w) at the working size, the loss curve and the content's (W, H)."""
    s.check()
    if size < 16:
        raise ConfigError(f"size={size}; it must be at least 16 pixels")
    content_im, style_im = read_image(content_path, "content"), read_image(style_path, "style")
    features, mean, std = extractor
    taps = LayerTaps(features, tuple(dict.fromkeys((*s.content_layers, *s.style_layers))), s.pool).to(device).eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    sd = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x - m) / sd

    content = to_tensor(content_im, size).to(device)
    style = to_tensor(style_im, size).to(device)
    loss_fn = style_losses(taps, normalize(content), normalize(style), s)
    gen = torch.Generator().manual_seed(s.seed)
    start = content if s.init == "content" else torch.rand(content.shape, generator=gen).to(device)
    t0 = time.perf_counter()
    img, curve = optimise(loss_fn, start, normalize, s)
    curve[-1]["seconds"] = round(time.perf_counter() - t0, 3)
    return img, curve, content_im.size
