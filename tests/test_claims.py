"""The papers' claims (docs/claims.md): smoke runs of each claim on tiny real data, and the analyses'
arithmetic on networks where the answer is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import FAST, compose_cfg

# A few hundred Fashion-MNIST images, a handful of iterations: the claim's pipeline, not its result.
TINY = ["data.limit_train=256", "data.val_split=64", "data.limit_test=64", "data.batch_size=32",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
        "schedule.milestones_steps=[2,3]", "checkpoint.save_last=true"]


def _head_of_idx(src: Path, dst: Path, n: int) -> None:
    """The first `n` records of a gzipped IDX file, written uncompressed (only those bytes are inflated)."""
    import gzip
    import struct

    with gzip.open(src, "rb") as f:
        magic = f.read(4)
        ndim = magic[3]
        dims = list(struct.unpack(f">{ndim}I", f.read(4 * ndim)))
        record = int(np.prod(dims[1:])) if ndim > 1 else 1
        body = f.read(n * record)
    dst.write_bytes(magic + struct.pack(f">{ndim}I", n, *dims[1:]) + body)


@pytest.fixture(scope="module")
def fashion_small(tmp_path_factory, fashion_mnist) -> Path:
    """A few hundred real Fashion-MNIST images (the files' first 448 train and 128 test records)."""
    root = tmp_path_factory.mktemp("fashion_small")
    for split, n in (("train", 448), ("t10k", 128)):
        for kind in ("images-idx3", "labels-idx1"):
            _head_of_idx(fashion_mnist / f"{split}-{kind}-ubyte.gz", root / f"{split}-{kind}-ubyte", n)
    return root


@pytest.fixture(scope="module")
def claim_runs(tmp_path_factory, fashion_small) -> Path:
    """Two tiny runs of experiment=claim_degradation (one plain, one residual net) in one sweep-like folder."""
    from cnnbench.commands.train import train

    sweep = tmp_path_factory.mktemp("claim_degradation")
    for job, model in enumerate(("plain20", "resnet20")):
        cfg = compose_cfg("train", ["experiment=claim_degradation", f"model={model}", f"data.root={fashion_small}",
                                    *FAST, *TINY])
        train(cfg, run_dir=sweep / str(job))
    return sweep


def _analyze(overrides: list[str], run_dir: Path) -> dict:
    from cnnbench.commands.analyze import analyze

    return analyze(compose_cfg("analyze", overrides), run_dir=run_dir)


# -- claim 1: degradation ----------------------------------------------------------------------------
def test_claim_degradation_composes_the_four_nets_of_fig6():
    from hydra import compose, initialize_config_dir

    from tests.helpers import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        cfg = compose(config_name="train", overrides=["experiment=claim_degradation"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.model == "plain20,plain56,resnet20,resnet56"
    # the paper's ÷10 at 50% and 75% of the run, at the reduced length
    assert list(cfg.schedule.milestones_steps) == [cfg.trainer.max_steps // 2, 3 * cfg.trainer.max_steps // 4]
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.reference_batch == 128 and cfg.data.mean_mode == "pixel"


def test_claim_degradation_smoke_figure(claim_runs, tmp_path):
    summary = _analyze(["analysis=degradation", f"runs={claim_runs}/*", f"copy_to={tmp_path / 'copy'}",
                        'expect=["resnet20 < plain20"]', "metric=[test_err,train_err_final]"], tmp_path / "out")
    assert (tmp_path / "out" / "degradation.png").stat().st_size > 1000
    # one seed per net: the arms have no spread, so the stated rule cannot resolve the expectation
    assert summary["arms"]["resnet20"]["seeds"] == [42] and summary["arms"]["plain20"]["test_err"]["n"] == 1
    assert [(v["metric"], v["verdict"]) for v in summary["verdicts"]] == [
        ("test_err", "not resolved (one seed)"), ("train_err_final", "not resolved (one seed)")]
    assert (tmp_path / "copy" / "degradation.png").is_file()
    on_disk = json.loads((tmp_path / "out" / "degradation.json").read_text())
    models = sorted(r["model"] for r in on_disk["runs"])
    assert models == ["plain20", "resnet20"]
    for r in summary["runs"]:
        # every iteration logged its batch's training error (log_every_n_steps=1), validation every 2
        assert [it for it, _ in r["curves"]["train"]] == [1, 2, 3, 4]
        assert [it for it, _ in r["curves"]["val"]] == [2, 4]
        assert all(e * 32 == pytest.approx(round(e * 32), abs=1e-4) for _, e in r["curves"]["train"])  # k of 32
        results = json.loads((Path(r["run_dir"]) / "results.json").read_text())
        assert r["test_err"] == pytest.approx(1.0 - results["test/acc1"])  # the run's own test accuracy


def test_degradation_compare_reads_the_claim_per_family():
    from cnnbench.analysis.degradation import compare

    rows = [{"model": m, "family": "plain" if m.startswith("plain") else "residual", "depth": d,
             "train_err_final": e, "val_err_final": None, "test_err": t}
            for m, d, e, t in (("plain20", 20, 0.10, 0.12), ("plain56", 56, 0.20, 0.22),
                               ("resnet20", 20, 0.10, 0.12), ("resnet56", 56, 0.12, 0.11))]
    c = compare(rows)
    assert c["plain"]["claim_holds_on_train_error"] is True
    assert c["residual"]["claim_holds_on_train_error"] is False  # deeper ResNet trained worse here
    assert c["residual"]["claim_holds_on_test_error"] is True
    assert c["plain"]["train_err_final_delta_deep_minus_shallow"] == pytest.approx(0.10)


def test_moving_average():
    from cnnbench.analysis.degradation import moving_average

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


# -- claim 2: layer responses ------------------------------------------------------------------------
def test_claim_layer_responses_smoke_figure(claim_runs, tmp_path, fashion_small):
    summary = _analyze(["analysis=layer_responses", f"runs={claim_runs}/*", "images=50",
                        f"data.root={fashion_small}", "hardware=cpu"], tmp_path)
    assert (tmp_path / "layer_responses.png").stat().st_size > 1000
    nets = json.loads((tmp_path / "layer_responses.json").read_text())["networks"]
    assert sorted(nets) == ["plain20", "resnet20"]
    for res in summary["networks"].values():
        assert res["n_images"] == 50
        assert res["n_layers"] == 19  # 6n+1 = 19 3×3 convs in a 20-layer CIFAR net (n = 3), each followed by BN
        assert res["std_sorted"] == sorted(res["std_layer_order"], reverse=True)
        assert all(s > 0 for s in res["std_layer_order"])


def test_layer_responses_pairs_only_bn_fed_by_a_3x3_conv():
    from cnnbench.analysis.layer_responses import find_conv_bn_pairs

    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),  # pair 1
        nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4),                                     # 1×1: not a response
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),              # BN not fed by the conv
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),                          # pair 2
    )
    assert find_conv_bn_pairs(net, torch.randn(2, 3, 8, 8)) == [("0", "1"), ("8", "9")]


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_layer_responses_hooks_every_3x3_conv_of_the_cifar_nets(name):
    from cnnbench.analysis.layer_responses import find_conv_bn_pairs
    from cnnbench.models import create_model

    net = create_model(name, num_classes=10)
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    pairs = find_conv_bn_pairs(net, torch.randn(2, 3, 28, 28))
    assert len(convs) == 19
    assert [c for c, _ in pairs] == convs  # every 3×3 conv, in the order they run


