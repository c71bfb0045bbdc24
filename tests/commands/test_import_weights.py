"""`cnnbench import-weights`: a random torchvision ResNet-18 state_dict → a cnnbench checkpoint that eval (10 crops,
multiscale, an ensemble), predict (ImageNet's class names), export and `train init_from=` accept, with eval's numbers
equal to torchvision's own forward pass on the same crops; bad files are one line naming the key and shapes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from cnnbench.errors import UserError
from tests.helpers import compose_cfg

IMAGENET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def random_resnet18(num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def import_file(tmp_path: Path, net: torch.nn.Module, name: str = "resnet18.pth", model: str = "resnet18",
                extra: tuple = ()) -> tuple[Path, dict]:
    from cnnbench.commands.import_weights import import_weights

    pth = tmp_path / name
    torch.save(net.state_dict(), pth)
    out = tmp_path / f"{pth.stem}.ckpt"
    summary = import_weights(compose_cfg("import-weights", [f"model={model}", f"path={pth}", f"output={out}", *extra]),
                             run_dir=tmp_path / f"run-{pth.stem}")
    return out, summary


@pytest.fixture(scope="module")
def photos(tmp_path_factory, jpeg_imagefolder) -> Path:
    """The jpeg_imagefolder's four classes with one val photo each (10 crops of 224 px are many forwards on a CPU)."""
    import shutil

    root = tmp_path_factory.mktemp("photos")
    for split, n in (("train", 1), ("val", 1)):
        for d in sorted((jpeg_imagefolder / split).iterdir()):
            (root / split / d.name).mkdir(parents=True)
            for f in sorted(d.glob("*.jpg"))[:n]:
                shutil.copy(f, root / split / d.name / f.name)
    return root


@pytest.fixture(scope="module")
def four_class(tmp_path_factory):
    """A random 4-class torchvision ResNet-18 (the jpeg_imagefolder has 4 classes) and its imported checkpoint."""
    tmp = tmp_path_factory.mktemp("import4")
    net = random_resnet18(num_classes=4)
    ckpt, _ = import_file(tmp, net)
    return net, ckpt


def eval_cfg(ckpt, root: Path, *extra: str):
    return compose_cfg("eval", [f"ckpt_path={ckpt}", "data=imagefolder", f"data.root={root}", "data.num_workers=0",
                                "data.persistent_workers=false", "eval.progress=false", "hardware=cpu", *extra])


def torchvision_probs(net, ckpt: Path, root: Path, crops: int, cfg_eval) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax averaged over our views, computed by torchvision's network on torchvision-normalised crops."""
    from cnnbench.checkpoint import load_checkpoint
    from cnnbench.data.datamodule import load_image_file
    from cnnbench.evaluation.plan import make_plan

    record = load_checkpoint(ckpt)["cnnbench"]
    plan = make_plan(cfg_eval, crops, record, 224, None)
    normalize = IMAGENET.transforms()  # torchvision's own mean/std (and its resize/crop: replaced by our views)
    classes = sorted(p.name for p in (root / "train").iterdir())
    probs, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / "val" / name).glob("*.jpg")):
            per_part = []
            for _, views in plan.build(load_image_file(str(f))):
                x = torchvision.transforms.v2.functional.normalize(views.float() / 255, normalize.mean, normalize.std)
                with torch.no_grad():
                    per_part.append(net(x).softmax(1).mean(0))
            probs.append(torch.stack(per_part).mean(0))
            labels.append(label)
    return torch.stack(probs), torch.tensor(labels)


