"""The Lightning callbacks every training run installs (docs/reliability.md lists each fault they handle):

- `RNGState`: every global RNG in each checkpoint, restored when a run resumes;
- `Preemption`: SIGTERM / SIGUSR1 / SIGUSR2 → finish the batch, write checkpoints/last.ckpt, stop;
- `NonFiniteLoss`: a NaN/Inf loss stops the run (`NonFiniteLossError`) or skips the update;
- `StuckAtChance`: one warning line when training stays at chance (loss ≈ ln K, accuracy ≈ 1/K), naming the
  likely causes for the model and the zoo recipe that trains it (`zoo_recipe`).

The recipe callbacks (weight averaging, conditional warm-up) live in `training/recipe_callbacks.py`.
"""
from __future__ import annotations

import contextlib
import logging
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from cnnbench.analysis.zoo import ZOO_ROWS
from cnnbench.choices import NONFINITE_MODES
from cnnbench.errors import RunStopped
from cnnbench.models.layers import BATCH_NORMS

log = logging.getLogger("cnnbench")


class NonFiniteLossError(RunStopped):
    """A NaN/Inf training loss under `loss.on_nonfinite=stop` (exit code 3)."""


# -- RNG state ---------------------------------------------------------------------------------------
def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def capture_rng() -> dict[str, Any]:
    """Every global RNG as tensors and plain containers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _python_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(Callback):
    """Saves torch/numpy/python (and CUDA) RNG states in every checkpoint and restores them when a
    run resumes, at the start of training (after the loaders exist: they draw from their own
    generator, not the global one)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None



# -- preemption: SIGTERM / SIGUSR1 / SIGUSR2 --------------------------------------------------------------
class Preemption(Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2: finish the current batch, write checkpoints/last.ckpt, stop training.

    The handler only notes the signal; at the end of the running batch the checkpoint is written
    and then the handler that was installed before is called (Lightning's SIGTERM notifier, which
    stops the loops and the other ranks; under SLURM with auto-requeue, Lightning's SIGUSR1
    save-and-requeue handler; under hydra/launcher=submitit_slurm, which asks SLURM for SIGUSR2
    `signal_delay_s` before the time limit, submitit's checkpoint-and-requeue handler). Calling them only after the save keeps the checkpoint at a batch
    boundary. `train` then skips testing and records the stop in results.json."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")

    def __init__(self, ckpt_dir: Path) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.received: str | None = None
        self.saved: str | None = None
        self.step: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received and self.saved is None:
            self.step = int(trainer.global_step)
            path = self.ckpt_dir / "last.ckpt"
            self._own_last(trainer, path)
            trainer.save_checkpoint(str(path))
            self.saved = str(path)
            log.warning("cnnbench: %s received — saved %s at step %d; rerun with resume=auto to continue",
                        self.received, path, self.step)
            signum = getattr(signal, self.received)
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, None)
            # stop now: letting the epoch run out would write an end-of-epoch last.ckpt over this one
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException()

    @staticmethod
    def _own_last(trainer, path: Path) -> None:
        """Record `path` as the last checkpoint of every ModelCheckpoint that writes last.ckpt into the same
        folder, before saving (their state goes into the file): a resumed run's ModelCheckpoint then finds its
        own last.ckpt, and none of them holds a stale `last_model_path` to clean up."""
        target = Path(path).resolve()
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if getattr(cb, "save_last", False) and dirpath and Path(dirpath).resolve() == target.parent:
                cb.last_model_path = str(target)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}



# -- non-finite loss ---------------------------------------------------------------------------------
class NonFiniteLoss(Callback):
    """`stop`: a NaN/Inf loss raises `NonFiniteLossError` naming the step before backward, so no
    update and no checkpoint of the bad state happens. `skip`: the update is dropped (gradients set
    to None, which every torch optimizer skips — no momentum or weight-decay step either) and the
    batch-norm running statistics of that forward pass are rolled back."""

    MODES = NONFINITE_MODES  # loss.on_nonfinite

    def __init__(self, mode: str = "stop") -> None:
        self.mode = mode
        self.skipped: list[int] = []
        self._bad = False
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._bad = False
        if self.mode == "skip":
            self._buffers = [(b, b.detach().clone()) for b in pl_module.buffers() if b.is_floating_point()]

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        step, epoch = int(trainer.global_step), int(trainer.current_epoch)
        value = float(loss.detach().float().reshape(-1)[0])
        if self.mode == "stop":
            recipe = zoo_recipe(getattr(pl_module, "model_name", ""))
            raise NonFiniteLossError(
                f"non-finite training loss ({value}) at step {step} (epoch {epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}); "
                "the last good checkpoint is kept (loss.on_nonfinite=skip drops such steps instead"
                + (f"; the zoo recipe that trains this network: {recipe}" if recipe else "") + ")"
            )
        self._bad = True

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._bad:
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        for live, saved in self._buffers:
            live.copy_(saved)
        self.skipped.append(int(trainer.global_step))
        log.warning("cnnbench: non-finite loss at step %d — update skipped (loss.on_nonfinite=skip)",
                    int(trainer.global_step))