def test_layer_responses_std_of_a_known_bn_output():
    """Identity 3×3 conv → BN (eval: mean 0, var 1, eps 0, weight γ, bias β) → in-place ReLU: the response is
    γ·x + β, taken before the ReLU overwrites it."""
    from cnnbench.analysis.layer_responses import layer_responses

    conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = conv.weight[1, 1, 1, 1] = 1.0
    bn = nn.BatchNorm2d(2, eps=0.0)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([3.0, -0.5]))
        bn.bias.copy_(torch.tensor([1.0, -2.0]))
    net = nn.Sequential(conv, bn, nn.ReLU(inplace=True))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, 5, 5, generator=gen) * 2 + 1
    y = x * bn.weight.detach().view(1, -1, 1, 1) + bn.bias.detach().view(1, -1, 1, 1)
    batches = [(x[:5], None), (x[5:], None)]  # two batches: the moments accumulate across them
    res = layer_responses(net, batches)
    assert res["n_images"] == 12 and res["n_layers"] == 1
    layer = res["layers"][0]
    assert (layer["conv"], layer["bn"]) == ("0", "1")
    assert layer["std"] == pytest.approx(float(y.std(unbiased=False)), rel=1e-6)
    per_channel = y.transpose(0, 1).reshape(2, -1).std(dim=1, unbiased=False)
    assert layer["std_channel_mean"] == pytest.approx(float(per_channel.mean()), rel=1e-6)
    assert res["std_layer_order"] == res["std_sorted"] == [layer["std"]]


