"""EMA / Polyak weight averaging through Lightning's WeightAveraging callback (docs/recipes.md)."""
from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from cnnbench.training.averaging import EMA, EMADecay, build_averaging
from tests.helpers import FAST, compose_cfg


def test_ema_decay_warmup_follows_num_updates():
    fn = EMADecay(0.9999, warmup=True)
    assert float(fn.effective(torch.tensor(0))) == pytest.approx(0.1)       # (1+0)/(10+0)
    assert float(fn.effective(torch.tensor(90))) == pytest.approx(91 / 100)
    assert float(fn.effective(torch.tensor(10**6))) == pytest.approx(0.9999)
    plain = EMADecay(0.5, warmup=False)
    out = plain(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor(7))
    assert float(out) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ema.decay=1.5"):
        EMADecay(1.5, warmup=False)


def test_build_averaging_from_config():
    assert build_averaging({"enabled": False}) == []
    (cb,) = build_averaging({"enabled": True, "decay": 0.999, "every_n_steps": 2, "start_step": 3})
    assert isinstance(cb, EMA) and cb.decay == 0.999
    assert [cb.should_update(step_idx=i) for i in range(7)] == [False, False, False, True, False, True, False]
    assert not cb.should_update(epoch_idx=0)


class _WeightsAtTest(Callback):
    def on_test_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_ema_weights_differ_from_raw_and_are_the_ones_evaluated(tmp_path):
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", FAST + ["data=digits", "augmentation=none", "trainer.max_epochs=1",
                                       "data.val_split=0.15", "data.limit_train=256", "schedule=constant",
                                       "ema.enabled=true", "ema.decay=0.9"])
    probe = _WeightsAtTest()
    results = train(cfg, run_dir=tmp_path, callbacks=[probe])
    ckpt = torch.load(results["checkpoint"], map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    key = "model.fc.weight"
    assert not torch.allclose(averaged[key], raw[key])          # the average is not the last iterate
    for k, v in averaged.items():                                 # the test ran on the averaged weights
        if v.is_floating_point():
            assert torch.equal(probe.weights[k], v), k
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "averaging_state" in last and not torch.allclose(last["state_dict"][key], last["current_model_state"][key])
