"""A few training steps of each model family through the training function, on `synthetic`, at reduced
width/resolution (the issues' "through the training function" checks); aux heads go through the loss."""
from __future__ import annotations

import math

import pytest

from cnnbench.commands.train import train
from tests.helpers import FAST, compose_cfg

TINY = FAST + ["data=synthetic", "data.num_train=24", "data.val_split=8", "data.num_test=8", "data.batch_size=8",
               "trainer.max_epochs=1", "augmentation=none"]

CASES = {
    "resnet50": ["model.scaling.width_mult=0.25", "model.scaling.depth_mult=0.34", "data.image_size=32"],
    "resnet18": ["data.image_size=32"],
    "plain34": ["model.scaling.width_mult=0.25", "data.image_size=32"],
    "vgg11": ["model.batch_norm=true", "data.image_size=32"],
    "highway_conv": [],
    "googlenet": ["model.scaling.width_mult=0.25", "data.image_size=64"],
    "inception_v3": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "inception_v4": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "inception_resnet_v2": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "efficientnet_b0": ["model.scaling.width_mult=0.25", "model.scaling.depth_mult=0.5", "data.image_size=32"],
}


SLOW = {"vgg11"}  # full width (VGG has no width multiplier): ≈ 15 s, the full suite runs it


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in CASES])
def test_family_trains_through_train(tmp_path, model):
    """Plumbing: two steps, a finite loss, a checkpoint, and a test accuracy counted over the 8 test images.
    Whether a family learns is the slow tier's question (test_families_learn.py)."""
    cfg = compose_cfg("train", TINY + [f"model={model}", *CASES[model]])
    results = train(cfg, run_dir=tmp_path)
    assert results["model"] == model and results["steps"] == 2  # 16 images / batch 8
    assert math.isfinite(results["train/loss_last"]) and results["n_test"] == 8
    assert results["test/acc1"] * 8 == pytest.approx(round(results["test/acc1"] * 8), abs=1e-5)  # k of 8 right
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in CASES])
def test_family_gradient_reaches_every_layer(model):
    """Plumbing of the backward pass: one training-mode step on a batch of 4 gives logits of shape (4, classes),
    a finite loss, and a finite gradient on every parameter the main head depends on, nonzero on the stem (the
    first parameter) and on at least 90 % of those tensors (a detached branch or a dead layer shows here)."""
    import torch
    from omegaconf import OmegaConf

    from cnnbench.models import create_model, main_logits
    from cnnbench.training.module import model_kwargs

    cfg = compose_cfg("train", TINY + [f"model={model}", *CASES[model]])
    torch.manual_seed(0)
    net = create_model(model, num_classes=4, in_chans=3, **model_kwargs(OmegaConf.to_container(cfg.model)))
    size = int(cfg.data.image_size or cfg.data.native_size)
    logits = main_logits(net.train()(torch.rand(4, 3, size, size)))
    assert logits.shape == (4, 4)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    loss.backward()
    assert math.isfinite(float(loss))
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    stem = next(net.parameters())
    assert stem.grad is not None and float(stem.grad.abs().sum()) > 0
    nonzero = sum(float(g.abs().sum()) > 0 for g in grads)
    assert nonzero >= 0.9 * len(grads), (nonzero, len(grads))


def test_googlenet_aux_losses_enter_training(tmp_path):
    """With aux heads on, the logged training loss is main + 0.3·aux1 + 0.3·aux2 (larger than without)."""
    import lightning as L
    import torch

    seen = {}

    class Grab(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == 0:
                x, y = batch
                module.train()
                with torch.no_grad():
                    out = module.model(module.prepare(x))
                seen["n_outputs"] = len(out) if isinstance(out, tuple) else 1
                seen["weights"] = module.aux_weights

    cfg = compose_cfg("train", TINY + ["model=googlenet", "model.scaling.width_mult=0.25", "data.image_size=64"])
    train(cfg, run_dir=tmp_path, callbacks=[Grab()])
    assert seen == {"n_outputs": 3, "weights": (0.3, 0.3)}


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [("resnet18", ["model.shortcut=B"]), ("vgg11", ["model.batch_norm=true"]),
                                         ("plain18", [])])
def test_imagenet_families_take_steps_on_fashion_mnist(tmp_path, fashion_mnist, model, extra):
    """A few steps on a real Fashion-MNIST subset (28² raised to 32², gray → RGB)."""
    cfg = compose_cfg("train", FAST + [f"model={model}", *extra, "data.limit_train=48", "data.val_split=16",
                                       "data.limit_test=16", "data.batch_size=16", "trainer.max_epochs=1",
                                       "data.image_size=32", "augmentation=none"])
    results = train(cfg, run_dir=tmp_path)
    assert results["data"] == "fashion_mnist" and results["steps"] == 3 and results["n_test"] == 16  # 48 / 16
    assert results["train/loss_last"] is not None and results["train/loss_last"] == results["train/loss_last"]
