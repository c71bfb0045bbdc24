"""The training function end to end, in-process, on small real data."""
from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from cnnbench.checkpoint import CheckpointError, load_checkpoint
from cnnbench.commands.train import train
from tests.helpers import FAST, compose_cfg, train_tiny

RESULT_KEYS = {"model", "data", "test/acc1", "test/acc5", "val/acc1", "epochs", "wall_s", "checkpoint", "run_dir",
               "lr_base", "lr_scaled", "skipped_images"}


@pytest.mark.slow
def test_learns_on_digits(tmp_path):
    cfg = compose_cfg("train", FAST + ["data=digits", "data.image_size=16", "augmentation=none", "trainer.max_epochs=8",
                                       "optimizer.lr=0.1"])
    results = train(cfg, run_dir=tmp_path)
    assert results["test/acc1"] >= 0.90, results
    assert RESULT_KEYS <= set(results)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test/acc1"] == results["test/acc1"]
    assert (tmp_path / "metrics.csv").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert results["checkpoint"].startswith(str(tmp_path)) and "best" in results["checkpoint"]


@pytest.mark.slow
def test_fashion_mnist_smoke(tmp_path, fashion_mnist):
    cfg = compose_cfg("train", FAST + ["data.limit_train=1500", "data.val_split=300", "data.limit_test=500",
                                       "trainer.max_epochs=2", "data.batch_size=64"])
    results = train(cfg, run_dir=tmp_path)
    assert results["data"] == "fashion_mnist" and results["n_test"] == 500
    assert results["seed"] == cfg.seed and results["machine"]["cpu_cores"] >= 1  # what and where it ran
    assert results["machine"]["torch"] == torch.__version__
    assert results["test/acc1"] > 0.5, results  # chance is 0.1


def _final_weights(run_dir):
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return ckpt["state_dict"], ckpt


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


@pytest.mark.slow
def test_resume_equals_continuing(tmp_path):
    common = FAST + ["data=synthetic", "trainer.deterministic=true", "augmentation=pad_crop_flip",
                     "schedule=cosine", "seed=7", "trainer.max_epochs=3"]
    straight = train(compose_cfg("train", common), run_dir=tmp_path / "a")
    # the same run stopped after its first epoch, then resumed in its run dir by resume=auto
    train(compose_cfg("train", common), run_dir=tmp_path / "b", callbacks=[StopAfterFirstEpoch()])
    assert load_checkpoint(tmp_path / "b/checkpoints/last.ckpt")["epoch"] == 0
    resumed = train(compose_cfg("train", common + ["resume=auto"]), run_dir=tmp_path / "b")
    assert resumed["resumed_from"].endswith("last.ckpt")
    wa, ca = _final_weights(tmp_path / "a")
    wb, cb = _final_weights(tmp_path / "b")
    assert ca["global_step"] == cb["global_step"]
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=1e-6), key
    assert resumed["test/acc1"] == straight["test/acc1"]
    # the curves of both parts are kept in metrics.csv
    epochs = [line.split(",") for line in (tmp_path / "b/metrics.csv").read_text().splitlines()]
    header = epochs[0]
    seen = {row[header.index("epoch")] for row in epochs[1:] if row[header.index("epoch")]}
    assert {"0", "1", "2"} <= seen


def test_every_checkpoint_loads_weights_only(tmp_path):
    results = train_tiny(tmp_path)
    files = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert len(files) >= 2
    for f in files:
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
        assert ckpt["cnnbench"]["model"]["name"] == "resnet20"
        assert ckpt["cnnbench"]["classes"] == [str(i) for i in range(10)]
        assert "normalization" in ckpt["cnnbench"]
    assert results["epochs"] == 2


class _Arbitrary:  # a class only arbitrary unpickling can rebuild
    pass


def test_checkpoint_needing_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_is_refused(tmp_path, tiny_checkpoint):
    cfg = compose_cfg("train", FAST + ["data=digits", "model=resnet32", f"ckpt_path={tiny_checkpoint}"])
    with pytest.raises(CheckpointError, match="holds model 'resnet20'"):
        train(cfg, run_dir=tmp_path)


def test_checkpoint_of_another_class_count_is_refused(tmp_path, tiny_checkpoint):
    cfg = compose_cfg("train", FAST + ["data=synthetic", "data.num_classes=5", f"ckpt_path={tiny_checkpoint}"])
    with pytest.raises(CheckpointError, match="has 10 classes, the data has 5"):
        train(cfg, run_dir=tmp_path)


def test_seed_makes_runs_repeatable(tmp_path):
    common = FAST + ["data=synthetic", "trainer.max_epochs=1", "trainer.deterministic=true", "seed=3"]
    train(compose_cfg("train", common), run_dir=tmp_path / "a")
    train(compose_cfg("train", common), run_dir=tmp_path / "b")
    wa, _ = _final_weights(tmp_path / "a")
    wb, _ = _final_weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_aux_losses_weighted():
    from cnnbench.training.module import ClassificationModule

    module = ClassificationModule(model={"name": "resnet20"}, num_classes=3, in_chans=3,
                                  normalization={"mean": [0.0], "std": [1.0]}, classes=["a", "b", "c"], image_size=8)
    module.aux_weights = (0.3, 0.5)
    y = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    ce = torch.nn.functional.cross_entropy
    loss, logits = module.compute_loss((main, aux1, aux2), y)
    assert torch.allclose(loss, ce(main, y) + 0.3 * ce(aux1, y) + 0.5 * ce(aux2, y))
    assert logits is main


def test_wandb_offline_writes_into_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg("train", [o for o in FAST if not o.startswith("logger")] +
                      ["logger=wandb", "data=synthetic", "trainer.max_epochs=1"])
    train(cfg, run_dir=tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert not list(tmp_path.parent.glob("wandb"))  # nothing scattered outside the run dir


def test_a_busy_machine_note_is_printed_and_kept_in_results(tmp_path, monkeypatch, capsys):
    """cnnbench.hardware.busy_cpu_note: the line reaches the console and results.json's hardware record."""
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    results = train_tiny(tmp_path, ["trainer.max_epochs=1"])
    printed = [line for line in capsys.readouterr().out.splitlines() if "the machine is busy" in line]
    assert len(printed) == 1 and "OMP_NUM_THREADS=1" in printed[0]
    assert json.loads((tmp_path / "results.json").read_text())["hardware"]["notes"] == printed
    assert results["hardware"]["notes"] == printed


def test_a_run_finished_after_a_failure_keeps_the_failure_record_in_results(tmp_path):
    """A run resumed after a failed attempt (its failed-rank0.json in the run dir) and finished: the record moves
    into results.json's `earlier_failures`, so nothing beside results.json reads as this attempt's failure."""
    from cnnbench.runtime import record_failure

    try:
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
    except RuntimeError as err:
        record_failure(tmp_path, 0, err, step=7)
    train_tiny(tmp_path, ["trainer.max_epochs=1"])
    assert not list(tmp_path.glob("failed-rank*.json"))
    (failure,) = json.loads((tmp_path / "results.json").read_text())["earlier_failures"]
    assert (failure["file"], failure["step"], failure["error"]) == ("failed-rank0.json", 7, "RuntimeError")
    assert "killed by signal" in failure["message"]
