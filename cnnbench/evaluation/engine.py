"""The evaluation engine shared by `eval` and `predict`.

- `ViewPlan`: which views one network sees of an image (a single center view, a multi-crop
  protocol, whole images at several scales, or several of these averaged — VGG's dense +
  multi-crop), with every size scaled by image_size / reference (224, or 299 for Inception).
- `ViewDataset`: builds the views in the DataLoader workers (uint8 tensors, grouped by shape).
- `Scorer.run`: runs every checkpoint on the views in chunks of at most `crop_batch`, averages
  views (`aggregate_views`), protocol parts and models (`average`), and yields probabilities.
"""
from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnbench.checkpoint import load_checkpoint, module_from_loaded, record_of
from cnnbench.data.transforms import eval_transform
from cnnbench.errors import UserError
from cnnbench.evaluation.aggregate import aggregate_views, average
from cnnbench.evaluation.choices import AGGREGATES, CROP_CHOICES, MODES, TWELVE, WEIGHTS
from cnnbench.evaluation.crops import default_scales, extract, protocol_views, shifted_crops, whole_views
from cnnbench.models import model_info


def reference_size(model_name: str) -> int:
    """The resolution the papers' crop and scale numbers refer to: 299 for the Inception models
    (native input 299), 224 for everything else."""
    return 299 if model_info(model_name).input_size == 299 else 224


# -- checkpoints -------------------------------------------------------------------------------------
@dataclass
class Member:
    """One checkpoint of an evaluation (an ensemble has several)."""

    path: str
    module: torch.nn.Module
    record: dict[str, Any]
    weights: str  # which weights were loaded: "averaged", "raw", or "plain" (no weight averaging in the run)
    dense: torch.nn.Module | None = None  # VGG's fully-convolutional form, when used
    plan: int = 0

    @property
    def name(self) -> str:
        return self.record["model"]["name"]


def load_member(path: str, weights: str = "averaged") -> Member:
    """Rebuild a checkpoint's module with its averaged (`state_dict`) or raw weights.

    Lightning's WeightAveraging callback stores the averaged weights in `state_dict` and the
    current (raw) ones in `current_model_state`; checkpoints of runs without it hold one set.
    """
    if weights not in WEIGHTS:
        raise UserError(f"eval.weights={weights!r}; valid choices: {', '.join(WEIGHTS)}")
    ckpt = load_checkpoint(path)
    record = record_of(ckpt, path)
    averaged = "current_model_state" in ckpt
    state_key = "current_model_state" if (weights == "raw" and averaged) else "state_dict"
    module = module_from_loaded(ckpt, record, path, state_key)
    used = ("raw" if weights == "raw" else "averaged") if averaged else "plain"
    return Member(path=str(path), module=module, record=record, weights=used)


def check_ensemble(members: Sequence[Member]) -> None:
    first = members[0]
    for m in members[1:]:
        if m.record["classes"] != first.record["classes"]:
            raise UserError(f"ensemble members disagree on the classes: {first.path} has "
                            f"{len(first.record['classes'])} ({first.record['classes'][:3]}…), {m.path} has "
                            f"{len(m.record['classes'])} ({m.record['classes'][:3]}…)")


