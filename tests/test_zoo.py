"""The model zoo (docs/zoo.md): every `experiment=zoo_<model>` recipe composes on Fashion-MNIST with the network it
names, keeps its paper recipe's optimiser numbers and schedule shape, and marks every reduction with the paper's
value; `cnnbench analyze zoo` builds the table from two tiny fake runs and copies them as trimmed artifacts; and
every committed artifact under docs/zoo/ names a command that composes the run it records."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import CONF, ROOT, compose_cfg

ZOO = ["alexnet", "vgg11", "vgg16", "googlenet", "inception_v2", "inception_v3", "inception_v4",
       "inception_resnet_v1", "inception_resnet_v2", "resnet18", "resnet50", "resnet20", "resnet56",
       "highway_conv", "efficientnet_b0"]
RECIPES = sorted(p.stem for p in (CONF / "experiment").glob("zoo_*.yaml"))
# the ImageNet / CIFAR recipe (docs/recipes.md) each zoo recipe scales down, and the model that recipe is read with
SOURCE = {"alexnet": ("alexnet_imagenet", None), "vgg11": ("vgg_imagenet", "vgg11"), "vgg16": ("vgg_imagenet", None),
          "googlenet": ("googlenet_ilsvrc14", None), "inception_v2": ("inception_v2_imagenet", None),
          "inception_v3": ("inception_v3_imagenet", None), "inception_v4": ("inception_v4_imagenet", None),
          "inception_resnet_v1": ("inception_resnet_v2_imagenet", None),
          "inception_resnet_v2": ("inception_resnet_v2_imagenet", None),
          "resnet18": ("resnet_imagenet", "resnet18"), "resnet50": ("resnet_imagenet", None),
          "resnet20": ("resnet_cifar", "resnet20"), "resnet56": ("resnet_cifar", "resnet56"),
          "highway_conv": ("resnet_cifar", None), "efficientnet_b0": ("efficientnet_imagenet", None)}
PAPER_KEYS = ("optimizer.name", "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "schedule.name",
              "schedule.gamma", "loss.label_smoothing", "ema.enabled", "augmentation.name")


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if node is not None else None
    return node


def _lines(recipe: str) -> dict[str, str]:
    """key → its whole line, for the keys a recipe file sets (the last component; first occurrence)."""
    out: dict[str, str] = {}
    for line in (CONF / "experiment" / f"{recipe}.yaml").read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z_]+):", line)
        if m:
            out.setdefault(m.group(1), line)
    return out


def test_every_seed_network_has_a_zoo_recipe():
    assert RECIPES == sorted(f"zoo_{m}" for m in ZOO)


@pytest.mark.parametrize("recipe", RECIPES)
def test_zoo_recipe_composes_on_fashion_mnist_with_its_model(recipe):
    from cnnbench.models import model_info

    c = compose_cfg("train", [f"experiment={recipe}"])
    name = recipe.removeprefix("zoo_")
    assert c.model.name == name and c.data.name == "fashion_mnist"
    assert c.data.limit_train is None and c.data.limit_test is None  # all training images, the official 10k test
    assert c.data.image_size >= model_info(name).min_input_size
    assert c.trainer.max_epochs > 0 and c.trainer.max_steps == -1  # a row is sized in epochs (docs/zoo.md)
    assert c.logger.name == "csv" and c.checkpoint.save_last  # metrics.csv for the artifact; resume=auto
    text = (CONF / "experiment" / f"{recipe}.yaml").read_text()
    assert text.startswith("# @package _global_\n") and "§" in text.split("defaults:")[0]  # the paper's section


@pytest.mark.parametrize("recipe", RECIPES)
def test_zoo_recipe_keeps_its_papers_numbers(recipe):
    """Optimiser, LR, momentum, weight decay, schedule kind and factor, label smoothing, averaging and the
    augmentation kind are the paper recipe's (docs/recipes.md); only lengths, sizes and widths are reduced."""
    name = recipe.removeprefix("zoo_")
    source, model = SOURCE[name]
    zoo = compose_cfg("train", [f"experiment={recipe}"])
    paper = compose_cfg("train", [f"experiment={source}", *([f"model={model}"] if model else [])])
    for key in PAPER_KEYS:
        ours, theirs = _get(zoo, key), _get(paper, key)
        if key == "schedule.name" and theirs == "plateau":
            assert ours == "multistep", f"{recipe}: a plateau rule becomes ÷10 at fixed points"
            continue
        if key == "schedule.gamma" and theirs is None:  # the plateau rule's factor
            theirs = paper.schedule.factor
        if key == "augmentation.name" and name == "highway_conv":
            theirs = "cifar"
        assert ours == theirs, f"{recipe}: {key} = {ours}, the paper recipe {source} has {theirs}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_zoo_schedule_keeps_the_papers_shape(recipe):
    """Exponential decay: as many decays over the shortened run as the paper's run had; ÷10 steps at 50% and
    75% of the run (He et al. 2015 §4.2's positions) where the paper divides by 10."""
    c = compose_cfg("train", [f"experiment={recipe}"])
    epochs = c.trainer.max_epochs
    if c.schedule.name == "exponential":
        name = recipe.removeprefix("zoo_")
        paper = compose_cfg("train", [f"experiment={SOURCE[name][0]}"])
        if paper.trainer.max_epochs > 0:
            assert epochs / c.schedule.decay_every_epochs == pytest.approx(
                paper.trainer.max_epochs / paper.schedule.decay_every_epochs, rel=0.02)
    else:
        assert c.schedule.name == "multistep" and c.schedule.gamma == 0.1
        assert [abs(m - f * epochs) <= 0.5 for m, f in zip(c.schedule.milestones_epochs, (0.5, 0.75), strict=True)] \
            == [True, True]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_reduction_is_marked_with_the_papers_value(recipe):
    """Every `reduced:` comment names the paper's value; the reductions the test can see carry one: a shorter run,
    an input below the network's native size (28, the images' own size, is not a reduction), a width multiplier."""
    from cnnbench.models import model_info

    text = (CONF / "experiment" / f"{recipe}.yaml").read_text()
    for line in text.splitlines():
        comment = line.split("#", 1)[1] if "#" in line else ""
        if re.search(r"\breduced:", comment):
            assert re.search(r"paper\S*\s.*\d", comment), f"{recipe}: a reduction without the paper's value: {line}"
    lines = _lines(recipe)
    c = compose_cfg("train", [f"experiment={recipe}"])
    must = ["max_epochs"]
    if 28 < c.data.image_size < model_info(c.model.name).input_size:
        must.append("image_size")
    if (c.model.get("scaling") or {}).get("width_mult") not in (None, 1.0):
        must.append("width_mult")
    for key in must:
        assert re.search(r"#.*\breduced: .*paper", lines[key]), f"{recipe}: {key} is reduced: {lines[key].strip()}"


