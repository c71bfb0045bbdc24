"""torchvision state_dicts → cnnbench checkpoints (docs/pretrained.md).

Each family module holds one explicit table: (torchvision module, cnnbench module) for every module with weights,
in network order; the tensors inside a module (weight, bias, running_mean, …) keep their names. `convert` walks the
table, so the first key that is missing, or whose shape differs, is the one reported — nothing is guessed from
names. The checkpoint holds the weights under `state_dict` (as a training run's), and the record eval / predict /
export / `train init_from=` read: the model and the options the import sets, ImageNet's class names from
torchvision's weights meta, and the preprocessing of torchvision's weights transforms (normalisation, crop size,
crop_pct = crop / resize). Nothing is downloaded: the meta ships with torchvision.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnnbench.choices import WEIGHT_SOURCES
from cnnbench.errors import UserError
from cnnbench.pretrained.spec import Pairs, Pretrained

SOURCES = WEIGHT_SOURCES
INCEPTION_INPUT = (0.5, 0.5, 0.5)  # transform_input: torchvision's Inception weights see (x − 0.5) / 0.5


class WeightsError(UserError, ValueError):
    pass


def entries() -> dict[str, Pretrained]:
    """Every importable network, by cnnbench model name."""
    from cnnbench.pretrained import alexnet, efficientnet, googlenet, inception, resnet, vgg

    return {**resnet.ENTRIES, **vgg.ENTRIES, **inception.ENTRIES, **efficientnet.ENTRIES, **googlenet.ENTRIES,
            **alexnet.ENTRIES}


def entry(model: str) -> Pretrained:
    known = entries()
    if model not in known:
        raise UserError(f"model={model!r} has no torchvision counterpart cnnbench imports; valid choices: "
                        f"{', '.join(sorted(known))}")
    found = known[model]
    if found.refusal:
        raise UserError(f"cannot import model={model}: {found.refusal}")
    return found


# -- reading ---------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision .pth (a bare state_dict, or one under 'state_dict' / 'model'), loaded weights_only."""
    from cnnbench.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"path={path}: no such file (cnnbench never downloads weights; give the .pth on disk, "
                           "e.g. ~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth)")
    sd = load_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"path={path}: not a state_dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def fold_biases(sd: dict[str, torch.Tensor], folds, where: str) -> None:
    """conv(x) + b → BN  ≡  conv(x) → BN with running_mean − b (BN subtracts the mean; eval and training)."""
    for conv, bn in folds:
        bias, mean = f"{conv}.bias", f"{bn}.running_mean"
        for key in (bias, mean):
            if key not in sd:
                raise WeightsError(f"{where}: key {key!r} is missing (a state_dict of another architecture?)")
        if sd[bias].shape != sd[mean].shape:
            raise WeightsError(f"{where}: {bias} has shape {_shape(sd[bias])}, {mean} {_shape(sd[mean])}")
        sd[mean] = sd[mean] - sd.pop(bias)


def convert(sd: dict[str, torch.Tensor], pairs: Pairs, target: dict[str, torch.Tensor], where: str) -> dict:
    """Our state_dict from torchvision's, through the table: every tensor of each of our modules from the
    torchvision module paired with it; the first missing key, shape mismatch or left-over key is an error."""
    src = dict(sd)
    out: dict[str, torch.Tensor] = {}
    for tv, ours in pairs:
        names = [k[len(ours) + 1:] for k in target if k.startswith(ours + ".") and "." not in k[len(ours) + 1:]]
        if not names:
            raise AssertionError(f"mapping table names {ours!r}, which has no tensors")  # a bug in a table
        for name in names:
            key = f"{tv}.{name}"
            if key not in src:
                first = next(iter(sd))
                raise WeightsError(f"{where}: key {key!r} is missing (the file's first key is {first!r}, "
                                   f"{_shape(sd[first])}: a state_dict of another architecture?)")
            want = target[f"{ours}.{name}"]
            if src[key].shape != want.shape:
                raise WeightsError(f"{where}: {key} has shape {_shape(src[key])}, the network needs "
                                   f"{_shape(want)} (a state_dict of another architecture or size?)")
            out[f"{ours}.{name}"] = src.pop(key).to(want.dtype)
    if src:
        key = next(k for k in sd if k in src)
        raise WeightsError(f"{where}: unexpected key {key!r} {_shape(src[key])} (a state_dict of another "
                           "architecture?)")
    missing = [k for k in target if k not in out]
    if missing:
        raise AssertionError(f"mapping table leaves {missing[0]!r} unset")  # a bug in a table
    return out