class GradNorm(Callback):
    """`log_grad_norm=true`: the total 2-norm of the gradients as `train/grad_norm`, every `log_every_n_steps`,
    before gradient clipping (Lightning calls this hook before it clips), so a run with
    `trainer.gradient_clip_val` shows how much clipping shrinks each step."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        from lightning.pytorch.utilities import grad_norm

        if (trainer.global_step + 1) % max(1, int(trainer.log_every_n_steps)) and trainer.global_step:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            pl_module.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)


# -- stuck at chance ---------------------------------------------------------------------------------
# The zoo recipes (conf/experiment/zoo_<row>.yaml, docs/zoo.md; the rows: cnnbench.analysis.zoo.ZOO_ROWS): one row
# per seed network; other members of a family are pointed at their family's row with `model=<name>` (an
# experiment's model group can be overridden).
_ZOO_FAMILY = {
    "alexnet_owt": "alexnet", "vgg11_bn": "vgg11", "vgg11_lrn": "vgg11", "vgg13": "vgg16", "vgg13_bn": "vgg16",
    "vgg16_bn": "vgg16", "vgg16_c": "vgg16", "vgg19": "vgg16", "vgg19_bn": "vgg16", "resnet34": "resnet18",
    "plain18": "resnet18", "plain34": "resnet18", "resnet101": "resnet50", "resnet152": "resnet50",
    "plain20": "resnet20", "resnet32": "resnet56", "resnet44": "resnet56", "plain32": "resnet56",
    "plain44": "resnet56", "plain56": "resnet56", "resnet110": "resnet56", "plain110": "resnet56",
    "resnet1202": "resnet56", "inception_resnet_v2_tfslim": "inception_resnet_v2",
    **{f"efficientnet_b{i}": "efficientnet_b0" for i in range(1, 8)},
}


def zoo_recipe(model_name: str) -> str | None:
    """The command-line words that select the zoo recipe for `model_name`: `experiment=zoo_<name>` for a zoo
    row, `experiment=zoo_<row> model=<name>` for another member of a row's family, None when no row fits."""
    if model_name in ZOO_ROWS:
        return f"experiment=zoo_{model_name}"
    row = _ZOO_FAMILY.get(model_name)
    return f"experiment=zoo_{row} model={model_name}" if row else None


def stuck_causes(model_cfg: dict[str, Any], has_bn: bool, lr: float) -> list[str]:
    """The likely causes of a run stuck at chance, most likely first, for this model's config.

    Without batch norm the initialisation sets the scale of every layer's signal: AlexNet's N(0, 0.01)
    weights with bias 1 (Krizhevsky et al. 2012, §5) and VGG's N(0, 0.01) for net A (Simonyan & Zisserman
    2015, §3.1) shrink it layer by layer, and the learning rate that a BN network takes (the default 0.1)
    pushes such a network into dead ReLUs or a constant prediction (docs/reliability.md)."""
    name, init = str(model_cfg.get("name", "")), model_cfg.get("init")
    causes: list[str] = []
    if init == "paper" and name.startswith("alexnet"):
        causes.append("the 2012 initialisation N(0, 0.01) with bias 1 (model.init=paper: still at chance after 700 "
                      "steps on Fashion-MNIST where model.init=he leaves it by step 46, docs/zoo.md)")
    elif init == "normal":
        causes.append("the N(0, 0.01) initialisation (model.init=normal; model.init=glorot is §3.1's alternative)")
    elif init is not None and not has_bn:
        causes.append(f"the initialisation (model.init={init})")
    if not has_bn:
        causes.append("no batch norm (model.batch_norm=true adds it)" if "batch_norm" in model_cfg
                      else "no batch norm in this network")
    if "carry_bias" in model_cfg:
        causes.append(f"the transform-gate bias (model.carry_bias={model_cfg['carry_bias']})")
    causes.append(f"the learning rate (optimizer.lr={lr:g}" + (", high for a network without BN)" if not has_bn else ")"))
    if has_bn and init is None:
        causes.append("the data (labels that do not match the images)")
    return causes