def test_alexnet_zoo_init_points_at_the_measurement():
    """The zoo row does not use §5's N(0, 0.01): the recipe says why, pointing at docs/zoo.md."""
    text = (CONF / "experiment" / "zoo_alexnet.yaml").read_text()
    assert compose_cfg("train", ["experiment=zoo_alexnet"]).model.init != "paper"
    assert "docs/zoo.md" in text and "AlexNet's 2012 initialisation" in text


# -- the table ------------------------------------------------------------------------------------------------------
def _fake_run(root: Path, recipe: str, seed: int, acc: float, extra: list[str] = ()) -> Path:
    """A finished run dir as `cnnbench train experiment=<recipe>` leaves it: results.json, metrics.csv, .hydra/."""
    from omegaconf import OmegaConf

    run = root / f"{recipe}_s{seed}"
    (run / ".hydra").mkdir(parents=True)
    overrides = [f"experiment={recipe}", f"run_name={run.name}", f"seed={seed}", *extra]
    cfg = compose_cfg("train", overrides)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    results = {"model": cfg.model.name, "data": "fashion_mnist", "seed": seed, "test/acc1": acc, "epochs": 10,
               "steps": 4300, "wall_s": 900.0, "run_dir": str(run), "checkpoint": str(run / "checkpoints/last.ckpt"),
               "resumed_from": None, "hardware": {"precision": "bf16-mixed"},
               "machine": {"cpu_model": "AMD EPYC", "cpu_cores": 2, "cpu_flags": ["avx2", "avx512_bf16"],
                           "torch_threads": 1}}
    (run / "results.json").write_text(json.dumps(results))
    (run / "metrics.csv").write_text(f"epoch,step,train/loss,test/acc1\n0,49,1.2,\n9,4299,,{acc}\n")
    return run


