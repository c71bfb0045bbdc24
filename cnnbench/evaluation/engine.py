"""The evaluation engine shared by `eval` and `predict`.

- `ViewPlan` (evaluation/plan.py): which views one network sees of an image; `plan_members` gives each
  member of an ensemble its plan (VGG's dense form attached).
- `ViewDataset`: builds the views in the DataLoader workers (uint8 tensors, grouped by shape).
- `Scorer.run`: runs every checkpoint on the views in chunks of at most `crop_batch`, averages
  views (`aggregate_views`), protocol parts and models (`average`), and yields probabilities.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnbench.checkpoint import load_checkpoint, module_from_loaded, record_of
from cnnbench.errors import UserError
from cnnbench.evaluation.aggregate import aggregate_views, average
from cnnbench.evaluation.plan import ViewPlan


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
    from cnnbench.data.loading import init_loader_worker as _init_loader_worker

    cost = sum(p.cost_per_image() for p in plans)
    images = max(1, min(int(batch_size), int(crop_batch // max(cost, 1.0))))
    return DataLoader(dataset, batch_size=images, shuffle=False, num_workers=int(num_workers),
                      collate_fn=collate_views, pin_memory=pin_memory, worker_init_fn=_init_loader_worker)


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

    def forward(self, member: Member, part: str, x: torch.Tensor) -> torch.Tensor:
        """One member's logits for a batch of uint8 views of one plan part (VGG's dense form for whole images),
        under bf16 autocast where `trainer.precision` asks for it on a GPU."""
        with self._autocast():
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
                outs = [self.forward(member, part, chunk.to(self.device, non_blocking=True)).float()
                        for chunk in x.split(int(self.crop_batch))]
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
