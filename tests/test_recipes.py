"""Paper recipes (docs/recipes.md): every experiment composes with the paper's numbers; short runs on `synthetic`;
conditional warmup, max_steps stop, LR scaling into results.json, init_from fine-tuning, launcher configs."""
from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.helpers import CONF, FAST, compose_cfg

EXPERIMENTS = ["resnet_cifar", "plain_vs_resnet_cifar", "resnet_imagenet", "vgg_imagenet", "googlenet_ilsvrc14",
               "inception_v3_imagenet", "inception_v4_imagenet", "inception_resnet_v2_imagenet",
               "efficientnet_imagenet", "efficientnet_transfer", "alexnet_imagenet", "inception_v2_imagenet"]
CLAIM_EXPERIMENTS = ["claim_degradation", "claim_fmnist_base", "claim_inception_residual", "claim_compound_scaling",
                     "claim_aux_classifiers", "claim_residual_scaling", "claim_highway_vs_resnet",
                     "claim_compound_scaling_first"]
ZOO_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("zoo_*.yaml")) + ["fmnist_zoo_base"]  # docs/zoo.md


def _cfg(experiment, extra=()):
    return compose_cfg("train", [f"experiment={experiment}", *extra])


def test_all_issue_experiments_exist():
    assert all((CONF / "experiment" / f"{e}.yaml").is_file() for e in EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS + CLAIM_EXPERIMENTS + ZOO_EXPERIMENTS)