# -- views ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewPlan:
    """The views of one input geometry. Parts are averaged with equal weight."""

    image_size: int
    crop_pct: float
    native_size: int | None  # fixed-size datasets: the single view is a plain resize
    reference: int
    crops: int = 1
    mode: str = "crops"
    scales: tuple[int, ...] | None = None  # short sides at the reference resolution
    flip: bool = True
    twelve: str = "one_square"
    gray: bool = False  # convert colour input to gray first (networks trained on gray images)
    shift_pad: int = 0  # > 0: eval.views=train on a pad-crop checkpoint — the shifted crops of the single view
    shift_flip: bool = False  # … and their mirrors (the training flipped)

    @property
    def factor(self) -> float:
        return self.image_size / self.reference

    def px(self, s: float) -> int:
        return max(1, int(round(s * self.factor)))

    def reference_scales(self) -> tuple[int, ...]:
        if self.scales:
            return tuple(int(s) for s in self.scales)
        defaults = default_scales(self.crops, self.mode, self.twelve)
        return tuple(int(round(s * self.reference / 224)) for s in defaults)

    def pixel_scales(self) -> tuple[int, ...]:
        return tuple(self.px(s) for s in self.reference_scales())

    def parts(self) -> list[str]:
        """'single' (center view), 'crops' (a protocol) and/or 'whole' (fully-convolutional); 'shifted' (the
        training geometry's shifted crops) alone."""
        if self.shift_pad:
            return ["shifted"]
        parts = []
        if self.mode in ("multiscale", "dense"):
            parts.append("whole")
            if self.crops > 1:
                parts.append("crops")
        else:
            parts.append("single" if self.crops == 1 else "crops")
        return parts

    def validate(self, min_input_size: int) -> None:
        scales = self.pixel_scales()
        if "crops" in self.parts() or "whole" in self.parts():
            smallest = min(scales)
            if "crops" in self.parts() and smallest < self.image_size:
                raise UserError(
                    f"eval.scales={list(self.reference_scales())}: short side {smallest} px is smaller than the "
                    f"{self.image_size} px crop (scales are at the {self.reference} px reference and multiplied by "
                    f"image_size/{self.reference}); use scales ≥ {self.reference}")
            if "whole" in self.parts() and smallest < min_input_size:
                raise UserError(f"eval.scales={list(self.reference_scales())}: short side {smallest} px is below "
                                f"the model's minimum input size {min_input_size}")

    def views_per_image(self) -> int:
        n = 0
        for part in self.parts():
            if part == "single":
                n += 1
            elif part == "shifted":
                n += 9 * (2 if self.shift_flip else 1)
            elif part == "crops":
                s = max(self.pixel_scales())
                n += len(protocol_views(self.crops, (s, s), self.image_size, self.pixel_scales(), self.flip,
                                        self.twelve))
            else:
                n += len(whole_views(self.pixel_scales(), self.flip))
        return n

    def cost_per_image(self) -> float:
        """Views per image, whole-image views weighted by their area in crops (memory sizing)."""
        n = 0.0
        for part in self.parts():
            if part == "whole":
                n += sum((s / self.image_size) ** 2 * 4 / 3 for s in self.pixel_scales()) * (2 if self.flip else 1)
            elif part == "single":
                n += 1
            elif part == "shifted":
                n += self.views_per_image()
            else:
                n += self.views_per_image() - (len(whole_views(self.pixel_scales(), self.flip))
                                               if "whole" in self.parts() else 0)
        return n

    def build(self, image: np.ndarray) -> list[tuple[int, torch.Tensor]]:
        """(part index, uint8 tensor (V, C, h, w)) groups of one HWC image."""
        if image.ndim == 2:
            image = image[..., None]
        if self.gray and image.shape[2] == 3:
            image = np.round(image.mean(axis=2, keepdims=True)).astype(np.uint8)
        groups: list[tuple[int, torch.Tensor]] = []
        for p, part in enumerate(self.parts()):
            if part in ("single", "shifted"):
                out = _single_view(self.image_size, self.native_size, self.crop_pct)(image=image)["image"]
                arrays = [out[..., None] if out.ndim == 2 else out]
                if part == "shifted":
                    arrays = shifted_crops(arrays[0], self.shift_pad, self.shift_flip)
            elif part == "crops":
                views = protocol_views(self.crops, image.shape[:2], self.image_size, self.pixel_scales(),
                                       self.flip, self.twelve)
                arrays = extract(image, views)
            else:
                arrays = extract(image, whole_views(self.pixel_scales(), self.flip))
            by_shape: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
            for a in arrays:
                by_shape[a.shape].append(a)
            for same in by_shape.values():
                groups.append((p, torch.from_numpy(np.stack(same).transpose(0, 3, 1, 2).copy())))
        return groups


@functools.lru_cache(maxsize=16)
def _single_view(image_size: int, native_size: int | None, crop_pct: float):
    return eval_transform(image_size, native_size, crop_pct)