def test_analyze_zoo_builds_the_table_and_copies_trimmed_artifacts(tmp_path):
    from cnnbench.commands.analyze import analyze

    runs = tmp_path / "outputs"
    for seed, acc in ((42, 0.91), (43, 0.93)):
        _fake_run(runs, "zoo_resnet20", seed, acc)
    _fake_run(runs, "zoo_resnet56", 42, 0.5, ["data.limit_train=9600", "trainer.max_steps=150"])  # a smoke run
    _fake_run(runs, "zoo_resnet56", 43, 0.6, ["optimizer.lr=0.03", "logger=csv"])  # a trial: not the recipe as written
    doc = tmp_path / "zoo.md"
    doc.write_text("# zoo\n\n<!-- zoo-table: begin (cnnbench analyze zoo) -->\nold\n<!-- zoo-table: end -->\nafter\n")
    artifacts = tmp_path / "docs_zoo"
    summary = analyze(compose_cfg("analyze", ["analysis=zoo", f"runs={runs}/zoo_*", f"copy_to={artifacts}",
                                              f"doc={doc}"]), run_dir=tmp_path / "out")
    assert {r["seed"] for r in summary["runs"]} == {42, 43} and all(r["artifact"] for r in summary["runs"])
    # the artifacts: results.json (paths trimmed, recipe, command and profile added) + metrics.csv, per seed
    copied = json.loads((artifacts / "zoo_resnet20" / "seed43" / "results.json").read_text())
    assert str(tmp_path) not in json.dumps(copied) and copied["run_dir"].startswith("…")
    assert copied["zoo"]["recipe"] == "zoo_resnet20" and copied["zoo"]["profile"]["params"] == 269_434  # ResNet-20, 1 channel
    assert copied["zoo"]["command"].startswith("cnnbench train experiment=zoo_resnet20 run_name=zoo_resnet20_s43")
    assert (artifacts / "zoo_resnet20" / "seed42" / "metrics.csv").read_text().startswith("epoch,step")
    # the table: mean ± std over the two seeds, every other recipe "not yet run", the public rows beside ours
    text = doc.read_text()
    assert text.startswith("# zoo\n\n<!-- zoo-table: begin") and text.endswith("<!-- zoo-table: end -->\nafter\n")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert set(rows) >= set(ZOO)
    assert "0.9200 ± 0.0141 (seeds 42, 43)" in rows["resnet20"] and "(zoo/zoo_resnet20/)" in rows["resnet20"]
    assert "269.4 k" in rows["resnet20"] and "28²×1" in rows["resnet20"] and "AMD EPYC, 2 cores" in rows["resnet20"]
    assert not (artifacts / "zoo_resnet56").exists()  # neither the smoke run nor the trial is copied as the row
    assert "not yet run" in rows["resnet56"] and "0.949" in rows["resnet18"] and "0.899" in rows["alexnet"]
    assert (tmp_path / "out" / "zoo.md").read_text() in text
    numbers = json.loads((artifacts / "zoo.json").read_text())["table"]
    assert numbers["zoo_resnet20"]["test_acc1_mean"] == pytest.approx(0.92) and numbers["zoo_resnet20"]["seeds"] == [42, 43]
    assert numbers["zoo_resnet56"] == {"status": "not yet run"} and str(tmp_path) not in json.dumps(numbers)
    # rebuilt from the artifacts alone: the same table
    again = analyze(compose_cfg("analyze", ["analysis=zoo", f"runs={artifacts}/*/seed*"]), run_dir=tmp_path / "again")
    assert (tmp_path / "again" / "zoo.md").read_text() == (tmp_path / "out" / "zoo.md").read_text()
    assert len(again["runs"]) == 2


def test_analyze_runs_takes_a_list_of_globs(tmp_path):
    """runs=[<glob>,<glob>] reads the runs of both, a run matched twice once; the miss names the list."""
    from cnnbench.commands.analyze import analyze
    from cnnbench.errors import UserError

    first = _fake_run(tmp_path / "a", "zoo_resnet20", 42, 0.91)
    _fake_run(tmp_path / "b", "zoo_resnet20", 43, 0.93)
    summary = analyze(compose_cfg("analyze", ["analysis=zoo", f"runs=[{tmp_path}/a/zoo_*,{tmp_path}/b/zoo_*,{first}]"]),
                      run_dir=tmp_path / "out")
    assert sorted(r["seed"] for r in summary["runs"]) == [42, 43]
    with pytest.raises(UserError, match=r"runs=\[.*nowhere.*\] matched no training run"):
        analyze(compose_cfg("analyze", ["analysis=zoo", f"runs=[{tmp_path}/nowhere,{tmp_path}/nothing]"]),
                run_dir=tmp_path / "out2")


