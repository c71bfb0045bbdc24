"""`cnnbench export`: ONNX and TorchScript files that reproduce the PyTorch logits."""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import compose_cfg


def _reference(ckpt, x):
    from cnnbench.evaluation.engine import load_member

    m = load_member(str(ckpt))
    with torch.inference_mode():
        return m.module(x)  # the module normalises float [0, 1] input itself


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=pytest.mark.slow), "torchscript"])
def test_export_round_trip(tmp_path, tiny_checkpoint, fmt):
    from cnnbench.commands.export import export

    out = export(compose_cfg("export", [f"ckpt_path={tiny_checkpoint}", f"format={fmt}"]), run_dir=tmp_path)
    path = tmp_path / f"resnet20.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert out["file"] == str(path) and path.is_file()
    assert out["check"]["allclose"] and out["check"]["max_abs_diff"] < 1e-3
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["classes"] == [str(i) for i in range(10)] and side["input"]["shape"][1:] == [1, 8, 8]  # digits: gray
    # an independent check: a new batch of another size through the runtime
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    else:
        got = torch.jit.load(str(path))(x)
    assert torch.allclose(got, _reference(tiny_checkpoint, x), atol=1e-4)


def test_export_bad_format_is_one_clear_error(tmp_path, tiny_checkpoint):
    from cnnbench.cli import run_guarded

    with pytest.raises(SystemExit) as stop:
        run_guarded("export", compose_cfg("export", [f"ckpt_path={tiny_checkpoint}", "format=tflite"]))
    assert stop.value.code == 2
    assert not list(tmp_path.glob("*.onnx"))