def test_every_number_cites_its_source(experiment):
    """Each line that sets a number carries a comment (the paper's section, or that it is reduced and why)."""
    import re

    numeric = re.compile(r"^\[?[-+0-9.eE, ]*[0-9][-+0-9.eE, ]*\]?$")
    checked = 0
    for line in (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines():
        body = line.split("#", 1)[0]
        if ":" in body and numeric.match(body.split(":", 1)[1].strip()):
            checked += 1
            assert "#" in line, f"{experiment}: uncommented number: {line.strip()}"
    assert checked >= (1 if experiment == "claim_residual_scaling" else 3)


def test_resnet_cifar_numbers():
    c = _cfg("resnet_cifar")
    assert c.model.name == "resnet110" and c.data.name == "cifar10" and c.augmentation.name == "cifar"
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.momentum, c.optimizer.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert c.data.batch_size == 128 and c.optimizer.reference_batch == 128 and c.optimizer.scale_lr == "linear"
    assert list(c.schedule.milestones_steps) == [32000, 48000] and c.schedule.gamma == 0.1
    assert c.trainer.max_steps == 64000 and c.trainer.max_epochs == -1
    assert c.data.val_split == 0 and c.data.mean_mode == "pixel"
    assert c.conditional_warmup.enabled == "auto" and c.conditional_warmup.error_below == 0.8
    assert c.conditional_warmup.lr_factor * c.optimizer.lr == pytest.approx(0.01)
    assert c.augmentation.pad == 4 and c.augmentation.hflip
    assert _cfg("resnet_cifar", ["model=resnet56", "data.val_split=5000"]).model.name == "resnet56"


def test_plain_vs_resnet_sweeps_depths():
    c = _cfg("plain_vs_resnet_cifar")
    models = c.hydra.sweeper.params.model.split(",") if "hydra" in c else None
    if models is None:  # compose() drops the hydra node: read the file
        from omegaconf import OmegaConf

        models = OmegaConf.load(CONF / "experiment" / "plain_vs_resnet_cifar.yaml").hydra.sweeper.params.model.split(",")
    assert {f"{k}{d}" for k in ("plain", "resnet") for d in (20, 32, 44, 56)} <= set(models)
    assert c.trainer.max_steps == 64000 and list(c.schedule.milestones_steps) == [32000, 48000]


def test_resnet_and_vgg_imagenet_numbers():
    r = _cfg("resnet_imagenet")
    assert (r.optimizer.lr, r.optimizer.momentum, r.optimizer.weight_decay, r.data.batch_size) == (0.1, 0.9, 1e-4, 256)
    assert r.schedule.name == "plateau" and r.schedule.factor == 0.1 and r.trainer.max_steps == 600000
    assert (r.augmentation.min_side, r.augmentation.max_side, r.augmentation.pca_alpha) == (256, 480, 0.1)
    assert r.data.mean_mode == "pixel"  # §3.4 "the per-pixel mean subtracted"
    v = _cfg("vgg_imagenet")
    assert (v.optimizer.lr, v.optimizer.weight_decay, v.data.batch_size, v.trainer.max_steps) == (0.01, 5e-4, 256, 370000)
    assert (v.augmentation.min_side, v.augmentation.max_side) == (256, 512) and v.model.dropout == 0.5


def test_googlenet_numbers():
    c = _cfg("googlenet_ilsvrc14")
    assert c.optimizer.momentum == 0.9 and c.schedule.name == "exponential"
    assert c.schedule.gamma == 0.96 and c.schedule.decay_every_epochs == 8
    assert c.ema.enabled and list(c.model.aux_weights) == [0.3, 0.3]
    assert list(c.augmentation.scale) == [0.08, 1.0] and len(c.augmentation.interpolations) == 4


@pytest.mark.parametrize("experiment,model,ref", [("inception_v4_imagenet", "inception_v4", 640),
                                                  ("inception_resnet_v2_imagenet", "inception_resnet_v2", 640),
                                                  ("inception_v3_imagenet", "inception_v3", 1600)])
def test_inception_numbers(experiment, model, ref):
    c = _cfg(experiment)
    assert c.model.name == model and c.optimizer.name == "rmsprop_tf"
    assert (c.optimizer.lr, c.optimizer.decay, c.optimizer.eps) == (0.045, 0.9, 1.0)
    assert (c.schedule.gamma, c.schedule.decay_every_epochs) == (0.94, 2)
    assert c.ema.enabled and c.optimizer.reference_batch == ref and c.augmentation.name == "inception"


def test_efficientnet_numbers():
    c = _cfg("efficientnet_imagenet")
    o = c.optimizer
    assert (o.name, o.lr, o.decay, o.momentum, o.eps, o.weight_decay) == ("rmsprop_tf", 0.256, 0.9, 0.9, 1e-3, 1e-5)
    assert o.reference_batch == 4096 and o.no_decay_bn and not o.no_decay_bias
    assert (c.schedule.gamma, c.schedule.decay_every_epochs, c.schedule.warmup_epochs) == (0.97, 2.4, 5)
    assert c.trainer.max_epochs == 350 and c.loss.label_smoothing == 0.1
    assert c.augmentation.name == "efficientnet" and c.augmentation.auto_augment == "v0"  # Tan & Le 2019 §5.2
    assert c.ema.enabled and c.ema.decay == 0.9999 and c.data.val_split == 25000
    assert (c.model.bn_momentum, c.model.bn_eps) == (0.01, 1e-3)
    b4 = _cfg("efficientnet_imagenet", ["model=efficientnet_b4"])
    assert b4.model.name == "efficientnet_b4" and b4.model.dropout == 0.4  # dropout follows the model


def test_fashion_mnist_speedrun_and_best60_numbers():
    """The Fashion-MNIST speedrun (all 60k images, 3 epochs, one-cycle) and its 60-CPU-minute sibling."""
    fast = _cfg("fmnist_speedrun")
    assert (fast.model.name, fast.data.name, fast.data.val_split, fast.data.batch_size) == (
        "resnet20", "fashion_mnist", 0, 128)
    assert (fast.optimizer.lr, fast.schedule.name, fast.trainer.max_epochs) == (0.2, "onecycle", 3)
    assert fast.loss.label_smoothing == 0.1 and fast.augmentation.pad == 2
    best = _cfg("fmnist_best60")
    assert best.model.name == "resnet20" and best.optimizer.lr == 0.2 and best.schedule.name == "onecycle"
    assert (best.trainer.max_epochs, best.optimizer.weight_decay, best.data.num_workers) == (30, 5e-4, 0)


def test_efficientnet_transfer_requires_init_from(tmp_path):
    from cnnbench.commands.train import train
    from cnnbench.errors import UserError

    c = _cfg("efficientnet_transfer")
    with pytest.raises(UserError, match="give init_from="):
        train(compose_cfg("train", ["experiment=efficientnet_transfer", *SYN]), run_dir=tmp_path)
    assert c.optimizer.nesterov and c.trainer.max_steps == 20000 and c.augmentation.auto_augment == "none"


def test_launcher_and_optuna_configs_compose():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        c = compose("train", ["hydra/launcher=submitit_slurm", "hparams_search=optuna_lr_wd"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert c.hydra.launcher._target_.endswith("SlurmLauncher")
    assert c.hydra.launcher.tasks_per_node == c.hydra.launcher.gpus_per_node and c.hydra.launcher.max_num_timeout > 0
    assert c.hydra.sweeper._target_.endswith("OptunaSweeper") and c.hydra.sweeper.direction == "maximize"
    assert set(c.hydra.sweeper.params) == {"optimizer.lr", "optimizer.weight_decay"}
    assert c.optimized_metric == "val/acc1"


# -- runs --------------------------------------------------------------------------------------------

SYN = FAST + ["data=synthetic", "data.num_train=40", "data.num_test=8", "data.val_split=8", "data.batch_size=8",
              "data.limit_train=null"]


class _LRProbe(Callback):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def test_resnet_cifar_run_warmup_scaling_and_max_steps(tmp_path):
    """ResNet-20 under the CIFAR recipe with the conditional warmup forced on: LR × 0.1 until the (window)
    training error is under the threshold, then the base LR; the run stops at trainer.max_steps."""
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", ["experiment=resnet_cifar", *SYN, "model=resnet20", "trainer.max_steps=5",
                                "conditional_warmup.enabled=true", "conditional_warmup.error_below=1.01",
                                "conditional_warmup.window_steps=2", "trainer.max_epochs=-1"])
    probe = _LRProbe()
    results = train(cfg, run_dir=tmp_path, callbacks=[probe])
    base = 0.1 * 8 / 128  # linear scaling of 0.1 @ 128 to the actual global batch 8
    assert results["lr_base"] == 0.1 and results["lr_scaled"] == pytest.approx(base)
    assert results["steps"] == 5
    assert probe.lrs == pytest.approx([base * 0.1, base * 0.1, base, base, base])


def test_conditional_warmup_auto_follows_the_model():
    from cnnbench.training.recipe_callbacks import ConditionalWarmup, build_recipe_callbacks, warmup_applies

    cfg = {"enabled": "auto", "models": ["resnet110", "resnet1202"]}
    assert warmup_applies(cfg, "resnet110") and warmup_applies(cfg, "resnet1202")
    assert not warmup_applies(cfg, "resnet56")
    c110, c56 = _cfg("resnet_cifar"), _cfg("resnet_cifar", ["model=resnet56"])
    assert any(isinstance(cb, ConditionalWarmup) for cb in build_recipe_callbacks(c110))
    assert not any(isinstance(cb, ConditionalWarmup) for cb in build_recipe_callbacks(c56))


def test_target_global_batch_sets_accumulation(tmp_path):
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", SYN + ["model=resnet20", "hardware.target_global_batch=16", "trainer.max_steps=2",
                                      "optimizer.scale_lr=linear", "optimizer.reference_batch=16",
                                      "schedule=constant"])
    results = train(cfg, run_dir=tmp_path)
    assert results["global_batch"] == 16 and results["lr_scaled"] == pytest.approx(results["lr_base"])
    bad = compose_cfg("train", SYN + ["model=resnet20", "hardware.target_global_batch=12"])
    from cnnbench.errors import UserError

    with pytest.raises(UserError, match="target_global_batch=12"):
        train(bad, run_dir=tmp_path / "bad")