def test_analyze_zoo_leaves_out_a_run_of_a_recipe_edited_since(tmp_path, capsys):
    """A run made before its recipe file changed (11 epochs where the file now says 10) is not the row as written."""
    from omegaconf import OmegaConf

    from cnnbench.commands.analyze import analyze

    _fake_run(tmp_path, "zoo_resnet20", 42, 0.91)
    edited = _fake_run(tmp_path, "zoo_resnet20", 43, 0.95)
    config = OmegaConf.load(edited / ".hydra" / "config.yaml")
    written = config.trainer.max_epochs
    config.trainer.max_epochs = written + 1
    (edited / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    summary = analyze(compose_cfg("analyze", ["analysis=zoo", f"runs={tmp_path}/zoo_*"]), run_dir=tmp_path / "out")
    assert [r["seed"] for r in summary["runs"]] == [42]
    assert (f"zoo_resnet20_s43 left out: its recipe file has changed since it ran (trainer.max_epochs: {written + 1} "
            f"in the run, {written} in the file)") in capsys.readouterr().out


def test_analyze_zoo_takes_a_trial_whose_overrides_the_recipe_has_adopted(tmp_path, capsys):
    """A trial run with `trainer.max_epochs=N` is the row once the recipe file says N (the row's command composes
    the same config), and the table's command leaves the override out; with another N it stays a trial."""
    from cnnbench.commands.analyze import analyze

    written = compose_cfg("train", ["experiment=zoo_resnet20"]).trainer.max_epochs
    _fake_run(tmp_path, "zoo_resnet20", 42, 0.91, [f"trainer.max_epochs={written}"])
    _fake_run(tmp_path, "zoo_resnet20", 43, 0.95, [f"trainer.max_epochs={written + 1}"])
    summary = analyze(compose_cfg("analyze", ["analysis=zoo", f"runs={tmp_path}/zoo_*"]), run_dir=tmp_path / "out")
    assert [r["seed"] for r in summary["runs"]] == [42]
    assert summary["runs"][0]["command"] == "cnnbench train experiment=zoo_resnet20 run_name=zoo_resnet20_s42 seed=42"
    assert (f"zoo_resnet20_s43 left out: it changes the row (trainer.max_epochs={written + 1})"
            in capsys.readouterr().out)


def test_analyze_zoo_names_a_missing_doc_before_copying_anything(tmp_path):
    from cnnbench.commands.analyze import analyze
    from cnnbench.errors import UserError

    _fake_run(tmp_path / "outputs", "zoo_resnet20", 42, 0.91)
    artifacts = tmp_path / "docs_zoo"
    with pytest.raises(UserError, match=r"doc=.*missing\.md: no such file"):
        analyze(compose_cfg("analyze", ["analysis=zoo", f"runs={tmp_path}/outputs/zoo_*", f"copy_to={artifacts}",
                                        f"doc={tmp_path / 'missing.md'}"]), run_dir=tmp_path / "out")
    assert not artifacts.exists()


def test_zoo_row_of_one_seed_says_so_and_the_public_gap():
    from cnnbench.analysis.zoo import row_cells

    run = {"recipe": "zoo_resnet18", "seed": 42, "test_acc1": 0.94, "epochs": 16, "wall_s": 1800.0,
           "resumed": True, "machine": "AMD EPYC, 2 cores (1 thread), avx2", "command": "cnnbench train x",
           "profile": {"params": 11_000_000, "macs": 3.7e7, "input_size": 32, "in_chans": 1}, "artifact": True}
    cells = row_cells("zoo_resnet18", [run])
    assert cells["top1"] == "0.9400 (one seed: 42), 0.009 below public" and cells["public"] == "0.949"
    assert cells["wall"].startswith("30 min (last sitting)") and cells["params"] == "11.00 M"
    assert row_cells("zoo_resnet18", [])["top1"] == "not yet run"


def test_zoo_row_of_several_seeds_gives_the_range_of_their_wall_times():
    from cnnbench.analysis.zoo import row_cells, row_numbers

    def run(seed: int, acc: float, wall_s: float) -> dict:
        return {"recipe": "zoo_resnet20", "seed": seed, "test_acc1": acc, "epochs": 10, "wall_s": wall_s,
                "resumed": False, "machine": "AMD EPYC", "command": "cnnbench train x",
                "profile": {"params": 269_000, "macs": 3.1e7, "input_size": 28, "in_chans": 1}, "artifact": True}

    runs = [run(43, 0.916, 25 * 60.0), run(42, 0.915, 16 * 60.0), run(44, 0.914, 21 * 60.0)]
    cells = row_cells("zoo_resnet20", runs)
    assert cells["wall"] == "16–25 min, AMD EPYC" and "(seeds 42, 43, 44)" in cells["top1"]
    assert row_numbers("zoo_resnet20", runs)["wall_s"] == [1500.0, 960.0, 1260.0]  # the range's leaves
    same = [run(42, 0.915, 21 * 60.0), run(43, 0.916, 21 * 60.0 + 10)]
    assert row_cells("zoo_resnet20", same)["wall"] == "21 min each, AMD EPYC"


# -- the committed artifacts ----------------------------------------------------------------------------------------
ARTIFACTS = ROOT / "docs" / "zoo"
KEPT = sorted(ARTIFACTS.glob("*_results.json"))  # earlier rows and trials, each beside its metrics.csv
ROWS = sorted(ARTIFACTS.glob("zoo_*/seed*/results.json"))


def _artifact_command(results: dict) -> str:
    """The command that reruns an artifact: a kept earlier row's or trial's `equivalent_command` (the recipe as it
    was then, written as overrides of today's file), else the row's own command."""
    zoo = results.get("zoo") or {}
    kept = zoo.get("earlier_row") or zoo.get("trial") or {}
    return kept.get("equivalent_command") or zoo["command"]


def test_every_kept_artifact_says_what_it_was_and_how_to_rerun_it():
    assert KEPT and ROWS
    for path in KEPT:
        zoo = json.loads(path.read_text()).get("zoo") or {}
        kept = zoo.get("earlier_row") or zoo.get("trial") or {}
        assert kept.get("what") and kept.get("equivalent_command", "").startswith(
            f"cnnbench train experiment={zoo.get('recipe')} "), f"{path.name}: zoo.earlier_row or zoo.trial"


@pytest.mark.parametrize("path", KEPT + ROWS, ids=lambda p: str(p.relative_to(ARTIFACTS)))
def test_an_artifacts_command_composes_the_run_it_records(path):
    """The command composes the network, batch, learning rate, input, width and length the artifact records, and
    its schedule gives the learning rate logged in the artifact's metrics.csv at every logged step."""
    import csv
    import math
    import shlex

    import torch

    from cnnbench.training.optim import build_scheduler, scaled_lr

    results = json.loads(path.read_text())
    words = shlex.split(_artifact_command(results))
    assert words[:2] == ["cnnbench", "train"], words
    c = compose_cfg("train", words[2:])
    profile = (results.get("zoo") or {}).get("profile") or {}
    batch = results["global_batch"]
    assert (c.model.name, c.optimizer.lr) == (results["model"], pytest.approx(results["lr_base"]))
    assert c.data.batch_size == batch and c.get("hardware", {}).get("target_global_batch") in (None, batch)
    if profile:
        assert c.data.image_size == profile["input_size"]
        assert (c.model.get("scaling") or {}).get("width_mult") in ({None, 1.0} if profile["width_mult"] in (None, 1.0)
                                                                    else {profile["width_mult"]})
    if c.data.get("limit_train"):
        assert results["n_train"] == c.data.limit_train
    per_epoch = math.ceil(results["n_train"] / batch)
    total = c.trainer.max_steps if c.trainer.max_steps > 0 else per_epoch * c.trainer.max_epochs
    assert results["steps"] == total, f"the command trains {total} steps, the run {results['steps']}"
    if "trainer.precision" in " ".join(words):
        assert results["hardware"]["precision"] == c.trainer.precision

    with open(path.with_name(path.name.replace("results.json", "metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    # `lr`, or `lr/decay` where the optimizer has parameter groups; the first rows (ResNet-20's, 2026-12-06) predate it
    column = next((k for k in rows[0] if k.split("/")[0] == "lr" and not k.endswith("momentum")), None)
    if column is None:
        return
    logged = [(int(r["step"]), float(r[column])) for r in rows if r[column]]
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=scaled_lr(c.optimizer, batch), momentum=0.9)
    scheduler = build_scheduler(optimizer, c.schedule, optimizer.param_groups[0]["lr"], total, per_epoch)
    planned = []
    for _ in range(max(step for step, _ in logged) + 1):
        planned.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for step, lr in logged:  # the value in force at the logged step (`step` steps taken)
        assert lr == pytest.approx(planned[step], rel=1e-3), \
            f"step {step}: logged lr {lr}, the command's schedule {planned[step]}"