class StuckAtChance(Callback):
    """One warning line when training stays at chance, recorded in results.json (`stuck_at_chance`).

    Criterion, checked once at step S = min(`after_steps`, max(`min_steps`, optimizer steps of the first
    epoch)) — the first few hundred steps or the first epoch, whichever is shorter, but never before
    `min_steps` — over the last `window` training batches (fewer when S < `window`), with K classes:

    - the running mean of the main head's cross-entropy (no label smoothing, no aux heads) is at least
      (1 − `loss_tol`) · ln K — not below chance's loss by more than `loss_tol` (default 5 %); and
    - the running training accuracy of the main head is at most `acc_factor` / K (default 1.5 / K).

    A run shorter than S is checked at its end once it has `min_steps` steps. The running means are
    torchmetrics `RunningMean`s on the batches of this process (rank 0 decides in DDP) and are read once,
    at the check. The line names the likely causes for the model (`stuck_causes`) and its zoo recipe
    (`zoo_recipe`); docs/reliability.md."""

    def __init__(self, *, after_steps: int = 300, min_steps: int = 20, window: int = 50, loss_tol: float = 0.05,
                 acc_factor: float = 1.5, model_cfg: dict[str, Any] | None = None, num_classes: int | None = None,
                 lr: float | None = None) -> None:
        # model_cfg / num_classes / lr default to the LightningModule's (hparams `model`, `num_classes`, `lr`)
        self.after_steps, self.min_steps, self.window = int(after_steps), int(min_steps), int(window)
        self.loss_tol, self.acc_factor = float(loss_tol), float(acc_factor)
        self.model_cfg, self.num_classes, self.lr = model_cfg, num_classes, lr
        self.check_step: int | None = None
        self.checked = False
        self.report: dict[str, Any] | None = None  # set when the run is stuck: what results.json records
        self._loss = self._acc = None
        self._seen = 0

    @property
    def chance_loss(self) -> float:
        """ln K: the cross-entropy of the uniform prediction."""
        import math

        return math.log(int(self.num_classes))

    @property
    def chance_acc(self) -> float:
        return 1.0 / int(self.num_classes)

    # -- state across resume: a resumed run neither checks again nor forgets the warning
    def state_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "report": self.report}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checked = bool(state_dict.get("checked", False))
        self.report = state_dict.get("report")

    def on_train_start(self, trainer, pl_module) -> None:
        import math

        from torchmetrics.aggregation import RunningMean

        hparams = getattr(pl_module, "hparams", {})
        self.model_cfg = dict(self.model_cfg if self.model_cfg is not None else hparams.get("model") or {})
        self.num_classes = int(self.num_classes if self.num_classes is not None else hparams["num_classes"])
        self.lr = float(self.lr if self.lr is not None else getattr(pl_module, "lr", float("nan")))
        batches = trainer.num_training_batches
        per_epoch = (math.ceil(batches / max(1, int(trainer.accumulate_grad_batches)))
                     if isinstance(batches, (int, float)) and math.isfinite(batches) else self.after_steps)
        self.check_step = min(self.after_steps, max(self.min_steps, int(per_epoch)))
        self._loss = RunningMean(window=self.window, sync_on_compute=False).to(pl_module.device)
        self._acc = RunningMean(window=self.window, sync_on_compute=False).to(pl_module.device)
        self._seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.checked or self._loss is None or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        step = int(trainer.global_step)  # optimizer steps done, this batch's included
        if step <= self.check_step - self.window:
            return  # before the window: nothing to record
        logits, y = outputs["logits"].detach().float(), batch[1]
        if y.ndim > 1:  # soft targets: their argmax
            y = y.argmax(1)
        self._loss.update(torch.nn.functional.cross_entropy(logits, y, reduction="none"))
        self._acc.update((logits.argmax(1) == y).float())
        self._seen += 1
        if step >= self.check_step:
            self._check(trainer, pl_module, step)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.checked and self._loss is not None and int(trainer.global_step) >= self.min_steps:
            self._check(trainer, pl_module, int(trainer.global_step))

    def _check(self, trainer, pl_module, step: int) -> None:
        self.checked = True
        if not self._seen:
            return
        loss, acc = float(self._loss.compute()), float(self._acc.compute())
        if loss < (1.0 - self.loss_tol) * self.chance_loss or acc > self.acc_factor * self.chance_acc:
            return
        name = str(self.model_cfg.get("name", "?"))
        has_bn = any(isinstance(m, BATCH_NORMS) for m in pl_module.modules())
        causes = stuck_causes(self.model_cfg, has_bn, self.lr)
        recipe = zoo_recipe(name)
        k = int(self.num_classes)
        message = (f"cnnbench: {name} is stuck at chance after {step} steps — train loss {loss:.3f} "
                   f"(ln {k} = {self.chance_loss:.3f}), train acc {acc:.3f} (1/{k} = {self.chance_acc:.3f}); "
                   f"likely causes: {'; '.join(causes)}; "
                   + (f"the zoo recipe trains it: {recipe}" if recipe else "no zoo recipe covers this model"))
        self.report = {"step": step, "window": min(self.window, self._seen), "train_loss": round(loss, 4),
                       "train_acc": round(acc, 4), "chance_loss": round(self.chance_loss, 4),
                       "chance_acc": round(self.chance_acc, 4), "causes": causes, "recipe": recipe,
                       "message": message}
        if trainer.is_global_zero:
            bar = getattr(trainer, "progress_bar_callback", None)
            if bar is not None and getattr(bar, "is_enabled", False):
                bar.print(message)  # above the progress bar, on a line of its own (tqdm.write)
            else:  # printed like cnnbench's other lines: seen whatever the logging config
                print(message, flush=True)


__all__ = ["RNGState", "Preemption", "NonFiniteLoss", "NonFiniteLossError", "GradNorm", "StuckAtChance", "zoo_recipe",
           "capture_rng", "restore_rng"]