def test_layer_responses_limit_counts_images():
    from cnnbench.analysis.layer_responses import layer_responses

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    res = layer_responses(net, [(torch.randn(8, 1, 6, 6), None)] * 3, limit=10)
    assert res["n_images"] == 10


def test_layer_responses_refuses_a_net_without_conv_bn():
    from cnnbench.analysis.layer_responses import layer_responses
    from cnnbench.errors import UserError

    with pytest.raises(UserError, match="3×3 convolution followed by a BatchNorm2d"):
        layer_responses(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), [(torch.randn(2, 1, 6, 6), None)])


# -- the command ---------------------------------------------------------------------------------------
def test_analyze_bad_name_is_one_line_with_the_choices(tmp_path):
    from cnnbench.errors import UserError

    with pytest.raises(UserError, match=r"analysis='layer_response' is not an analysis; valid choices: "
                                        r"layer_responses, degradation, curves, scaling, zoo"):
        _analyze(["analysis=layer_response"], tmp_path)


def test_analyze_cli_bare_name_and_bad_name_exit_2(tmp_path, monkeypatch, capsys):
    from cnnbench.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "nonsense", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnbench analyze: error: analysis='nonsense' is not an analysis; valid choices: "
                   "layer_responses, degradation, curves, scaling, zoo (cnnbench analyze layer_responses ckpt_path=…)"]


def test_analyze_degradation_without_matching_runs(tmp_path):
    from cnnbench.errors import UserError

    with pytest.raises(UserError, match="matched no training run"):
        _analyze(["analysis=degradation", f"runs={tmp_path}/nothing*"], tmp_path)


# -- claims 3-6: the sweeps, their figures -----------------------------------------------------------
# The shared tiny run of claims 3-6 (claim_fmnist_base has no LR milestones, so TINY's are left out).
TINY_RUN = [o for o in TINY if not o.startswith("schedule.")] + ["data.batch_size=16"]


def _sweep_params(experiment: str) -> dict:
    from hydra import compose, initialize_config_dir

    from tests.helpers import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    # Hydra types sweeper values as strings (BasicSweeperConf.params: Dict[str, str]); a YAML float 2.0 arrives as "2.0".
    return {key: str(value) for key, value in cfg.hydra.sweeper.params.items()}


def _tiny_sweep(root: Path, experiment: str, jobs: list[list[str]], fashion_small: Path) -> Path:
    """Jobs of a claim's sweep, each in <root>/<job>/ with the .hydra/overrides.yaml a Hydra multirun writes."""
    from omegaconf import OmegaConf

    from cnnbench.commands.train import train

    for job, overrides in enumerate(jobs):
        run = root / str(job)
        cfg = compose_cfg("train", [f"experiment={experiment}", *overrides, f"data.root={fashion_small}", *FAST,
                                    *TINY_RUN])
        train(cfg, run_dir=run)
        (run / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create([*overrides, f"experiment={experiment}"]), run / ".hydra" / "overrides.yaml")
    return root


def test_claim_sweeps_compare_what_the_papers_compare():
    seeds = "42,43,44"  # three seeds per arm: the claims' decision rule needs the seed spread
    assert _sweep_params("claim_inception_residual") == {"model": "inception_v4,inception_resnet_v2",
                                                         "trainer.gradient_clip_val": "2.0,null", "seed": seeds}
    assert _sweep_params("claim_residual_scaling") == {"model": "inception_resnet_v2", "seed": seeds,
                                                       "model.residual_scale": "0.1,1.0", "trainer.gradient_clip_val": "2.0,null"}
    assert _sweep_params("claim_aux_classifiers") == {"model.aux_logits": "true,false", "seed": seeds}
    assert _sweep_params("claim_highway_vs_resnet")["seed"] == seeds
    assert _sweep_params("claim_degradation") == {"model": "plain20,plain56,resnet20,resnet56", "seed": seeds}
    assert _sweep_params("claim_highway_vs_resnet")["claim.variant"].split(",") == [
        "highway_20", "highway_32", "resnet_20", "resnet_32"]
    variants = _sweep_params("claim_compound_scaling")["claim.variant"].split(",")
    assert variants[0] == "base" and {v.split("_")[0] for v in variants[1:]} == {"depth", "width", "resolution",
                                                                                  "compound"}