@pytest.mark.slow
def test_eval_and_predict_on_10_crops_equal_torchvision_forward_on_the_same_crops(tmp_path, four_class, photos):
    """eval's accuracy, and predict's top probability per image (not just the accuracy), with crops=10 equal
    those of torchvision's network run directly on the same crops with torchvision's normalisation."""
    import csv

    from cnnbench.commands.evaluate import evaluate
    from cnnbench.commands.predict import predict

    net, ckpt = four_class
    cfg = eval_cfg(ckpt, photos, "crops=10")
    out = evaluate(cfg, run_dir=tmp_path)
    probs, labels = torchvision_probs(net, ckpt, photos, 10, cfg.eval)
    assert out["views_per_image"] == 10 and out["n_images"] == len(labels)
    assert out["acc1"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()), abs=1e-9)
    assert 0 < probs.max(1).values.min() < 1  # a real, non-degenerate forward

    predict(compose_cfg("predict", [f"ckpt_path={ckpt}", f"image={photos / 'val'}", "crops=10", "topk=1",
                                    f"output={tmp_path / 'p.csv'}"]), run_dir=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    ours = {Path(r["image"]).relative_to(photos / "val").as_posix(): float(r["prob1"]) for r in rows}
    files = [f"{d.name}/{f.name}" for d in sorted((photos / "val").iterdir()) for f in sorted(d.glob("*.jpg"))]
    np.testing.assert_allclose([ours[f] for f in files], probs.max(1).values.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_multiscale_and_an_ensemble_of_imports_run(tmp_path, four_class, photos):
    from cnnbench.commands.evaluate import evaluate

    net, ckpt = four_class
    other, _ = import_file(tmp_path, random_resnet18(num_classes=4, seed=1), name="other.pth")
    multi = evaluate(eval_cfg(ckpt, photos, "eval.mode=multiscale", "eval.scales=[224,256]"),
                     run_dir=tmp_path / "multi")
    assert multi["mode"] == "multiscale" and multi["views_per_image"] == 4
    both = evaluate(eval_cfg(f"[{ckpt},{other}]", photos, "crops=10"), run_dir=tmp_path / "ens")
    assert len(both["models"]) == 2 and both["views_per_image"] == 20


@pytest.fixture(scope="module")
def imagenet_import(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import1000")
    net = random_resnet18()
    ckpt, summary = import_file(tmp, net, name="resnet18-f37072fd.pth")  # torch hub's file name for IMAGENET1K_V1
    return net, ckpt, summary


def test_checkpoint_record_and_weights_only_loading(imagenet_import):
    _, ckpt, summary = imagenet_import
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    record = raw["cnnbench"]
    assert record["model"] == {"name": "resnet18", "compile": False, "shortcut": "B"}
    assert record["classes"] == IMAGENET.meta["categories"] and record["classes"][281] == "tabby"
    t = IMAGENET.transforms()
    assert record["normalization"] == {"mean": list(t.mean), "std": list(t.std)}
    assert record["image_size"] == t.crop_size[0] and math.floor(224 / record["crop_pct"]) == t.resize_size[0]
    assert summary["weights"] == "IMAGENET1K_V1" and summary["weights_from"] == "file name"


def test_predict_prints_imagenet_class_names(imagenet_import, jpeg_imagefolder, capsys):
    from cnnbench.commands.predict import predict

    net, ckpt, _ = imagenet_import
    image = next((jpeg_imagefolder / "val").rglob("*.jpg"))
    rows = predict(compose_cfg("predict", [f"ckpt_path={ckpt}", f"image={image}", "topk=3"]))
    printed = capsys.readouterr().out
    assert all(r["class"] == IMAGENET.meta["categories"][r["index"]] for r in rows)
    assert rows[0]["class"] in printed and "class " not in printed


def test_export_and_init_from_accept_the_import(tmp_path, imagenet_import):
    from cnnbench.commands.export import export
    from cnnbench.models import create_model
    from cnnbench.training.recipe_callbacks import init_from_checkpoint

    net, ckpt, _ = imagenet_import
    result = export(compose_cfg("export", [f"ckpt_path={ckpt}", "format=torchscript", "check_batch=1"]),
                    run_dir=tmp_path)
    assert result["check"]["allclose"] and Path(result["file"]).is_file()
    target = create_model("resnet18", num_classes=10, shortcut="B")
    loaded = init_from_checkpoint(target, ckpt, "resnet18", model_cfg={"name": "resnet18", "shortcut": "B"})
    assert loaded["new"] == ["fc.bias", "fc.weight"] and len(loaded["loaded"]) == len(target.state_dict()) - 2
    torch.testing.assert_close(target.stem[0][0].weight, net.conv1.weight)
    assert loaded["options_differ"] == {}


def test_init_from_an_import_warns_when_the_run_builds_another_network(imagenet_import, caplog):
    """Fine-tuning the imported ResNet-18 (shortcut=B) as the paper's (shortcut=A) loads the convs, but the network
    is another one: one warning names the option and the override."""
    from cnnbench.models import create_model
    from cnnbench.training.recipe_callbacks import init_from_checkpoint

    _, ckpt, _ = imagenet_import
    caplog.set_level("WARNING", logger="cnnbench")
    loaded = init_from_checkpoint(create_model("resnet18"), ckpt, "resnet18",
                                  model_cfg={"name": "resnet18", "shortcut": "A"})
    assert loaded["options_differ"] == {"shortcut": "B"}
    assert "model.shortcut=B" in caplog.text


def test_bad_files_are_one_line_naming_the_key_and_shapes(tmp_path):
    from cnnbench.pretrained import import_torchvision

    with pytest.raises(UserError, match="no such file"):
        import_torchvision("resnet18", tmp_path / "absent.pth")
    sd = random_resnet18().state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=r"layer2\.0\.conv1\.weight has shape \[128, 64, 1, 1\], the network needs "
                                        r"\[128, 64, 3, 3\]"):
        import_torchvision("resnet18", tmp_path / "bad.pth")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError, match=r"unexpected key 'layer1\.2\.conv1\.weight' \[64, 64, 3, 3\]") as err:
        import_torchvision("resnet18", tmp_path / "r34.pth")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="key 'features.0.weight' is missing .* first key is 'conv1.weight'"):
        import_torchvision("vgg11", tmp_path / "r34.pth")
    with pytest.raises(UserError, match="googlenet is not the paper's GoogLeNet with BN: the '5×5' branch"):
        import_torchvision("googlenet", tmp_path / "r34.pth")
    with pytest.raises(UserError, match="model='plain18' has no torchvision counterpart.*valid choices: .*resnet18"):
        import_torchvision("plain18", tmp_path / "r34.pth")


