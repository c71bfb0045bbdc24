"""`cnnbench stylize content=… style=… (ckpt_path=… | weights=…)`: Gatys et al.'s neural style transfer
(cnnbench/stylize.py); writes the PNG (at the content image's size) and a JSON of the loss curve."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnbench.errors import UserError
from cnnbench.evaluation.engine import pick_device
from cnnbench.runtime import absolute, resolve_run_dir, write_json
from cnnbench.stylize import StyleSettings, load_extractor, save_png, stylize_images


def _settings(cfg: DictConfig) -> StyleSettings:
    s = cfg.stylize
    weights = s.get("style_layer_weights")
    return StyleSettings(
        content_layers=tuple(s.content_layers), style_layers=tuple(s.style_layers),
        style_layer_weights=tuple(float(w) for w in weights) if weights is not None else None,
        content_weight=float(s.content_weight), style_weight=float(s.style_weight), steps=int(cfg.steps),
        solver=str(s.solver), lr=None if s.get("lr") is None else float(s.lr), pool=str(s.pool),
        init=str(s.init), seed=int(cfg.seed), progress=bool(cfg.progress))


def stylize(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    for key in ("content", "style"):
        if cfg.get(key) is None:
            raise UserError(f"{key} is required: cnnbench stylize content=photo.jpg style=painting.jpg weights=vgg19.pth")
    settings = _settings(cfg)
    settings.check()
    extractor = load_extractor(absolute(cfg.get("ckpt_path")), absolute(cfg.get("weights")))
    img, curve, size_wh = stylize_images(absolute(str(cfg.content)), absolute(str(cfg.style)), extractor,
                                         int(cfg.size), settings, pick_device(cfg))
    out = Path(absolute(str(cfg.output))) if cfg.get("output") else resolve_run_dir(run_dir) / "stylized.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"output={out} must be a .png file")
    save_png(img, size_wh, out)
    first, final = curve[0]["total"], curve[-1]["total"]
    result = {"output": str(out), "content": str(cfg.content), "style": str(cfg.style), "size": size_wh,
              "working_size": list(img.shape[-2:]), "steps": settings.steps, "solver": settings.solver,
              "loss_first": first, "loss_final": final, "curve": curve,
              "settings": OmegaConf.to_container(cfg.stylize, resolve=True)}
    write_json(out.with_suffix(".json"), result)
    print(f"stylized {Path(str(cfg.content)).name} with {Path(str(cfg.style)).name}: loss {first:.4g} → {final:.4g} "
          f"in {settings.steps} {settings.solver} steps → {out}")
    return result
