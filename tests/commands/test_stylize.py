"""`cnnbench stylize` (Gatys et al.): the Gram matrix against the lecture's triple loop, the VGG extractor
from a torchvision-format state dict or a cnnbench checkpoint, the loss falling, the outputs, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnbench.errors import UserError
from cnnbench.stylize import LayerTaps, features_from_state_dict, gram
from tests.helpers import ROOT, compose_cfg

# a VGG-shaped conv stack (torchvision layout: conv, ReLU, …, max-pool) with small widths
SMALL = [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]


def _small_vgg_state(batch_norm: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    ch = 3
    for v in SMALL:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(ch, v, 3, padding=1)] + ([nn.BatchNorm2d(v)] if batch_norm else []) + [nn.ReLU()]
            ch = v
    return {f"features.{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}


def _images(tmp_path, size=(64, 64)):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    content = np.stack([xx * 4 % 256, yy * 4 % 256, (xx + yy) * 2 % 256], -1).astype(np.uint8)  # smooth ramps
    style = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)  # blocky noise
    Image.fromarray(content).save(tmp_path / "content.png")
    Image.fromarray(style[: size[1], : size[0]]).save(tmp_path / "style.png")
    return tmp_path / "content.png", tmp_path / "style.png"


def test_gram_equals_the_lectures_triple_loop():
    torch.manual_seed(0)
    layer = torch.randn(1, 4, 3, 5, dtype=torch.float64)
    n = layer.shape[1]
    f = layer.reshape(n, -1).numpy()
    m = f.shape[1]
    expect = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            for k in range(m):
                expect[i, j] += f[i, k] * f[j, k]
    np.testing.assert_allclose(gram(layer)[0].numpy(), expect, rtol=1e-12)
    batch = torch.randn(3, 4, 2, 2)
    torch.testing.assert_close(gram(batch)[2], gram(batch[2:3])[0])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_features_rebuilt_from_torchvision_layout(batch_norm):
    import torchvision

    tv = torchvision.models.vgg11_bn(weights=None) if batch_norm else torchvision.models.vgg11(weights=None)
    tv.eval()
    feats = features_from_state_dict(tv.state_dict(), "vgg11").eval()
    assert len(feats) == len(tv.features)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(feats(x), tv.features(x))
    taps = LayerTaps(feats, ["conv4_2", "conv1_1", "conv5_1"])
    out = taps(x)
    assert out["conv1_1"].shape == (1, 64, 64, 64) and out["conv4_2"].shape == (1, 512, 8, 8)
    assert out["conv5_1"].shape == (1, 512, 4, 4) and (out["conv1_1"] >= 0).all()  # ReLU outputs
    with pytest.raises(ValueError, match="conv6_1"):
        LayerTaps(feats, ["conv6_1"])


def test_stylize_loss_halves_and_writes_outputs(tmp_path):
    from cnnbench.commands.stylize import stylize

    content, style = _images(tmp_path, size=(64, 48))
    torch.save(_small_vgg_state(), tmp_path / "vgg.pth")
    cfg = compose_cfg("stylize", [f"content={content}", f"style={style}", f"weights={tmp_path / 'vgg.pth'}",
                                  "steps=50", "size=64", f"output={tmp_path / 'out.png'}", "progress=false",
                                  "trainer.accelerator=cpu"])
    result = stylize(cfg, run_dir=tmp_path / "run")
    assert result["loss_final"] <= 0.5 * result["loss_first"]
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (64, 48)  # the content image's size
    curve = json.loads((tmp_path / "out.json").read_text())["curve"]
    assert len(curve) == 51 and all(set(c) >= {"total", "content", "style"} for c in curve)


def test_adam_solver_and_cnnbench_checkpoint(tmp_path):
    """A cnnbench vgg checkpoint's features are read the same way (state dict keys `model.features.*`)."""
    from cnnbench.commands.stylize import stylize
    from cnnbench.stylize import load_extractor

    state = {f"model.{k}": v for k, v in _small_vgg_state().items()}
    record = {"model": {"name": "vgg11"}, "in_chans": 3, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    torch.save({"state_dict": state, "cnnbench": record}, tmp_path / "vgg.ckpt")
    feats, mean, std = load_extractor(str(tmp_path / "vgg.ckpt"), None)
    assert sum(isinstance(m, nn.Conv2d) for m in feats) == 8 and mean == (0.5,) * 3 and std == (0.25,) * 3
    content, style = _images(tmp_path)
    cfg = compose_cfg("stylize", [f"content={content}", f"style={style}", f"ckpt_path={tmp_path / 'vgg.ckpt'}",
                                  "steps=20", "size=32", "stylize.solver=adam", "stylize.lr=0.05",
                                  "progress=false", "trainer.accelerator=cpu"])
    result = stylize(cfg, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "stylized.png").is_file() and result["loss_final"] < result["loss_first"]
    record["model"]["name"] = "resnet18"
    torch.save({"state_dict": state, "cnnbench": record}, tmp_path / "r.ckpt")
    with pytest.raises(UserError, match="vgg"):
        load_extractor(str(tmp_path / "r.ckpt"), None)


def test_no_extractor_is_one_clear_error():
    from cnnbench.stylize import load_extractor

    with pytest.raises(UserError, match="ckpt_path=.*weights="):
        load_extractor(None, None)


@pytest.mark.slow
def test_cli_wrong_path_is_one_line(tmp_path):
    content, style = _images(tmp_path)
    args = [f"content={content}", f"style={style}", "weights=/nonexistent/vgg19.pth", "steps=1", "size=32",
            f"hydra.run.dir={tmp_path / 'r'}"]
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "stylize", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["cnnbench stylize: error: weights file not found: /nonexistent/vgg19.pth "
                     "(a torchvision vgg16/vgg19 state dict .pth)"]
    # nothing written (Hydra itself makes the run dir and its job log before the command runs)
    assert not (tmp_path / "r").exists() or {p.suffix for p in (tmp_path / "r").iterdir()} <= {".log"}


@pytest.mark.parametrize("extra,message", [
    ([], "pass ckpt_path="),
    (["weights=VGG", "content=/nonexistent/photo.jpg"], "content image not found: /nonexistent/photo.jpg"),
    (["weights=VGG", "stylize.solver=sgd"], "stylize.solver='sgd' is invalid; valid: lbfgs or adam"),
    (["weights=VGG", "stylize.style_layers=[conv1_1,conv9_9]"], "conv9_9 not in this VGG"),
])
def test_bad_input_names_it(tmp_path, extra, message):
    from cnnbench.commands.stylize import stylize
    from cnnbench.config_schema import validate

    content, style = _images(tmp_path)
    torch.save(_small_vgg_state(), tmp_path / "vgg.pth")
    extra = [e.replace("VGG", str(tmp_path / "vgg.pth")) for e in extra]
    cfg = compose_cfg("stylize", [f"content={content}", f"style={style}", *extra, "steps=1", "size=32",
                                  "progress=false", "trainer.accelerator=cpu"])
    with pytest.raises(UserError) as err:
        validate(cfg)  # what the CLI does first
        stylize(cfg, run_dir=tmp_path / "run")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
