"""The LightningModule: a registered model, its input normalisation, the loss (with aux heads) and metrics."""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from cnnbench.models import create_model, main_logits, model_info
from cnnbench.models.layers import BATCH_NORMS
from cnnbench.training.optim import (
    REPLAYED,
    build_optimizer,
    build_scheduler,
    keep_position_only,
    planned_steps,
    resume_at,
    saved_position,
    saved_schedule_name,
)

# Keys of the model config that are cnnbench settings, not constructor options.
# bn_momentum / bn_eps override every BatchNorm layer after construction (PyTorch momentum = 1 − TF decay).
MODEL_SETTINGS = ("name", "compile", "bn_momentum", "bn_eps")


def apply_bn_overrides(model: torch.nn.Module, model_cfg: dict[str, Any]) -> None:
    momentum, eps = model_cfg.get("bn_momentum"), model_cfg.get("bn_eps")
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            if momentum is not None:
                m.momentum = float(momentum)
            if eps is not None:
                m.eps = float(eps)


def model_kwargs(model_cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model_cfg.items() if k not in MODEL_SETTINGS}


class Normalize(torch.nn.Module):
    """uint8 NCHW → float, channel repeat (gray → RGB) and mean/std (or mean-image) normalisation. The float
    conversion also lays the batch out in `memory_format` (loader batches of the fast path arrive with
    channels-last strides, cnnbench.data.datamodule.collate_images)."""

    def __init__(self, normalization: dict[str, Any], in_chans: int,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.memory_format = memory_format
        mean = torch.tensor(normalization["mean"], dtype=torch.float32)
        std = torch.tensor(normalization["std"], dtype=torch.float32)
        if "mean_image" in normalization:
            mean_image = torch.tensor(normalization["mean_image"], dtype=torch.float32)
        else:
            mean_image = mean.view(-1, 1, 1)
        self.register_buffer("mean", mean_image, persistent=False)
        self.register_buffer("std", std.view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.to(torch.float32, memory_format=self.memory_format).div_(255.0)
        elif not x.is_contiguous(memory_format=self.memory_format):
            x = x.contiguous(memory_format=self.memory_format)
        mean, std = self.mean, self.std
        if mean.shape[-1] not in (1, x.shape[-1]) or mean.shape[-2] not in (1, x.shape[-2]):
            mean = F.interpolate(mean[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        x = (x - mean) / std
        if x.shape[1] != self.in_chans:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_chans, -1, -1)
            elif self.in_chans == 1:
                x = x.mean(dim=1, keepdim=True)
        return x


class ClassificationModule(L.LightningModule):
    """Cross-entropy (label smoothing) + Σ wᵢ·aux-lossᵢ; top-1/top-5 through torchmetrics.

    Every constructor argument is a plain container, so checkpoints load with `weights_only=True`.
    """

    def __init__(
        self,
        model: dict[str, Any],
        num_classes: int,
        in_chans: int,
        normalization: dict[str, Any],
        classes: list[str],
        image_size: int,
        crop_pct: float = 1.0,
        data_name: str = "",
        data_config: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        lr: float | None = None,
        channels_last: bool = False,
        augmentation: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        name = model["name"]
        self.info = model_info(name)
        self.model = create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs(model))
        apply_bn_overrides(self.model, model)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.normalize = Normalize(normalization, in_chans,
                                   torch.channels_last if channels_last else torch.contiguous_format)
        self.channels_last = channels_last
        aux = getattr(self.model, "aux_weights", None)
        self.aux_weights = tuple(aux if aux is not None else self.info.aux_weights)
        self.label_smoothing = float((loss or {}).get("label_smoothing", 0.0))
        self.lr = lr if lr is not None else float((optimizer or {}).get("lr", 0.1))
        top5 = min(5, num_classes)
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self._compiled = bool(model.get("compile", False))
        if self._compiled:
            self.model = torch.compile(self.model)

    # -- forward ---------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the main head for a uint8 (or float in [0, 1]) NCHW batch."""
        return main_logits(self.model(self.prepare(x)))

    def compute_loss(self, output: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = main_logits(output)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if isinstance(output, (tuple, list)) and len(output) > 1:
            for weight, aux in zip(self.aux_weights, output[1:], strict=False):
                loss = loss + weight * F.cross_entropy(aux, y, label_smoothing=self.label_smoothing)
        return loss, logits

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, logits = self.compute_loss(self.model(self.prepare(x)), y)
        # on_step logging stays on the device (no host sync); Lightning reads it every log_every_n_steps.
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        # this batch's top-1 training error (He et al. Fig. 1/6 curves); a device tensor, read like train/loss
        self.log("train/err", (logits.detach().argmax(1) != y).float().mean(), on_step=True, on_epoch=False)
        self.train_loss.update(loss.detach())
        # logits go to callbacks (e.g. the conditional warmup reads the training error from them)
        return {"loss": loss, "logits": logits.detach()}

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute(), sync_dist=False)
        self.train_loss.reset()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=y.numel())
        self.val_acc1.update(logits, y)
        self.val_acc5.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute())
        self.log("val/acc1", self.val_acc1.compute(), prog_bar=True)
        self.log("val/acc5", self.val_acc5.compute())
        for m in (self.val_loss, self.val_acc1, self.val_acc5):
            m.reset()

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.test_acc1.update(logits, y)
        self.test_acc5.update(logits, y)

    def on_test_epoch_end(self) -> None:
        self.log("test/acc1", self.test_acc1.compute())
        self.log("test/acc5", self.test_acc5.compute())
        self.test_acc1.reset()
        self.test_acc5.reset()

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = self.hparams.optimizer or {"name": "sgd", "lr": self.lr}
        optimizer = build_optimizer(self.model, opt_cfg, self.lr)
        schedule = self.hparams.schedule or {"name": "constant"}
        scheduler = self._build_scheduler(optimizer)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if not self.trainer.limit_val_batches:
                from cnnbench.errors import UserError

                raise UserError("schedule=plateau watches val/acc1, but this run has no validation split "
                                "(data.val_split=0); set data.val_split or pick another schedule")
            # stepped after each validation on the monitored metric (val/acc1 ⇔ validation error)
            return {"optimizer": optimizer, "lr_scheduler": {
                "scheduler": scheduler, "interval": "epoch", "frequency": 1,
                "monitor": str(schedule.get("monitor", "val/acc1")), "strict": True, "name": "lr"}}
        # "name": the learning-rate monitor's key, lr (lr/<group> for named parameter groups)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    def _build_scheduler(self, optimizer: torch.optim.Optimizer):
        """This run's schedule on `optimizer`, built for the trainer's total optimizer steps."""
        total = int(self.trainer.estimated_stepping_batches)
        # optimizer steps per epoch from the loader (not total/max_epochs: a run may stop on trainer.max_steps)
        batches = self.trainer.num_training_batches
        accumulate = max(1, int(self.trainer.accumulate_grad_batches))
        if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
            steps_per_epoch = max(1.0, math.ceil(batches / accumulate))
        else:
            steps_per_epoch = total / max(1, int(self.trainer.max_epochs or 1))
        return build_scheduler(optimizer, self.hparams.schedule or {"name": "constant"}, self.lr, total,
                               steps_per_epoch)

    def on_train_start(self) -> None:
        position = getattr(self, "_resume_position", None)
        if position is not None:  # the saved step of a per-step schedule (on_load_checkpoint)
            resume_at(self.trainer.lr_scheduler_configs[0].scheduler, self._build_scheduler, position)
            self._resume_position = None
        planned = getattr(self, "_planned_steps", None)
        now = int(self.trainer.estimated_stepping_batches)
        if planned is not None and planned != now and self.trainer.global_step > 0:
            name = (self.hparams.schedule or {}).get("name", "constant")
            print(f"cnnbench: the {name} schedule of this checkpoint was planned for {planned} steps; rebuilt for "
                  f"{now} steps from step {self.trainer.global_step} (docs/recipes.md, \"Continuing a run\")",
                  flush=True)

    # -- checkpoint contents -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cnnbench"] = checkpoint_record(self.hparams)
        # model.compile=true: store the eager names (no `_orig_mod.`), so checkpoints of compiled and eager
        # runs are interchangeable (resume either way, eval, predict, export)
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = {k.replace("model._orig_mod.", "model.", 1): v
                                        for k, v in checkpoint["state_dict"].items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # runs before Lightning loads the weights and the optimizer/scheduler states
        self._planned_steps = self._resume_position = None
        wanted = (self.hparams.schedule or {}).get("name", "constant")
        for state in checkpoint.get("lr_schedulers") or []:  # the schedule's shape comes from this run's config
            saved = saved_schedule_name(state)
            if saved is not None and saved != wanted and not (saved == "constant" and wanted == "onecycle"):
                from cnnbench.errors import UserError

                raise UserError(f"this checkpoint was trained with schedule={saved}; schedule={wanted} cannot continue "
                                f"it: pass schedule={saved}, or start a new run from its weights with init_from=…")
            self._planned_steps = planned_steps(state)
            if wanted in REPLAYED:  # rebuilt and replayed to the saved step in on_train_start (optim.resume_at)
                self._resume_position = saved_position(state)
            else:
                keep_position_only(state)
        if self._resume_position is not None:
            checkpoint["lr_schedulers"] = []  # nothing for Lightning to load: the replay sets the state
        # map eager names onto a compiled model (and back)
        if "state_dict" in checkpoint:
            eager = {k.replace("model._orig_mod.", "model.", 1): v for k, v in checkpoint["state_dict"].items()}
            if self._compiled:
                eager = {("model._orig_mod." + k[len("model."):]) if k.startswith("model.") else k: v
                         for k, v in eager.items()}
            checkpoint["state_dict"] = eager

    @property
    def model_name(self) -> str:
        return self.hparams.model["name"]


def checkpoint_record(hparams) -> dict[str, Any]:
    """What eval/predict need to rebuild the network: plain values only."""
    return {
        "model": dict(hparams["model"]),
        "num_classes": int(hparams["num_classes"]),
        "in_chans": int(hparams["in_chans"]),
        "classes": list(hparams["classes"]),
        "normalization": dict(hparams["normalization"]),
        "image_size": int(hparams["image_size"]),
        "crop_pct": float(hparams["crop_pct"]),
        "data": hparams["data_name"],
        "data_config": dict(hparams.get("data_config") or {}),  # eval's default data (name, root, split …)
        # the training augmentation's geometry (data.transforms.training_geometry): eval picks views that fit it
        "augmentation": dict(hparams["augmentation"]) if hparams.get("augmentation") else None,
    }
