"""What distinguishes one training run of a sweep from the others: its overrides, label and seed."""
from __future__ import annotations

import json
from pathlib import Path

from cnnbench.overrides import is_deletion, override_key, split_override

# keys that do not tell a sweep's arms apart (a run's folder, its seed, how it shows progress)
IGNORED_KEYS = ("experiment", "run_name", "trainer.enable_progress_bar", "seed")


def hydra_overrides(run: Path) -> list[str] | None:
    """The run's command-line overrides as typed, all of them, in order (Hydra's .hydra/overrides.yaml), or None
    where the run has no such file (an artifact)."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def run_overrides(run: Path) -> list[str]:
    """The overrides that distinguish a run's arm within its sweep (from Hydra's .hydra/overrides.yaml);
    `seed=` is left out: runs that differ only in their seed are one arm (cnnbench/analysis/seeds.py)."""
    return [o for o in hydra_overrides(run) or []
            if override_key(o) not in IGNORED_KEYS and not override_key(o).startswith("hydra.")]


def run_label(run: Path, fallback: str) -> str:
    """`model=inception_v4 model.aux_logits=false` → `inception_v4 aux_logits=false`: the model first, then
    the other overrides sorted, so a sweep's job and the same run typed by hand get the same label."""
    models, parts = [], []
    for o in run_overrides(run):
        key, value = split_override(o)
        (models if key == "model" else parts).append(value if key == "model" else f"{key.split('.')[-1]}={value}")
    return " ".join(models + sorted(parts)) or fallback


def run_seed(run: Path) -> int | None:
    """The run's seed: results.json's `seed`, else the composed config's (.hydra/config.yaml)."""
    results = run / "results.json"
    if results.is_file():
        seed = json.loads(results.read_text()).get("seed")
        if seed is not None:
            return int(seed)
    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        seed = OmegaConf.load(config).get("seed")
        return int(seed) if seed is not None else None
    return None


# -- labels for a report: the settings that differ between the runs ------------------------------------------------
# keys that name where a run went or how it printed, not what it trained: never part of a label
NOT_SETTINGS = ("hydra", "run_dir", "run_name", "task", "ckpt_path", "resume", "trainer.enable_progress_bar")
RESULT_SETTINGS = ("model", "data", "seed", "lr_base", "global_batch", "epochs")


def canonical(value: object) -> str:
    """One spelling per value: `1e-1`, `0.10` and 0.1 → `0.1`; `True` → `true`."""
    text = str(value)
    if text.startswith(("[", "{")):
        return text.replace(" ", "")
    if text in ("True", "False"):
        return text.lower()
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        return repr(float(text))
    except ValueError:
        return text


def _is_setting(key: str, value: object) -> bool:
    """Not a bookkeeping key, and not a file path (a path names where a run went, not what it did)."""
    if key.split(".")[0].split("/")[0] in NOT_SETTINGS or key in NOT_SETTINGS:
        return False
    return not (isinstance(value, str) and value.startswith(("/", "~", "./", "../")))


def _load_yaml(path: Path):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else None
    except Exception:  # noqa: BLE001 (a damaged file is a run without a record)
        return None


def recorded_overrides(run: Path) -> dict[str, str] | None:
    """Every override the run was started with (.hydra/overrides.yaml) as key → value, `+`/`++` dropped;
    None when the run has no such file."""
    items = _load_yaml(run / ".hydra" / "overrides.yaml")
    if not isinstance(items, list):
        return None
    out = {}
    for item in items:
        key, value = split_override(item)
        out[key] = "null" if is_deletion(item) else value
    return {k: v for k, v in out.items() if _is_setting(k, v)}


def composed_config(run: Path) -> dict | None:
    """The run's composed config (.hydra/config.yaml) as nested containers, interpolations unresolved; None
    without the file (or with a damaged one)."""
    config = _load_yaml(run / ".hydra" / "config.yaml")
    return config if isinstance(config, dict) else None


def flat_config(run: Path) -> dict[str, str] | None:
    """The run's composed config (.hydra/config.yaml) as dotted key → value; None without the file."""
    config = composed_config(run)
    return flatten(config) if config is not None else None


def flatten(config: dict) -> dict[str, str]:
    """A nested config as dotted key → value (as text), bookkeeping keys and file paths left out."""
    out: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif _is_setting(prefix, node):
            out[prefix] = str(node)

    walk(config, "")
    return out


def recorded_results(run: Path) -> dict[str, str] | None:
    """model, data, seed, lr_base … from results.json (or eval.json); None when neither is readable."""
    for name in ("results.json", "eval.json"):
        try:
            data = json.loads((run / name).read_text())
        except (OSError, ValueError):
            continue
        return {k: str(data[k]) for k in RESULT_SETTINGS if data.get(k) is not None}
    return None


def differing_keys(settings: list[dict[str, str]]) -> list[str]:
    """The keys whose value is not the same in every run (a key one run lacks differs), sorted."""
    keys = sorted(set().union(*settings)) if settings else []
    return [k for k in keys if len({canonical(s[k]) if k in s else None for s in settings}) > 1]


def _override_settings(runs: list[Path]) -> list[dict[str, str]] | None:
    """Per run, the value of every key that some run overrode: its own override, else its composed config's value
    (`model` → `model.name`); None when no run recorded its overrides."""
    overrides = [recorded_overrides(r) for r in runs]
    if all(o is None for o in overrides):
        return None
    keys = set().union(*(o or {} for o in overrides))
    settings = []
    for run, own in zip(runs, overrides, strict=True):
        config = flat_config(run) or {}
        values = {k: (own or {}).get(k, config.get(k, config.get(f"{k}.name"))) for k in keys}
        settings.append({k: v for k, v in values.items() if v is not None})
    return settings


def compared_settings(runs: list[Path]) -> tuple[list[dict[str, str]], list[str]]:
    """The keys whose values differ between the runs, sorted, and per run its value of each (a key the run has
    no value for left out), from the best record every run has: the recorded overrides, else the composed
    configs, else results.json's model, data, seed, lr_base …; ([{}, …], []) when nothing differs."""
    candidates = [_override_settings(runs), [flat_config(r) for r in runs], [recorded_results(r) for r in runs]]
    for settings in candidates:
        if settings is not None and all(s is not None for s in settings):
            keys = differing_keys(settings)
            if keys:
                return [{k: canonical(s[k]) for k in keys if k in s} for s in settings], keys
    return [{} for _ in runs], []


def run_labels(settings: list[dict[str, str]], fallbacks: list[str]) -> list[str]:
    """A label per run from its `compared_settings`: `optimizer.lr=0.05 seed=43` (the keys sorted); the fallback
    (the run dir's name) for a run without any; a repeated label gets its fallback in parentheses, so that
    every label is unique."""
    labels = [" ".join(f"{k}={v}" for k, v in s.items()) or fallback
              for s, fallback in zip(settings, fallbacks, strict=True)]
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label} ({fallback})" if label in repeated and label != fallback else label
            for label, fallback in zip(labels, fallbacks, strict=True)]
