"""Seeds and the decision rule of the claims (docs/claims.md).

A claim's sweep crosses its arms (the models or settings the paper compares) with `seed=a,b,c`. The runs of
one arm differ only in their seed (weights, data order and the seeded subsets); `arms` groups them and gives
mean and sample standard deviation (n − 1) per metric. `decide` applies the rule every verdict states before its
numbers:

    the paper's direction holds ("reproduced") if the gap between the two arms' means exceeds
    `factor` × the pooled seed standard deviation, sqrt((s_a² + s_b²) / 2), in the paper's direction;
    "contradicted" if it exceeds that in the other direction; otherwise "not resolved at this scale".

With one seed per arm there is no spread: the verdict is "not resolved (one seed)".
An expectation is written `"<arm A> < <arm B>"`: the paper says A's metric (an error) is lower than B's. Each
side is a set of words that must all appear in the arm's label (`resnet56`, `aux_logits=true`,
`residual_scale=0.1 gradient_clip_val=2.0`; case-insensitive), and must match exactly one arm.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

METRICS = ("test_err", "val_err_final", "val_err_mean", "train_err_final", "grad_norm_median")
RULE = ("reproduced if the gap between the arms' mean {metric} exceeds {factor:g}× the pooled seed standard "
        "deviation in the paper's direction; contradicted if it exceeds it the other way; otherwise not resolved")


def stats(values: list[float]) -> dict[str, Any]:
    """n, mean, sample std (None for one value), min, max and the values themselves."""
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "values": values}


def arms(rows: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> dict[str, dict[str, Any]]:
    """{arm label: {"seeds": [...], "runs": [...], metric: stats}} from per-run rows carrying `label` (the
    run's overrides without `seed=`), `seed` and the metrics."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["label"], []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for label, members in sorted(grouped.items()):
        members = sorted(members, key=lambda r: (r.get("seed") is None, r.get("seed")))
        entry: dict[str, Any] = {"seeds": [r.get("seed") for r in members], "runs": [r["run_dir"] for r in members]}
        for m in metrics:
            values = [float(r[m]) for r in members if r.get(m) is not None]
            if values:
                entry[m] = stats(values)
        out[label] = entry
    return out


def match_arm(side: str, labels: list[str]) -> str:
    """The one arm whose label holds every word of `side`."""
    from cnnbench.errors import UserError

    words = side.lower().split()  # Hydra's sweeper writes `true` as `True`: compare case-insensitively
    found = [label for label in labels if all(w in label.lower().split() for w in words)]
    if len(found) != 1:
        raise UserError(f"expect: {side!r} matches {len(found)} arms ({', '.join(found) or 'none'}); "
                        f"arms: {', '.join(labels)}")
    return found[0]


def decide(table: dict[str, dict[str, Any]], expectation: str, metric: str = "test_err",
           factor: float = 2.0) -> dict[str, Any]:
    """The verdict on `"A < B"` (the paper: A's `metric` is lower) by the rule in this module's docstring."""
    from cnnbench.errors import UserError

    if expectation.count("<") != 1:
        raise UserError(f"expect={expectation!r}: write '<arm A> < <arm B>' (the paper: A's {metric} is lower)")
    left, right = (s.strip() for s in expectation.split("<"))
    a, b = match_arm(left, list(table)), match_arm(right, list(table))
    if metric not in table[a] or metric not in table[b]:
        raise UserError(f"expect={expectation!r}: {metric} is missing in arm {a if metric not in table[a] else b!r}")
    sa, sb = table[a][metric], table[b][metric]
    gap = sb["mean"] - sa["mean"]  # > 0: the paper's direction
    entry = {"expectation": expectation, "metric": metric, "lower_per_paper": a, "higher_per_paper": b,
             "gap_in_paper_direction": gap, "seeds": [sa["n"], sb["n"]],
             "rule": RULE.format(metric=metric, factor=factor)}
    if sa["std"] is None or sb["std"] is None:
        return {**entry, "pooled_std": None, "threshold": None, "verdict": "not resolved (one seed)"}
    pooled = math.sqrt((sa["std"] ** 2 + sb["std"] ** 2) / 2)
    threshold = factor * pooled
    verdict = "reproduced" if gap > threshold else "contradicted" if -gap > threshold else "not resolved"
    return {**entry, "pooled_std": pooled, "threshold": threshold, "verdict": verdict}


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float, float, float]]:
    """(iteration, mean, min, max) over the runs, at the iterations every run logged."""
    if not curves:
        return []
    common = set.intersection(*({it for it, _ in c} for c in curves))
    points = [dict(c) for c in curves]
    out = []
    for it in sorted(common):
        values = [p[it] for p in points]
        out.append((it, statistics.fmean(values), min(values), max(values)))
    return out


def arm_curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """{arm label: {"train": mean curve, "val": mean curve}} over the arm's seeds."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["label"], []).append(r)
    return {label: {k: mean_curve([r["curves"][k] for r in members if r["curves"][k]]) for k in ("train", "val")}
            for label, members in grouped.items()}


def format_verdict(v: dict[str, Any]) -> str:
    percent = "_err" in v["metric"]
    pct = lambda x: "—" if x is None else f"{100 * x:.2f}" if percent else f"{x:.4f}"  # noqa: E731
    unit = " points" if percent else ""
    return (f"{v['expectation']}: gap {pct(v['gap_in_paper_direction'])}{unit} in the paper's direction, "
            f"threshold {pct(v['threshold'])} (2× pooled std, seeds {v['seeds'][0]}+{v['seeds'][1]}) → {v['verdict']}")


@dataclass(frozen=True)
class SeedRule:
    """The claims' options of an analysis: the metrics to judge (`metric=`), the paper's expectations
    (`expect=["A < B", …]`) and the rule's factor (`rule_factor=`)."""
    metrics: tuple[str, ...] = ("test_err",)
    expect: tuple[str, ...] = ()
    factor: float = 2.0

    def apply(self, rows: list[dict[str, Any]], metric: str | None = None) -> dict[str, Any]:
        """Per arm (runs that differ only in `seed=`): mean ± std of each metric, printed; then the verdict on
        each expectation by the stated rule, printed. `metric` replaces the configured metrics."""
        metrics = (metric,) if metric else self.metrics
        table = arms(rows, metrics=tuple(dict.fromkeys((*METRICS, *metrics))))
        verdicts = [decide(table, e, m, self.factor) for m in metrics for e in self.expect]
        for m in metrics:
            print_arms(table, m)
        for v in verdicts:
            print(f"cnnbench analyze: {format_verdict(v)}", flush=True)
        return {"metric": metrics[0] if len(metrics) == 1 else list(metrics), "rule_factor": self.factor,
                "arms": table, "verdicts": verdicts}


def print_arms(table: dict[str, Any], metric: str) -> None:
    """One line per arm: its mean ± std of `metric` (errors in %) and its seeds."""
    percent = "_err" in metric

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}" if percent else f"{v:.4f}"

    for label, arm in table.items():
        if metric in arm:
            s = arm[metric]
            print(f"cnnbench analyze: arm {label:<36} {metric} {pct(s['mean'])} ± {pct(s['std'])}"
                  f"{' %' if percent else ''} (seeds {', '.join(str(x) for x in arm['seeds'])})", flush=True)