def test_init_from_loads_body_and_keeps_a_new_head(tmp_path, tiny_checkpoint):
    from cnnbench.commands.train import train

    src = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["state_dict"]

    class Grab(Callback):
        def on_train_start(self, trainer, pl_module):
            self.w = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    grab = Grab()
    cfg = compose_cfg("train", SYN + ["model=resnet20", "data.num_classes=5", f"init_from={tiny_checkpoint}",
                                      "trainer.max_steps=1", "schedule=constant"])
    train(cfg, run_dir=tmp_path, callbacks=[grab])
    conv = "model.stem.0.weight" if "model.stem.0.weight" in src else next(
        k for k, v in src.items() if k.startswith("model.") and v.ndim == 4)
    assert torch.equal(grab.w[conv], src[conv])
    assert grab.w["model.fc.weight"].shape[0] == 5 != src["model.fc.weight"].shape[0]


def test_init_from_a_run_dir_takes_its_best_checkpoint(tmp_path, tiny_checkpoint, capsys):
    from cnnbench.errors import UserError
    from cnnbench.run import resolve_init_from

    run_dir = tiny_checkpoint.parent.parent
    cfg = resolve_init_from(compose_cfg("train", SYN + [f"init_from={run_dir}"]))
    assert cfg.init_from == str(tiny_checkpoint)
    assert f"init_from={run_dir} — using {tiny_checkpoint}" in capsys.readouterr().out
    with pytest.raises(UserError, match=rf"init_from={tmp_path} is a directory with no finished training run"):
        resolve_init_from(compose_cfg("train", SYN + [f"init_from={tmp_path}"]))


