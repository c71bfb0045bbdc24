"""What an evaluation will cost, said before it runs: views per image × images = forward passes, and the time
estimated from one timed batch, with the cheaper alternatives (docs/evaluation.md, "What it costs")."""
from __future__ import annotations

import time
from typing import Any

from cnnbench.progress import duration

PROBE_VIEWS = 16  # views forwarded to time the network: a fraction of any real run's work


def seconds_per_image(scorer: Any, dataset: Any, views_per_image: int) -> float:
    """Estimated seconds per image, from a small probe rather than a batch of the real run: the views of the
    first images (as many as give `PROBE_VIEWS` views) are built in this process and timed, then each view
    group's network forward is timed on at most `PROBE_VIEWS` of its views (after one untimed pass) and
    scaled to the group's size. Forward passes in batches of `eval.crop_batch` run faster per view than the
    probe's, so the estimate leans long."""
    import torch

    from cnnbench.evaluation.engine import collate_views

    n = min(len(dataset), max(1, -(-PROBE_VIEWS // max(1, views_per_image))))
    start = time.perf_counter()
    groups, _, _ = collate_views([dataset[i] for i in range(n)])
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        for image_groups in groups:
            for g, p, views in image_groups:
                seconds += _forward_seconds(scorer, g, p, views)
    return seconds / n


def _forward_seconds(scorer: Any, g: int, p: int, views) -> float:
    """Seconds for the members that score view group `g` (plan part `p`) to forward all of `views`."""
    probe, part = views[:PROBE_VIEWS].to(scorer.device), scorer.plans[g].parts()[p]
    total = 0.0
    for member in (m for m in scorer.members if m.plan == g):
        scorer.forward(member, part, probe)  # one-time set-up for this shape (kernels, caches)
        start = time.perf_counter()
        scorer.forward(member, part, probe)
        total += (time.perf_counter() - start) * len(views) / len(probe)
    return total


def cheaper(crops: int, views: str, n_images: int, split: str) -> list[tuple[str, float | None]]:
    """(override, share of this run's forward passes; None: one view per image) for the cheaper runs worth naming."""
    options: list[tuple[str, float | None]] = []
    if n_images > 1000:
        options.append((f"data.limit_{split}=1000", 1000 / n_images))
    if views == "protocol" and crops > 10:
        options.append(("crops=10", 10 / crops))
    if views == "train" or crops > 1:
        options.append(("crops=1" if views == "protocol" else "eval.views=protocol crops=1", None))
    return options


def cost_line(*, views_per_image: int, n_images: int, per_image_s: float, crops: int, views: str, split: str,
              model: str) -> str:
    """One line: the forward passes, the estimated time and the cheaper alternatives with their times."""
    passes = views_per_image * n_images
    total = per_image_s * n_images
    line = (f"cnnbench eval: {views_per_image} view{'s' if views_per_image != 1 else ''}/image × {n_images} "
            f"images = {passes:,} forward passes ({model}); about {duration(total)} here "
            f"(timed on a probe of {PROBE_VIEWS} views)")
    alternatives = []
    for override, share in cheaper(crops, views, n_images, split):
        share = share if share is not None else 1 / views_per_image
        alternatives.append(f"{override} (≈ {duration(total * share)})")
    if alternatives and total >= 60:
        line += "; cheaper: " + ", ".join(alternatives)
    return line