def make_plan(cfg_eval: Any, crops: int, record: dict[str, Any], image_size: int, native_size: int | None,
              gray: bool = False) -> ViewPlan:
    """A member's plan from the `eval` config node and its checkpoint record."""
    mode = str(cfg_eval.get("mode", "crops"))
    if mode not in MODES:
        raise UserError(f"eval.mode={mode!r}; valid choices: {', '.join(MODES)}")
    if crops not in CROP_CHOICES:
        raise UserError(f"crops={crops!r}; valid choices: {', '.join(map(str, CROP_CHOICES))}")
    twelve = str(cfg_eval.get("twelve", "one_square"))
    if twelve not in TWELVE:
        raise UserError(f"eval.twelve={twelve!r}; valid choices: {', '.join(TWELVE)}")
    scales = cfg_eval.get("scales")
    if scales is not None:
        try:
            scales = tuple(int(s) for s in (scales if not isinstance(scales, (int, float)) else [scales]))
        except (TypeError, ValueError):
            raise UserError(f"eval.scales={scales!r}; give a list of short sides, e.g. eval.scales=[256,384,512]") from None
        if not scales or min(scales) <= 0:
            raise UserError(f"eval.scales={list(scales)}; give positive short sides, e.g. [256,384,512]")
    name = record["model"]["name"]
    shift_pad, shift_flip = 0, False
    if str(cfg_eval.get("views", "protocol")) == "train":
        crops, mode, shift_pad, shift_flip = train_views(record, crops, mode)
    plan = ViewPlan(image_size=int(image_size), crop_pct=float(record.get("crop_pct", 1.0)), native_size=native_size,
                    reference=reference_size(name), crops=int(crops), mode=mode, scales=scales,
                    flip=bool(cfg_eval.get("flip", True)), twelve=twelve, gray=gray, shift_pad=shift_pad,
                    shift_flip=shift_flip)
    plan.validate(model_info(name).min_input_size)
    return plan


def train_views(record: dict[str, Any], crops: int, mode: str) -> tuple[int, str, int, bool]:
    """`eval.views=train`: (crops, mode, shift pad, shift flip) from the checkpoint's training geometry —
    pad-crop: the shifted crops of the padded image (and mirrors); scale augmentation: the protocol asked for;
    no augmentation: the single view."""
    geometry = record.get("augmentation")
    if not geometry:
        raise UserError("eval.views=train needs the training augmentation recorded in the checkpoint, and this one "
                        "has none (trained before cnnbench recorded it); use eval.views=protocol")
    if geometry["kind"] == "pad_crop":
        return 1, "crops", max(1, int(geometry["pad"])), bool(geometry["hflip"])
    if geometry["kind"] == "none":
        return 1, "crops", 0, False
    return crops, mode, 0, False


def protocol_note(cfg_eval: Any, crops: int, record: dict[str, Any]) -> str | None:
    """One line when a multi-scale/multi-crop protocol meets a checkpoint trained without scale augmentation
    (the papers' protocols assume scale-augmented training), naming `eval.views=train`."""
    geometry = record.get("augmentation")
    multi = int(crops) > 1 or str(cfg_eval.get("mode", "crops")) != "crops"
    if not multi or not geometry or geometry["kind"] == "scale" or str(cfg_eval.get("views")) == "train":
        return None
    trained = (f"{geometry['name']} (pad {geometry['pad']} px)" if geometry["kind"] == "pad_crop"
               else "no augmentation")
    return (f"this checkpoint was trained at {geometry['input_size']} px with {trained}, without scale "
            f"augmentation; the papers' multi-crop and multi-scale views assume scale-augmented training and may "
            f"lower its accuracy — eval.views=train uses views from its training geometry instead")


def plan_members(members: Sequence[Member], plan_of) -> list[ViewPlan]:
    """The distinct view plans of an ensemble: `plan_of(member)` builds a member's plan, dense parts are
    attached, and `member.plan` becomes the index of its plan in the returned list (equal plans shared)."""
    plans: list[ViewPlan] = []
    keys: dict[ViewPlan, int] = {}
    for m in members:
        plan = plan_of(m)
        attach_dense(m, plan)
        if plan not in keys:
            keys[plan] = len(plans)
            plans.append(plan)
        m.plan = keys[plan]
    return plans


