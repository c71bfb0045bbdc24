"""`cnnbench import-weights source=torchvision model=<name> path=<.pth> [output=…]`: a torchvision state_dict as
a cnnbench checkpoint (docs/pretrained.md); writes the checkpoint and import-weights.json in the run dir."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnbench.config_paths import find_config
from cnnbench.errors import UserError
from cnnbench.pretrained import import_torchvision, save
from cnnbench.runtime import absolute, resolve_run_dir, write_json


def import_weights(cfg: DictConfig, run_dir=None) -> dict[str, Any]:
    if cfg.get("model") is None:
        raise UserError("model is required: cnnbench import-weights model=resnet50 path=resnet50-0676ba61.pth")
    if cfg.get("path") is None:  # absent, null or missing (???)
        raise UserError("path is required: the torchvision .pth state_dict on disk")
    name = str(cfg.model.name)
    ckpt, summary = import_torchvision(name, absolute(str(cfg.path)), cfg.get("weights"))
    run_dir = resolve_run_dir(run_dir)
    out = Path(absolute(str(cfg.output))) if cfg.get("output") else run_dir / f"{name}-torchvision.ckpt"
    summary["checkpoint"] = str(save(ckpt, out))
    write_json(run_dir / "import-weights.json", summary)
    options = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in summary["options"].items())
    print(f"cnnbench import-weights: torchvision {summary['torchvision_model']} ({summary['weights']} preprocessing: "
          f"{summary['image_size']} px, resize {summary['resize_size']}, crop_pct {summary['crop_pct']}) → "
          f"model={name}{' ' + options if options else ''} → {out}", flush=True)
    if summary["note"]:
        print(f"  {summary['note']}" + (f"; the checkpoint sets {options}" if options else ""), flush=True)
    if not summary["imagenet_classes"]:
        print(f"  {summary['num_classes']} classes (not ImageNet's 1000): named class_0…", flush=True)
    keys = OmegaConf.load(find_config("model", name)).keys()  # others need Hydra's `+`
    overrides = " ".join(f"{'' if k in keys else '+'}model.{k}={str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in summary["options"].items())
    print(f"  eval: cnnbench eval ckpt_path={out} crops=144 data=imagefolder data.root=…; fine-tune: cnnbench train "
          f"model={name}{' ' + overrides if overrides else ''} init_from={out} …", flush=True)
    return summary