def test_init_from_other_model_is_one_clear_error(tmp_path, tiny_checkpoint):
    from cnnbench.commands.train import train
    from cnnbench.errors import UserError

    cfg = compose_cfg("train", SYN + ["model=resnet32", f"init_from={tiny_checkpoint}"])
    with pytest.raises(UserError, match="holds 'resnet20', but model='resnet32'"):
        train(cfg, run_dir=tmp_path)


SHORT = {  # reduced width/resolution so each recipe runs a few steps on `synthetic`
    "resnet_imagenet": ["model.scaling.width_mult=0.25", "model.scaling.depth_mult=0.34", "data.image_size=32"],
    "vgg_imagenet": ["model=vgg11", "model.batch_norm=true", "data.image_size=32"],
    "googlenet_ilsvrc14": ["model.scaling.width_mult=0.25", "data.image_size=64"],
    "inception_v3_imagenet": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "inception_v4_imagenet": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "inception_resnet_v2_imagenet": ["model.scaling.width_mult=0.25", "data.image_size=75"],
    "efficientnet_imagenet": ["model.scaling.width_mult=0.25", "model.scaling.depth_mult=0.5", "data.image_size=32"],
    "plain_vs_resnet_cifar": ["model=plain20"],
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", list(SHORT))
def test_recipe_short_run(tmp_path, experiment):
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", [f"experiment={experiment}", *SYN, *SHORT[experiment], "trainer.max_steps=3",
                                "trainer.max_epochs=1"])
    results = train(cfg, run_dir=tmp_path)
    assert results["steps"] == 3 and math.isfinite(results["train/loss_last"])
    n = results["n_test"]
    assert results["test/acc1"] * n == pytest.approx(round(results["test/acc1"] * n), abs=1e-4)  # k of n right
    ckpt = torch.load(results["checkpoint"], map_location="cpu", weights_only=True)
    assert ("current_model_state" in ckpt) == bool(cfg.ema.enabled)  # averaged weights checkpointed


@pytest.mark.slow
def test_efficientnet_transfer_short_run(tmp_path):
    from cnnbench.commands.train import train

    small = ["model.scaling.width_mult=0.25", "model.scaling.depth_mult=0.5", "data.image_size=32"]
    src = train(compose_cfg("train", ["experiment=efficientnet_imagenet", *SYN, *small, "trainer.max_steps=2",
                                      "trainer.max_epochs=1"]), run_dir=tmp_path / "src")
    cfg = compose_cfg("train", ["experiment=efficientnet_transfer", *SYN, *small, "data.num_classes=4",
                                f"init_from={src['checkpoint']}", "trainer.max_steps=2"])
    results = train(cfg, run_dir=tmp_path / "ft")
    assert results["steps"] == 2
