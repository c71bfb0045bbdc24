"""What an evaluation will cost, said before it runs: views per image × images = forward passes, and the time
estimated from one timed batch, with the cheaper alternatives (docs/evaluation.md, "What it costs")."""
from __future__ import annotations

import time
from typing import Any

from cnnbench.progress import duration

TIMED_S = 1.0        # time batches until this many seconds …
TIMED_BATCHES = 5    # … or this many batches have passed


def seconds_per_image(scorer: Any, dataset: Any, images: int) -> float:
    """Seconds per image of building and scoring `dataset`'s views in this process, in loader-sized batches
    of `images`: one batch untimed (one-time set-up), then batches timed until `TIMED_S` seconds or
    `TIMED_BATCHES` batches have passed (at least one)."""
    from cnnbench.evaluation.engine import collate_views

    n, images = len(dataset), max(1, int(images))
    timed_images, elapsed, batch = 0, 0.0, 0
    while batch <= TIMED_BATCHES and (batch + 1) * images <= max(n, images):
        start = time.perf_counter()
        groups, _, _ = collate_views([dataset[i % n] for i in range(batch * images, (batch + 1) * images)])
        scorer.score(groups)
        if batch > 0 or n <= images:  # the first batch is set-up (unless it is all there is)
            elapsed += time.perf_counter() - start
            timed_images += images
        batch += 1
        if elapsed >= TIMED_S:
            break
    return elapsed / max(timed_images, 1)


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
            f"(timed on the first batch)")
    alternatives = []
    for override, share in cheaper(crops, views, n_images, split):
        share = share if share is not None else 1 / views_per_image
        alternatives.append(f"{override} (≈ {duration(total * share)})")
    if alternatives and total >= 60:
        line += "; cheaper: " + ", ".join(alternatives)
    return line
