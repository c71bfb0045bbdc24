"""Recipe pieces that are not a plain LR schedule: ResNet-110's conditional warmup and `init_from=` fine-tuning."""
from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from cnnbench.errors import ConfigError, UserError

log = logging.getLogger("cnnbench")


class ConditionalWarmup(Callback):
    """He et al. 2015 §4.2 (ResNet-110): train at lr × `lr_factor` (0.01 for base 0.1) until the training error
    drops below `error_below` (80 %, "about 400 iterations"), then at the scheduled LR.

    The factor is applied just before each optimizer step and removed right after it, so the LR scheduler never
    sees it. The training error is the mean over the last `window_steps` batches, averaged over all processes
    (every rank switches at the same step). `max_steps` is a safety stop (null = none)."""

    def __init__(self, lr_factor: float = 0.1, error_below: float = 0.8, window_steps: int = 10,
                 max_steps: int | None = None) -> None:
        self.lr_factor, self.error_below = float(lr_factor), float(error_below)
        self.window = deque(maxlen=max(1, int(window_steps)))
        self.max_steps = int(max_steps) if max_steps else None
        self.active = True
        self.ended_at_step: int | None = None
        self._saved: list[tuple[Any, list[float]]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.active:
            return
        self._saved.append((optimizer, [g["lr"] for g in optimizer.param_groups]))
        for g in optimizer.param_groups:
            g["lr"] = g["lr"] * self.lr_factor

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for optimizer, lrs in self._saved:
            for g, lr in zip(optimizer.param_groups, lrs, strict=True):
                g["lr"] = lr
        self._saved.clear()
        if not self.active or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        y = batch[1]
        err = (outputs["logits"].argmax(dim=1) != y).float().mean()
        err = trainer.strategy.reduce(err, reduce_op="mean")
        self.window.append(float(err))
        done = len(self.window) == self.window.maxlen and sum(self.window) / len(self.window) < self.error_below
        if done or (self.max_steps is not None and trainer.global_step >= self.max_steps):
            self.active = False
            self.ended_at_step = int(trainer.global_step)
            log.info("conditional warmup ended at step %d (training error %.4f)", self.ended_at_step,
                     sum(self.window) / len(self.window))

    def state_dict(self) -> dict[str, Any]:
        return {"active": self.active, "ended_at_step": self.ended_at_step, "window": list(self.window)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.active = bool(state_dict.get("active", True))
        self.ended_at_step = state_dict.get("ended_at_step")
        self.window.clear()
        self.window.extend(state_dict.get("window", []))




def warmup_applies(cfg: dict[str, Any] | None, model_name: str) -> bool:
    """`conditional_warmup.enabled`: true, false, or auto (on for the models listed in `models`)."""
    if not cfg:
        return False
    enabled = cfg.get("enabled", False)
    if enabled == "auto":
        return model_name in list(cfg.get("models") or [])
    return bool(enabled)


def build_recipe_callbacks(cfg) -> list:
    """Callbacks the recipe asks for: EMA (`ema:`) and the conditional warmup (`conditional_warmup:`)."""
    from omegaconf import OmegaConf

    from cnnbench.training.averaging import build_averaging

    def plain(key):
        node = cfg.get(key)
        return OmegaConf.to_container(node, resolve=True) if node is not None else None

    callbacks = build_averaging(plain("ema"))  # a bad ema.* value raises ConfigError (exit 2)
    warm = plain("conditional_warmup")
    if warmup_applies(warm, str(cfg.model.name)):
        callbacks.append(ConditionalWarmup(lr_factor=float(warm.get("lr_factor", 0.1)),
                                           error_below=float(warm.get("error_below", 0.8)),
                                           window_steps=int(warm.get("window_steps", 10)),
                                           max_steps=warm.get("max_steps")))
    return callbacks


def init_from_checkpoint(model: torch.nn.Module, path: str | Path, model_name: str, new_head: bool = True,
                         model_cfg: dict | None = None) -> dict:
    """Fine-tuning start (`init_from=`): copy a checkpoint's weights into `model` (the bare network). The
    checkpoint holds the same model, or (VGG §3.1) net A for a deeper plain VGG: its first four convs and FC layers.

    Takes the checkpoint's `state_dict` — the averaged weights when it was trained with EMA. Classifier layers
    (nn.Linear whose output size is the source's class count; main and aux heads) keep their fresh
    initialisation when `new_head` is true or their shapes differ. Returns what was loaded and skipped."""
    from cnnbench.checkpoint import load_checkpoint, record_of

    ckpt = load_checkpoint(path)
    record = record_of(ckpt, path)
    src_name = record["model"]["name"]
    src = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if src_name != model_name:
        src = _deeper_vgg_from_net_a(src, src_name, model_name, record, model)
        if src is None:
            raise UserError(f"init_from={path}: checkpoint holds {src_name!r}, but model={model_name!r}; "
                            f"use model={src_name}")
    src_classes = int(record["num_classes"])
    heads = {name for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and f"{name}.weight" in src
             and src[f"{name}.weight"].shape[0] == src_classes}
    target = model.state_dict()
    load, skipped = {}, []
    for k, v in src.items():
        head = k.rsplit(".", 1)[0] in heads
        if k in target and target[k].shape == v.shape and not (head and new_head):
            load[k] = v
        else:
            skipped.append(k)
    missing = [k for k in target if k not in load]
    if not load:
        raise UserError(f"init_from={path}: no tensor of the checkpoint fits model={model_name}")
    model.load_state_dict(load, strict=False)
    log.info("init_from %s: loaded %d tensors, new: %s", path, len(load), ", ".join(missing) or "none")
    differ = {k: v for k, v in record["model"].items()
              if model_cfg is not None and k not in ("name", "compile") and model_cfg.get(k) != v}
    if differ:  # e.g. an imported torchvision ResNet-50 (stride_in_1x1=false) fine-tuned as the paper's (true)
        log.warning("init_from %s: the checkpoint's network was built with %s, this run's model differs; pass "
                    "them (%s) to fine-tune the same network", path, differ,
                    " ".join(f"model.{k}={v}" for k, v in differ.items()))
    return {"loaded": sorted(load), "skipped": sorted(skipped), "new": sorted(missing), "options_differ": differ}


def _deeper_vgg_from_net_a(src: dict, src_name: str, model_name: str, record: dict,
                           model: torch.nn.Module) -> dict | None:
    """VGG §3.1: a deeper plain configuration (B–E) starts from a trained net A's first four convs and its three
    FC layers, the rest initialised afresh; `src` renamed to the deeper network's keys, or None where the two
    models are not such a pair."""
    from cnnbench.models.vgg import VGG_MODELS, net_a_keys

    if src_name not in VGG_MODELS or model_name not in VGG_MODELS:
        return None
    batch_norm = bool(record["model"].get("batch_norm")) or any(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    try:
        keys = net_a_keys(VGG_MODELS[src_name][0], VGG_MODELS[model_name][0], batch_norm)
    except ConfigError:
        return None
    return {keys[k]: v for k, v in src.items() if k in keys}


__all__ = ["ConditionalWarmup", "build_recipe_callbacks", "init_from_checkpoint", "warmup_applies"]


def apply_init_from(cfg, module) -> None:
    """Fine-tuning (`init_from=`): weights (averaged when present) from a checkpoint and a new head; a recipe
    that fine-tunes (`recipe.requires_init_from`) refuses to start without one."""
    from omegaconf import OmegaConf

    from cnnbench.runtime import absolute

    if (cfg.get("recipe") or {}).get("requires_init_from") and not cfg.get("init_from"):
        raise UserError("this recipe fine-tunes a trained network: give init_from=<path to a cnnbench .ckpt>")
    if not cfg.get("init_from"):
        return
    if cfg.get("ckpt_path"):
        raise UserError("init_from= and ckpt_path= exclude each other: init_from starts a new run from "
                        "weights, ckpt_path resumes a run")
    init_from_checkpoint(module.model, absolute(str(cfg.init_from)), str(cfg.model.name),
                         new_head=bool(cfg.get("init_new_head", True)),
                         model_cfg=OmegaConf.to_container(cfg.model, resolve=True))