# -- torchvision's weights meta ----------------------------------------------------------------------------
def pick_weights(tv_name: str, path: Path, weights: str | None):
    """The torchvision weights entry whose preprocessing applies: `weights=` if given, else the one whose
    download file name is the file's, else the first (IMAGENET1K_V1). Returns (entry, how it was chosen)."""
    import torchvision

    enum = torchvision.models.get_model_weights(tv_name)
    members = list(enum)
    if weights is not None:
        chosen = next((m for m in members if m.name == str(weights)), None)
        if chosen is None:
            raise UserError(f"weights={weights!r}; valid choices for {tv_name}: {', '.join(m.name for m in members)}")
        return chosen, "weights="
    for m in members:
        if m.url.rsplit("/", 1)[-1] == path.name:
            return m, "file name"
    return members[0], "default"


def crop_fraction(crop: int, resize: int) -> float:
    """crop / resize, rounded so that cnnbench's eval resize floor(crop / crop_pct) is `resize` again."""
    pct = round(crop / resize, 6)
    while math.floor(crop / pct) < resize:
        pct -= 1e-6
    while math.floor(crop / pct) > resize:
        pct += 1e-6
    return round(pct, 7)


def preprocessing(chosen, transform_input: bool) -> dict[str, Any]:
    t = chosen.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    mean, std = (INCEPTION_INPUT, INCEPTION_INPUT) if transform_input else (tuple(t.mean), tuple(t.std))
    return {"image_size": crop, "crop_pct": crop_fraction(crop, resize), "resize_size": resize,
            "interpolation": str(t.interpolation.value),
            "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}}


# -- the import --------------------------------------------------------------------------------------------
def import_torchvision(model: str, path: str | Path, weights: str | None = None) -> tuple[dict, dict]:
    """(checkpoint, summary) of a torchvision state_dict file for cnnbench model `model`."""
    from cnnbench.models import create_model
    from cnnbench.training.module import apply_bn_overrides, model_kwargs

    spec = entry(model)
    path = Path(path)
    sd = read_state_dict(path)
    where = f"{path.name} as torchvision's {spec.torchvision}"
    fold_biases(sd, spec.folds, where)
    classifier = sd.get(spec.classifier)
    num_classes = int(classifier.shape[0]) if classifier is not None and classifier.ndim == 2 else 1000
    options = spec.options(sd)
    model_cfg = {"name": model, "compile": False, **options}
    net = create_model(model, num_classes=num_classes, in_chans=3, **model_kwargs(model_cfg))
    apply_bn_overrides(net, model_cfg)
    state = convert(sd, spec.pairs(sd, net), net.state_dict(), where)
    net.load_state_dict(state, strict=True)
    chosen, how = pick_weights(spec.torchvision, path, weights)
    prep = preprocessing(chosen, spec.transform_input)
    categories = list(chosen.meta.get("categories") or [])
    classes = categories if len(categories) == num_classes else [f"class_{i}" for i in range(num_classes)]
    record = {
        "model": model_cfg,
        "num_classes": num_classes,
        "in_chans": 3,
        "classes": classes,
        "normalization": prep["normalization"],
        "image_size": prep["image_size"],
        "crop_pct": prep["crop_pct"],
        "data": "imagenet" if classes is categories else "",
        "pretrained": {"source": "torchvision", "torchvision_model": spec.torchvision, "weights": chosen.name,
                       "weights_from": how, "file": str(path.absolute()), "resize_size": prep["resize_size"],
                       "interpolation": prep["interpolation"]},
    }
    ckpt = {"state_dict": {f"model.{k}": v for k, v in state.items()}, "cnnbench": record}
    summary = {"model": model, "torchvision_model": spec.torchvision, "options": options, "note": spec.note,
               "weights": chosen.name, "weights_from": how, "num_classes": num_classes,
               "imagenet_classes": classes is categories, "tensors": len(state),
               "params": sum(p.numel() for p in net.parameters()), **{k: v for k, v in prep.items()}}
    return ckpt, summary


def save(ckpt: dict, out: str | Path) -> Path:
    """Write atomically (cnnbench.checkpoint's writer); loadable with weights_only=True."""
    from cnnbench.checkpoint import AtomicCheckpointIO

    out = Path(out)
    AtomicCheckpointIO().save_checkpoint(ckpt, out)
    return out
