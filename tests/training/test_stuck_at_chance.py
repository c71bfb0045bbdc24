"""`StuckAtChance` (docs/reliability.md, "Stuck at chance"): fed fake batch outputs, it warns once on a run
whose loss stays at ln K and accuracy at 1/K, and stays silent on one that learns; the non-finite stop names
the same zoo recipe."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from cnnbench.training.callbacks import StuckAtChance, stuck_causes, zoo_recipe

K, BATCH = 10, 64
ALEXNET = {"name": "alexnet", "dropout": 0.5, "init": "paper"}


def _drive(cb: StuckAtChance, logits_for, steps: int, per_epoch: int = 1000, module: torch.nn.Module | None = None):
    """Run the callback's hooks over `steps` fake batches; `logits_for(step, y)` gives the batch's logits."""
    module = module or torch.nn.Linear(4, K)
    module.device = torch.device("cpu")
    trainer = SimpleNamespace(global_step=0, num_training_batches=per_epoch, accumulate_grad_batches=1,
                              is_global_zero=True)
    cb.on_train_start(trainer, module)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        y = torch.randint(0, K, (BATCH,), generator=gen)
        trainer.global_step = step  # Lightning calls on_train_batch_end after the optimizer step
        cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.0), "logits": logits_for(step, y)},
                              (torch.zeros(BATCH, 1), y), step - 1)
    cb.on_train_end(trainer, module)
    return cb


def _uniform(step, y):
    return torch.zeros(len(y), K) + 0.01 * torch.randn(len(y), K)  # loss ≈ ln K, argmax ≈ a random class


def _learning(step, y):
    margin = min(3.0, step / 20)  # the true class's logit grows: loss falls below ln K within ~10 steps
    return torch.nn.functional.one_hot(y, K).float() * margin + 0.5 * torch.randn(len(y), K)


def test_fires_once_on_a_run_stuck_at_chance(capsys):
    cb = StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.1)
    _drive(cb, _uniform, 400)
    lines = [line for line in capsys.readouterr().out.splitlines() if "stuck at chance" in line]
    assert len(lines) == 1 and "\n" not in lines[0]
    r = cb.report
    assert r["step"] == 300 and r["window"] == 50  # first few hundred steps (epoch longer than 300)
    assert r["train_loss"] == pytest.approx(math.log(K), abs=0.01) and abs(r["train_acc"] - 0.1) < 0.03
    assert r["recipe"] == "experiment=zoo_alexnet" and r["message"] == lines[0]
    assert "experiment=zoo_alexnet" in lines[0] and "N(0, 0.01)" in lines[0] and "no batch norm" in lines[0]
    assert "optimizer.lr=0.1" in lines[0]


def test_silent_on_a_learning_run(capsys):
    cb = StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.1)
    _drive(cb, _learning, 400)
    assert cb.checked and cb.report is None
    assert "stuck at chance" not in capsys.readouterr().out


def test_checks_at_the_end_of_a_short_first_epoch_and_only_then():
    """The first epoch (40 steps) is shorter than after_steps: the check is at step 40, over the steps seen;
    a run that leaves chance later is still reported (it was at chance for its whole first epoch)."""
    cb = _drive(StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.01),
                lambda s, y: _uniform(s, y) if s <= 40 else _learning(s, y), 200, per_epoch=40)
    assert cb.report is not None and cb.report["step"] == 40 and cb.report["window"] == 40
    # but a run that leaves chance within its first epoch is not
    cb = _drive(StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.01), _learning, 200, per_epoch=40)
    assert cb.report is None


def test_too_short_a_run_is_not_judged():
    cb = _drive(StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.1), _uniform, 12, per_epoch=3)
    assert not cb.checked and cb.report is None  # fewer than min_steps = 20 steps


def test_loss_far_above_ln_k_with_chance_accuracy_counts_as_stuck():
    """A confident constant prediction (loss ≫ ln K, accuracy 1/K) is stuck too."""
    cb = _drive(StuckAtChance(model_cfg={"name": "resnet20"}, num_classes=K, lr=0.1),
                lambda s, y: torch.nn.functional.one_hot(torch.zeros_like(y), K).float() * 8, 60, per_epoch=30)
    assert cb.report is not None and cb.report["train_loss"] > 2 * math.log(K)


def test_causes_are_tailored_to_the_model():
    vgg = stuck_causes({"name": "vgg16", "batch_norm": False, "init": "normal"}, has_bn=False, lr=0.1)
    assert vgg[0].startswith("the N(0, 0.01) initialisation") and "model.batch_norm=true" in vgg[1]
    resnet = stuck_causes({"name": "resnet20"}, has_bn=True, lr=0.1)
    assert not any("batch norm" in c for c in resnet) and "optimizer.lr=0.1" in resnet[0]
    assert "model.carry_bias=-2.0" in " ".join(stuck_causes({"name": "highway_conv", "carry_bias": -2.0,
                                                             "batch_norm": True}, has_bn=True, lr=0.1))


def test_zoo_recipe_names_the_row_or_its_family_row():
    assert zoo_recipe("vgg16") == "experiment=zoo_vgg16"
    assert zoo_recipe("resnet110") == "experiment=zoo_resnet56 model=resnet110"
    assert zoo_recipe("efficientnet_b3") == "experiment=zoo_efficientnet_b0 model=efficientnet_b3"
    assert zoo_recipe("highway_mlp") is None


def test_state_survives_a_resume():
    cb = _drive(StuckAtChance(model_cfg=ALEXNET, num_classes=K, lr=0.1), _uniform, 320)
    resumed = StuckAtChance()
    resumed.load_state_dict(cb.state_dict())
    assert resumed.checked and resumed.report == cb.report


def test_nonfinite_stop_names_the_zoo_recipe():
    from cnnbench.training.callbacks import NonFiniteLoss, NonFiniteLossError

    trainer = SimpleNamespace(global_step=16, current_epoch=0,
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_idx=16)))
    with pytest.raises(NonFiniteLossError, match=r"loss.on_nonfinite=skip .*experiment=zoo_alexnet"):
        NonFiniteLoss("stop").on_before_backward(trainer, SimpleNamespace(model_name="alexnet"),
                                                 torch.tensor(float("nan")))


def test_train_records_the_warning_in_results(tmp_path, capsys):
    """Through `train`: random labels (data=synthetic) leave nothing to learn in one epoch of 20 steps."""
    from cnnbench.commands.train import train
    from tests.helpers import FAST, compose_cfg

    cfg = compose_cfg("train", FAST + ["data=synthetic", "data.num_train=328", "data.val_split=8", "data.num_test=8",
                                       "data.batch_size=16", "trainer.max_epochs=1", "augmentation=none",
                                       "model=resnet20", "data.image_size=16", "schedule=constant",
                                       "optimizer.lr=0.01"])
    results = train(cfg, run_dir=tmp_path)
    assert results["steps"] == 20
    stuck = results["stuck_at_chance"]
    assert stuck["step"] == 20 and stuck["recipe"] == "experiment=zoo_resnet20"
    assert [line for line in capsys.readouterr().out.splitlines() if "stuck at chance" in line] == [stuck["message"]]
    import json

    assert json.loads((tmp_path / "results.json").read_text())["stuck_at_chance"] == stuck


def test_every_recipe_the_warning_names_exists():
    from cnnbench.training.callbacks import ZOO_ROWS
    from tests.helpers import CONF

    missing = [row for row in ZOO_ROWS if not (CONF / "experiment" / f"zoo_{row}.yaml").is_file()]
    assert not missing
    assert sorted(ZOO_ROWS) == sorted(p.stem.removeprefix("zoo_") for p in (CONF / "experiment").glob("zoo_*.yaml"))