@pytest.mark.slow
def test_cli_import_then_bad_path_exit_2(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cnnbench", "import-weights", "model=resnet50",
                        f"path={tmp_path / 'nothing.pth'}", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr


def test_the_documented_fine_tuning_line_composes_with_the_imported_bn_settings():
    """docs/pretrained.md: `train experiment=efficientnet_transfer init_from=… +model.bn_eps=1e-05
    +model.bn_momentum=0.1` trains the network the EfficientNet-B0 import describes."""
    from cnnbench.pretrained import entries

    cfg = compose_cfg("train", ["experiment=efficientnet_transfer", "init_from=b0.ckpt", "+model.bn_eps=1e-05",
                                "+model.bn_momentum=0.1"])
    options = entries()["efficientnet_b0"].options({})
    assert cfg.model.name == "efficientnet_b0" and {k: cfg.model[k] for k in options} == options


@pytest.mark.slow
def test_144_crops_and_vgg_dense_evaluation_of_imports(tmp_path, four_class, photos):
    """GoogLeNet's 144 crops on an imported ResNet, VGG's dense (fully-convolutional) evaluation on an imported VGG."""
    from cnnbench.commands.evaluate import evaluate

    _, ckpt = four_class
    out = evaluate(eval_cfg(ckpt, photos, "crops=144", "data.limit_test=1"), run_dir=tmp_path / "144")
    assert out["views_per_image"] == 144 and out["n_images"] == 1
    torch.manual_seed(0)
    vgg, _ = import_file(tmp_path, torchvision.models.vgg11(weights=None, num_classes=4).eval(), name="vgg11.pth",
                         model="vgg11")
    dense = evaluate(eval_cfg(vgg, photos, "eval.mode=dense", "eval.scales=[224]", "data.limit_test=1"),
                     run_dir=tmp_path / "dense")
    assert dense["mode"] == "dense" and dense["views_per_image"] == 2


def test_unknown_weights_entry_names_the_choices(tmp_path):
    from cnnbench.pretrained import import_torchvision

    torch.save(random_resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match="weights='V3'; valid choices for resnet18: IMAGENET1K_V1"):
        import_torchvision("resnet18", tmp_path / "r18.pth", weights="V3")


@pytest.mark.slow
def test_train_init_from_an_import_runs(tmp_path, four_class, photos):
    from cnnbench.commands.train import train
    from tests.helpers import FAST

    _, ckpt = four_class
    cfg = compose_cfg("train", FAST + ["model=resnet18", "model.shortcut=B", "data=imagefolder", f"data.root={photos}",
                                       "data.image_size=64", "data.val_split=0", "augmentation=none",
                                       "data.batch_size=4", "trainer.max_steps=1", "trainer.max_epochs=1",
                                       f"init_from={ckpt}"])
    results = train(cfg, run_dir=tmp_path / "ft")
    assert results["model"] == "resnet18" and Path(results["checkpoint"]).is_file()
