"""eval, profile and predict in-process on the tiny checkpoints."""
from __future__ import annotations

import json

import pytest

from cnnbench.errors import UserError
from tests.helpers import compose_cfg


def test_eval_matches_training_test_accuracy(tmp_path, tiny_checkpoint):
    from cnnbench.commands.evaluate import evaluate

    results = json.loads((tiny_checkpoint.parent.parent / "results.json").read_text())
    cfg = compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "data=digits", "data.num_workers=0",
                               "data.persistent_workers=false"])
    out = evaluate(cfg, run_dir=tmp_path)
    written = json.loads((tmp_path / "eval.json").read_text())
    assert {"acc1", "acc5", "n_images", "crops", "mode", "models"} <= set(written)
    assert written["crops"] == 1 and written["models"] == [str(tiny_checkpoint)]
    assert out["acc1"] == pytest.approx(results["test/acc1"], abs=1e-6)


@pytest.mark.parametrize("crops", [7, 0])
def test_eval_rejects_bad_crops(tmp_path, tiny_checkpoint, crops):
    from cnnbench.commands.evaluate import evaluate

    cfg = compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "data=digits", f"crops={crops}"])
    with pytest.raises(UserError, match="valid choices: 1, 10, 12, 50, 144"):
        evaluate(cfg, run_dir=tmp_path)


def test_eval_refuses_other_class_count(tmp_path, tiny_checkpoint):
    from cnnbench.checkpoint import CheckpointError
    from cnnbench.commands.evaluate import evaluate

    cfg = compose_cfg("eval", [f"ckpt_path={tiny_checkpoint}", "data=synthetic", "data.num_classes=4"])
    with pytest.raises(CheckpointError, match="has 10 classes, the data has 4"):
        evaluate(cfg, run_dir=tmp_path)


def test_profile_counts_and_writes_json(tmp_path):
    from cnnbench.commands.profile import profile

    out = profile(compose_cfg("profile", ["model=resnet110"]), run_dir=tmp_path)
    assert out["params"] == 1_727_962 and out["params_rel_diff"] == 0
    assert out["macs"] == pytest.approx(252.9e6, rel=0.01)
    assert out["counted_on"] == "meta"
    written = json.loads((tmp_path / "profile.json").read_text())
    assert {"model", "params", "macs", "input_size", "paper_params", "paper_macs"} <= set(written)


def test_predict_top5_with_class_names(tmp_path, tiny_checkpoint, jpeg_imagefolder):
    from cnnbench.commands.predict import predict

    image = next((jpeg_imagefolder / "val").rglob("*.jpg"))
    rows = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={image}"]))
    assert len(rows) == 5
    assert all(r["class"] in [str(i) for i in range(10)] for r in rows)
    probs = [r["prob"] for r in rows]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_predict_crops_and_ensemble_on_one_image(tmp_path, tiny_checkpoint, tiny_checkpoint_b, jpeg_imagefolder):
    from cnnbench.commands.predict import predict

    image = next((jpeg_imagefolder / "val").rglob("*.jpg"))
    one = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={image}", "topk=3"]))
    ten = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={image}", "crops=10", "topk=3"]))
    assert len(one) == len(ten) == 3 and [r["prob"] for r in one] != [r["prob"] for r in ten]
    both = predict(compose_cfg("predict", [f"ckpt_path=[{tiny_checkpoint},{tiny_checkpoint_b}]", f"image={image}",
                                           "topk=10"]))
    b = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint_b}", f"image={image}", "topk=10"]))
    a = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={image}", "topk=10"]))
    pa, pb = ({r["class"]: r["prob"] for r in x} for x in (a, b))
    for r in both:
        assert r["prob"] == pytest.approx((pa[r["class"]] + pb[r["class"]]) / 2, abs=1e-5)


def test_predict_folder_writes_csv_and_skips_unreadable_files(tmp_path, tiny_checkpoint, jpeg_imagefolder):
    import csv
    import shutil

    from cnnbench.commands.predict import predict

    folder = tmp_path / "imgs"
    shutil.copytree(jpeg_imagefolder / "val", folder)
    (folder / "broken.jpg").write_bytes(b"not an image")
    n = len(list(folder.rglob("*.jpg"))) - 1
    rows = predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={folder}", "topk=2",
                                           f"output={tmp_path / 'p.csv'}"]))
    with open(tmp_path / "p.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(rows) == len(table) == n
    assert list(table[0]) == ["image", "class1", "prob1", "class2", "prob2"]
    assert all(float(t["prob1"]) >= float(t["prob2"]) for t in table)
    assert not any("broken" in t["image"] for t in table)


@pytest.mark.parametrize("args,needle", [
    (["image=/nonexistent/x.jpg"], "image not found"),
    (["crops=7"], "valid choices: 1, 10, 12, 50, 144"),
])
def test_predict_bad_input_names_it(tmp_path, tiny_checkpoint, jpeg_imagefolder, args, needle):
    from cnnbench.commands.predict import predict

    image = next((jpeg_imagefolder / "val").rglob("*.jpg"))
    with pytest.raises(UserError, match=needle):
        predict(compose_cfg("predict", [f"ckpt_path={tiny_checkpoint}", f"image={image}", *args]))


def test_profile_list_names_every_model_and_its_builder():
    """`cnnbench profile --list`: one row per registered model, pointing at the line that builds it."""
    from cnnbench.commands.profile import model_listing
    from cnnbench.models import list_models
    from tests.helpers import ROOT

    rows = {line.split()[0]: line.split()[-1] for line in model_listing().splitlines()[1:]}
    assert sorted(rows) == list_models()
    for where in rows.values():
        path, line = where.rsplit(":", 1)
        assert (ROOT / path).is_file() and int(line) <= len((ROOT / path).read_text().splitlines())