def test_claim_inception_pair_shares_width_resolution_and_the_papers_optimizer():
    for model in ("inception_v4", "inception_resnet_v2"):
        c = compose_cfg("train", ["experiment=claim_inception_residual", f"model={model}"])
        assert c.model.name == model and c.model.scaling.width_mult == 0.25 and c.data.image_size == 75
        o = c.optimizer
        assert (o.name, o.lr, o.decay, o.eps, o.reference_batch) == ("rmsprop_tf", 0.045, 0.9, 1.0, 640)  # §4
        assert (c.schedule.gamma, c.schedule.decay_every_epochs) == (0.94, 2)  # §4


def test_claim_compound_scaling_variants_follow_eq3():
    """The compound variants are the paper's α, β, γ = 1.2, 1.1, 1.15 raised to φ = 1, 2 on the base."""
    from cnnbench.models.scaling import ALPHA, BETA, GAMMA

    variants = {}
    for v in ("base", "compound_2x", "compound_4x", "depth_4x", "width_4x", "resolution_4x"):
        c = compose_cfg("train", ["experiment=claim_compound_scaling", f"claim.variant={v}"])
        variants[v] = c.model.scaling
        assert c.data.image_size == c.model.scaling.resolution  # data follows the variant's resolution
    base = variants["base"]
    for phi, name in ((1, "compound_2x"), (2, "compound_4x")):
        s = variants[name]
        assert s.depth_mult == pytest.approx(base.depth_mult * ALPHA**phi, rel=0.01)
        assert s.width_mult == pytest.approx(base.width_mult * BETA**phi, rel=0.01)
        assert s.resolution == round(base.resolution * GAMMA**phi)
    assert variants["depth_4x"].depth_mult == 4 * base.depth_mult
    assert variants["width_4x"].width_mult == 2 * base.width_mult
    assert variants["resolution_4x"].resolution == 2 * base.resolution
    c = compose_cfg("train", ["experiment=claim_compound_scaling"])  # one recipe for every variant (docs/claims.md §4)
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay) == ("adamw", 2e-3, 1e-5)
    assert (c.schedule.name, c.schedule.warmup_steps, c.trainer.max_steps) == ("cosine", 100, 1500)
    assert (c.model.drop_path_rate, c.model.dropout) == (0.0, 0.2)
    first = compose_cfg("train", ["experiment=claim_compound_scaling_first"])  # the replaced first configuration
    assert (first.optimizer.name, first.optimizer.lr, first.optimizer.momentum) == ("sgd", 0.1, 0.9)
    assert (first.schedule.name, first.schedule.warmup_steps, first.trainer.max_steps) == ("cosine", 0, 600)
    assert (first.model.drop_path_rate, first.model.dropout, first.claim.variant) == (0.2, 0.2, c.claim.variant)


def test_claim_highway_variants_are_highway_and_resnets_at_the_same_depths():
    nets = {}
    for v in ("highway_20", "highway_32", "resnet_20", "resnet_32"):
        c = compose_cfg("train", ["experiment=claim_highway_vs_resnet", f"claim.variant={v}"])
        nets[v] = c.model
    assert nets["highway_20"].name == "highway_conv" and nets["highway_20"].depth == 20
    assert nets["highway_32"].depth == 32 and nets["highway_32"].width == 16
    assert (nets["resnet_20"].name, nets["resnet_32"].name) == ("resnet20", "resnet32")


