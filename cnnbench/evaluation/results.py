"""An evaluation's record (eval.json), its row in the papers' style (eval.md) and its one-line summary."""
from __future__ import annotations

from typing import Any

from cnnbench.evaluation.paper import paper_reference

HEADER = ("| model | data | crops | mode | models | images | top-1 err % | top-5 err % | paper top-1 err % "
          "| paper top-5 err % |\n|---|---|---|---|---|---|---|---|---|---|")


def _pct(v: float | None) -> str:
    return f"{100 * v:.2f}" if v is not None else "—"


def markdown_row(result: dict[str, Any]) -> tuple[str, str]:
    """A header and a row in the papers' style: errors in %, ours beside the paper's."""
    paper = result.get("paper") or {}
    crops = result["crops"] if result.get("views", "protocol") == "protocol" else f"train ({result['views_per_image']})"
    row = (f"| {result['model']} | {result['data']}/{result['split']} | {crops} | {result['mode']} | "
           f"{len(result['models'])} | {result['n_images']} | {_pct(result['top1_err'])} | "
           f"{_pct(result.get('top5_err'))} | {_pct(paper.get('top1_err'))} | {_pct(paper.get('top5_err'))} |")
    return HEADER, row


def eval_record(*, acc1: float, acck: float, k: int, members: list, plans: list, crops: int, views: str,
                scorer, data_name: str, split: str, n_images: int, image_size: int, num_classes: int,
                scoring_s: float, wall_s: float) -> dict[str, Any]:
    """eval.json: accuracies and errors, the protocol (crops, mode, views, scales, views per image), the models,
    the data, the device and the speed; `paper` where `model_info` has the paper's number for this setting."""
    single = plans[0].parts() == ["single"]
    result: dict[str, Any] = {
        "acc1": acc1, f"acc{k}": acck, "top1_err": round(1 - acc1, 6), f"top{k}_err": round(1 - acck, 6),
        "n_images": n_images, "crops": crops, "mode": plans[0].mode, "views": views,
        "scales": None if single else {m.name: list(plans[m.plan].pixel_scales()) for m in members},
        "aggregate": scorer.aggregate,
        # forward passes per image, over all models ("cost" in GoogLeNet Table 3)
        "views_per_image": sum(plans[m.plan].views_per_image() for m in members),
        "models": [m.path for m in members], "model": "+".join(m.name for m in members),
        "weights": [m.weights for m in members], "data": data_name, "split": split, "image_size": image_size,
        "device": str(scorer.device), "images_per_s": round(n_images / max(scoring_s, 1e-9), 2),
        "wall_s": round(wall_s, 2),
    }
    if "acc5" not in result:
        result["acc5"] = None  # fewer than 5 classes
    paper = paper_reference(members[0].name, data_name, num_classes, crops, plans[0].mode,
                            None if single else list(plans[0].reference_scales()), len(members))
    if paper is not None:
        result["paper"] = paper
    return result


def summary_line(result: dict[str, Any], k: int, path) -> str:
    protocol = ("views=train" if result.get("views") == "train"
                else f"crops={result['crops']}, mode={result['mode']}")
    return (f"cnnbench eval: {result['model']} on {result['data']}/{result['split']} ({result['n_images']} images, "
            f"{protocol}, {result['views_per_image']} views/image) — acc1 {result['acc1']:.4f}, "
            f"acc{k} {result[f'acc{k}']:.4f} → {path}")