def attach_dense(member: Member, plan: ViewPlan) -> None:
    """Whole-image parts of VGG-style networks (fixed FC layers) run their fully-convolutional form."""
    if "whole" not in plan.parts():
        return
    net = member.module.model
    convertible = hasattr(net, "to_fully_convolutional")
    if plan.mode == "dense" and not convertible:
        raise UserError(f"eval.mode=dense needs a network with FC layers to convert (VGG: vgg11, vgg13, vgg16, "
                        f"vgg19, …); {member.name} is already fully convolutional: use eval.mode=multiscale")
    if convertible:
        if plan.image_size // 32 != 7:
            raise UserError(f"eval.mode={plan.mode} with {member.name} needs a checkpoint trained at 224 px (FC1 "
                            f"then sees a 7×7 map, VGG §3.2); this one has image_size {plan.image_size}: use "
                            "eval.mode=crops")
        if min(plan.pixel_scales()) < plan.image_size:
            raise UserError(f"eval.scales={list(plan.reference_scales())}: dense evaluation needs short sides of at "
                            f"least {plan.image_size} px (the FC1 window)")
        member.dense = net.to_fully_convolutional(spatial_average=True).eval()


class SplitReader:
    """Picklable (image, label) access to a data split (in-memory arrays or files)."""

    def __init__(self, split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __call__(self, i: int) -> tuple[np.ndarray, int]:
        from cnnbench.data.image_io import load_image_file

        if self.split.images is not None:
            return self.split.images[i], int(self.split.labels[i])
        path, label = self.split.files[i]
        return load_image_file(path), int(label)


class FileReader:
    """Images from a list of files, label -1; unreadable files give None (reported by the caller)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, i: int) -> tuple[np.ndarray | None, int]:
        from cnnbench.data.image_io import load_image_file

        try:
            return load_image_file(self.paths[i]), -1
        except Exception:  # noqa: BLE001 - PIL raises many types for broken files
            return None, -1


class ViewDataset(Dataset):
    """Item i: ([(plan index, part index, uint8 views)], label, index); runs in loader workers."""

    def __init__(self, reader: Callable[[int], tuple[np.ndarray | None, int]], n: int,
                 plans: Sequence[ViewPlan]) -> None:
        self.reader, self.n, self.plans = reader, n, list(plans)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image, label = self.reader(i)
        if image is None:
            return [], label, i
        return [(g, p, t) for g, plan in enumerate(self.plans) for p, t in plan.build(image)], label, i


def collate_views(items):
    """A loader batch of `ViewDataset` items: (per-image view groups, labels, indices)."""
    groups, labels, index = zip(*items, strict=True)
    return list(groups), torch.tensor(labels, dtype=torch.long), list(index)


def view_loader(dataset: ViewDataset, plans: Sequence[ViewPlan], batch_size: int, crop_batch: int,
                num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Images per batch = min(batch_size, crop_batch / views per image), at least 1: a batch holds
    about `crop_batch` views, whatever the protocol."""
    from cnnbench.data.loading import limit_worker_threads as _limit_worker_threads

    cost = sum(p.cost_per_image() for p in plans)
    images = max(1, min(int(batch_size), int(crop_batch // max(cost, 1.0))))
    return DataLoader(dataset, batch_size=images, shuffle=False, num_workers=int(num_workers),
                      collate_fn=collate_views, pin_memory=pin_memory, worker_init_fn=_limit_worker_threads)


# -- scoring -------------------------------------------------------------------------------------------
@dataclass
class Scorer:
    members: list[Member]
    plans: list[ViewPlan]
    aggregate: str = "softmax_mean"
    crop_batch: int = 256
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "32-true"

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise UserError(f"eval.aggregate={self.aggregate!r}; valid choices: {', '.join(AGGREGATES)}")
        if int(self.crop_batch) < 1:
            raise UserError(f"eval.crop_batch={self.crop_batch}; it must be a positive number of views")
        for m in self.members:
            m.module.to(self.device)
            if m.dense is not None:
                m.dense.to(self.device)

    def _autocast(self):
        if self.device.type == "cuda" and str(self.precision).startswith("bf16"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, member: Member, part: str, x: torch.Tensor) -> torch.Tensor:
        if part == "whole" and member.dense is not None:
            return member.dense(member.module.prepare(x))
        return member.module(x)

    @torch.inference_mode()
    def score(self, groups: list[list[tuple[int, int, torch.Tensor]]]) -> tuple[torch.Tensor, list[bool]]:
        """Probabilities (images, classes) of one loader batch; images without views get zeros and
        `ok` False."""
        pending: dict[tuple, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for img, image_groups in enumerate(groups):
            for g, p, t in image_groups:
                pending[(g, p, tuple(t.shape[1:]))].append((img, t))
        scores: dict[tuple[int, int, int], list[torch.Tensor]] = defaultdict(list)
        for (g, p, _), entries in pending.items():
            x = torch.cat([t for _, t in entries])
            part = self.plans[g].parts()[p]
            for mi, member in enumerate(self.members):
                if member.plan != g:
                    continue
                outs = []
                with self._autocast():
                    for chunk in x.split(int(self.crop_batch)):
                        outs.append(self._forward(member, part, chunk.to(self.device, non_blocking=True)).float())
                out = torch.cat(outs).cpu()
                for (img, _), o in zip(entries, out.split([len(t) for _, t in entries]), strict=True):
                    scores[(mi, img, p)].append(o)
        n_classes = self.members[0].record["num_classes"]
        probs = torch.zeros(len(groups), n_classes)
        ok = [bool(gr) for gr in groups]
        for img in range(len(groups)):
            if not ok[img]:
                continue
            per_model = []
            for mi, member in enumerate(self.members):
                parts = [aggregate_views(torch.cat(scores[(mi, img, p)]), self.aggregate)
                         for p in range(len(self.plans[member.plan].parts()))]
                per_model.append(average(parts))
            probs[img] = average(per_model)
        return probs, ok

    def run(self, loader: DataLoader, progress: bool = True, desc: str = "eval") -> Iterator[tuple]:
        """Yield (probabilities, labels, indices, ok) per loader batch, with progress (a bar on a terminal, a
        line every 30 s under a pipe)."""
        from cnnbench.progress import counter

        bar = counter(len(loader.dataset), desc, unit="img", disable=not progress)
        try:
            for groups, labels, index in loader:
                probs, ok = self.score(groups)
                bar.update(len(index))
                yield probs, labels, index, ok
        finally:
            bar.close()


def load_ensemble(paths: Sequence[str], weights: str = "averaged") -> list[Member]:
    """The checkpoints of an ensemble (one path: a single network), checked to fit together."""
    members = [load_member(p, weights) for p in paths]
    check_ensemble(members)
    return members


def scoring(cfg: Any, members: Sequence[Member], plans: Sequence[ViewPlan], reader, n: int, batch_size: int,
            num_workers: int, precision: str = "32-true", pin_memory: bool | None = None) -> tuple[Scorer, DataLoader]:
    """The `Scorer` of an ensemble on the device of cfg (`eval.aggregate`, `eval.crop_batch`) and the loader
    of the views of `reader`'s n images; `pin_memory=None` pins when the device is a GPU."""
    ev = cfg.eval
    device = pick_device(cfg)
    scorer = Scorer(list(members), list(plans), aggregate=str(ev.get("aggregate", "softmax_mean")),
                    crop_batch=int(ev.get("crop_batch", 256)), device=device, precision=precision)
    loader = view_loader(ViewDataset(reader, n, plans), plans, batch_size=batch_size, crop_batch=scorer.crop_batch,
                         num_workers=num_workers, pin_memory=device.type == "cuda" if pin_memory is None else pin_memory)
    return scorer, loader


def pick_device(cfg: Any) -> torch.device:
    """The accelerator of the `hardware` group: a GPU when asked for (or auto) and visible, else the CPU."""
    accel = str(cfg.get("trainer", {}).get("accelerator", "auto"))
    if accel in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