@pytest.mark.slow
def test_claim_compound_scaling_smoke_figure(tmp_path, fashion_small):
    sweep = _tiny_sweep(tmp_path / "sweep", "claim_compound_scaling",
                        [["claim.variant=base"], ["claim.variant=width_4x"], ["claim.variant=resolution_4x"]],
                        fashion_small)
    summary = _analyze(["analysis=scaling", f"runs={sweep}/*", "name=compound_scaling"], tmp_path / "out")
    assert (tmp_path / "out" / "compound_scaling.png").stat().st_size > 1000
    rows = {r["variant"]: r for r in summary["runs"]}
    assert sorted(rows) == ["base", "resolution_4x", "width_4x"]
    assert rows["width_4x"]["method"] == "width" and rows["width_4x"]["target_factor"] == "4x"
    # MACs are measured per network: width ×2 adds parameters and MACs; resolution adds MACs, not parameters
    assert rows["width_4x"]["macs"] > 2 * rows["base"]["macs"] and rows["width_4x"]["params"] > rows["base"]["params"]
    assert rows["resolution_4x"]["macs"] > rows["base"]["macs"]
    assert rows["resolution_4x"]["params"] == rows["base"]["params"]
    for r in rows.values():  # each point is its run's own test accuracy
        assert r["test_acc1"] == json.loads((Path(r["run_dir"]) / "results.json").read_text())["test/acc1"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment,jobs", [
    ("claim_highway_vs_resnet", [["claim.variant=highway_20"], ["claim.variant=resnet_20"]]),
    ("claim_inception_residual", [["model=inception_v4"], ["model=inception_resnet_v2"]]),
    ("claim_aux_classifiers", [["model.aux_logits=true"], ["model.aux_logits=false"]]),
    ("claim_residual_scaling", [["model.residual_scale=0.1"], ["model.residual_scale=1.0"]]),
])
def test_claim_curves_smoke_figure(tmp_path, fashion_small, experiment, jobs):
    extra = [] if experiment == "claim_highway_vs_resnet" else ["model.scaling.width_mult=0.125"]
    sweep = _tiny_sweep(tmp_path / "sweep", experiment, [j + extra for j in jobs], fashion_small)
    summary = _analyze(["analysis=curves", f"runs={sweep}/*", f"name={experiment}"], tmp_path / "out")
    assert (tmp_path / "out" / f"{experiment}.png").stat().st_size > 1000
    labels = sorted(r["label"] for r in summary["runs"])
    assert len(labels) == 2 and len(set(labels)) == 2  # each run named by what its sweep changed
    for r in summary["runs"]:
        assert [it for it, _ in r["curves"]["val"]] == [2, 4]
        assert r["val_err_at_fraction"]["1.00"] == r["curves"]["val"][-1][1]


def test_run_label_names_a_run_by_its_sweep_overrides(tmp_path):
    from omegaconf import OmegaConf

    from cnnbench.analysis.curves import error_at, run_label

    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(["model=inception_v4", "model.aux_logits=false", "experiment=claim_x",
                                     "hydra.sweep.dir=x"]), tmp_path / ".hydra" / "overrides.yaml")
    assert run_label(tmp_path, "fallback") == "inception_v4 aux_logits=false"
    # the same run typed by hand, overrides in another order and a seed: the same arm label
    OmegaConf.save(OmegaConf.create(["trainer.gradient_clip_val=2.0", "seed=43", "model.aux_logits=false",
                                     "model=inception_v4"]), tmp_path / ".hydra" / "overrides.yaml")
    assert run_label(tmp_path, "fallback") == "inception_v4 aux_logits=false gradient_clip_val=2.0"
    assert run_label(tmp_path / "missing", "fallback") == "fallback"
    curve = [(50, 0.5), (100, 0.4), (150, 0.3)]
    assert (error_at(curve, 40), error_at(curve, 100), error_at(curve, 149)) == (None, 0.4, 0.4)


def test_log_grad_norm_records_the_norm_before_clipping(tmp_path, fashion_small):
    """`log_grad_norm=true` logs train/grad_norm every iteration here (log_every_n_steps=1), before clipping:
    with clipping at a tiny norm the logged norm is still the unclipped one (claims 3 and 5b quote it)."""
    from cnnbench.analysis.degradation import summarize_run
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", ["experiment=claim_degradation", "model=resnet20", f"data.root={fashion_small}",
                                *FAST, *TINY, "log_grad_norm=true", "trainer.gradient_clip_val=1.0e-3"])
    train(cfg, run_dir=tmp_path)
    row = summarize_run(tmp_path)
    assert [it for it, _ in row["curves"]["grad_norm"]] == [1, 2, 3, 4]
    assert row["grad_norm_first"] > 1.0e-3 * 10  # far above the clipping norm: measured before clipping
    norms = sorted(g for _, g in row["curves"]["grad_norm"])
    assert row["grad_norm_median"] == pytest.approx((norms[1] + norms[2]) / 2)
