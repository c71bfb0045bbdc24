"""Speed knobs keep the numbers: bf16-mixed and channels_last outputs stay close to fp32; compile (slow)
trains, checkpoints and evaluates like the eager model."""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import compose_cfg, train_tiny


def _module(channels_last: bool, model: str = "resnet20"):
    from cnnbench.training.module import ClassificationModule

    torch.manual_seed(0)
    norm = {"mode": "channel", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return ClassificationModule(model={"name": model, "compile": False}, num_classes=10, in_chans=3,
                                normalization=norm, classes=[str(i) for i in range(10)], image_size=32,
                                channels_last=channels_last).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)


def test_channels_last_matches_contiguous():
    x = _batch()
    a, b = _module(False), _module(True)
    convs = [p for p in b.model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    with torch.no_grad():
        ref, out = a(x), b(x)
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)


def test_bf16_mixed_close_to_fp32():
    """Lightning's bf16-mixed precision context (what trainer.precision=bf16-mixed runs under) on the CPU."""
    import lightning as L

    x = _batch()
    module = _module(True)
    plugin = L.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False,
                       enable_checkpointing=False, enable_progress_bar=False).precision_plugin
    with torch.no_grad():
        ref = module(x)
        with plugin.forward_context():
            out = module(x)
    assert out.dtype == torch.bfloat16  # autocast really ran the network in bf16
    out = out.float()
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.75


def test_compiled_and_eager_checkpoints_are_interchangeable():
    """A compiled module saves eager parameter names and loads an eager checkpoint (and vice versa)
    (torch.compile is lazy: nothing is compiled until the first forward, so this test is fast)."""
    from cnnbench.training.module import ClassificationModule

    norm = {"mode": "channel", "mean": [0.5] * 3, "std": [0.25] * 3}
    kwargs = dict(num_classes=10, in_chans=3, normalization=norm, classes=[str(i) for i in range(10)], image_size=32)
    eager = ClassificationModule(model={"name": "resnet20", "compile": False}, **kwargs)
    compiled = ClassificationModule(model={"name": "resnet20", "compile": True}, **kwargs)
    assert any("_orig_mod." in k for k in compiled.state_dict())
    saved = {"state_dict": compiled.state_dict()}
    compiled.on_save_checkpoint(saved)
    assert not any("_orig_mod" in k for k in saved["state_dict"])
    eager.on_load_checkpoint(saved)
    eager.load_state_dict(saved["state_dict"])  # strict: every key matches
    back = {"state_dict": eager.state_dict()}
    compiled.on_load_checkpoint(back)
    compiled.load_state_dict(back["state_dict"])
    w = next(iter(eager.state_dict().values()))
    assert torch.equal(next(iter(compiled.state_dict().values())), w)


@pytest.mark.slow
def test_compiled_model_trains_checkpoints_and_evaluates(tmp_path):
    """model.compile=true: training runs compiled, the checkpoint holds eager names and loads into an eager
    model, and eval reproduces the training run's test accuracy."""
    from cnnbench.checkpoint import load_checkpoint, module_from_checkpoint
    from cnnbench.commands.evaluate import evaluate

    results = train_tiny(tmp_path / "run", ["model.compile=true", "trainer.max_epochs=1"])
    ckpt = load_checkpoint(results["checkpoint"])
    assert ckpt["cnnbench"]["model"]["compile"] is True  # it really was a compiled run
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    module, _ = module_from_checkpoint(results["checkpoint"])
    assert not any("_orig_mod" in k for k in module.state_dict())
    cfg = compose_cfg("eval", [f"ckpt_path={results['checkpoint']}", "data=digits", "data.num_workers=0",
                               "data.persistent_workers=false"])
    out = evaluate(cfg, run_dir=tmp_path / "eval")
    assert out["acc1"] == pytest.approx(results["test/acc1"], abs=1e-6)
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["acc1"] == out["acc1"]

