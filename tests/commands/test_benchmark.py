"""`cnnbench benchmark`: a tiny run writes a well-formed benchmark.json; the plain loop is the same computation."""
from __future__ import annotations

import json
import os
import statistics

import pytest
import torch

from cnnbench.errors import UserError
from tests.helpers import FAST, compose_cfg

TINY = FAST + ["data=digits", "augmentation=none", "data.batch_size=16", "benchmark.warmup=1", "benchmark.steps=3",
               "benchmark.rounds=2", "benchmark.matmul_size=256"]


def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf")


def test_benchmark_writes_well_formed_json(tmp_path):
    from cnnbench.commands.benchmark import benchmark

    cfg = compose_cfg("benchmark", TINY + ["benchmark.mode=[train,infer,eval]"])
    out = benchmark(cfg, run_dir=tmp_path)
    written = json.loads((tmp_path / "benchmark.json").read_text())
    assert written["model"] == "resnet20" and set(written["modes"]) == {"train", "infer", "eval"}
    assert _finite_positive(written["peak_flops"]["fp32"]) and _finite_positive(written["peak_flops"]["bf16"])
    assert written["machine"]["cpu_cores"] >= 1 and written["machine"]["torch"] == torch.__version__  # where it ran
    assert _finite_positive(written["macs_per_image"])
    for mode, r in written["modes"].items():
        for key in ("images_per_s", "step_ms", "peak_mem_mb", "mfu", "ratio_vs_plain_loop"):
            assert _finite_positive(r[key]), (mode, key, r[key])
        assert r["images_per_s"] == pytest.approx(16 / (r["step_ms"] / 1e3), rel=1e-6)
        assert r["steps_timed"] == 2 * 3  # rounds × steps intervals after the warm-up
        plain = r["plain_loop"]
        assert _finite_positive(plain["images_per_s"]) and _finite_positive(plain["mfu"])
        assert r["ratio_vs_plain_loop"] == pytest.approx(r["images_per_s"] / plain["images_per_s"])
        assert len(r["ratio_per_round"]) == 2
    # MFU is achieved FLOP/s over the measured matmul peak; train counts 3× the forward FLOPs.
    train = written["modes"]["train"]
    assert train["mfu"] == pytest.approx(6 * written["macs_per_image"] * train["images_per_s"]
                                         / written["peak_flops"]["fp32"])
    assert out["modes"]["train"]["images_per_s"] == train["images_per_s"]


def test_benchmark_data_mode_rows(tmp_path):
    from cnnbench.commands.benchmark import benchmark

    cfg = compose_cfg("benchmark", TINY + ["benchmark.mode=data", "augmentation=pad_crop_flip",
                                           "benchmark.augmentations=[pad_crop_flip]", "benchmark.workers=[0]",
                                           "benchmark.jpeg_images=64"])
    out = benchmark(cfg, run_dir=tmp_path)["modes"]["data"]
    # the per-mode figures describe the configured loader: in memory, pad_crop_flip, 0 workers
    assert out["images_per_s"] == out["loaders"][0]["images_per_s"] and out["loaders"][0]["source"] == "memory"
    assert out["ratio_vs_train"] == pytest.approx(out["images_per_s"] / out["train_images_per_s"])
    assert {(r["source"], r["augmentation"], r["workers"]) for r in out["loaders"]} == {
        ("memory", "pad_crop_flip", 0), ("jpeg", "pad_crop_flip", 0)}
    for row in out["loaders"]:
        assert _finite_positive(row["images_per_s"])
        assert row["vs_train"] == pytest.approx(row["images_per_s"] / out["train_images_per_s"])


def test_benchmark_measures_the_loader_rows_before_the_train_steps(tmp_path, monkeypatch):
    """`benchmark.mode=[train,data]`: the data rows run first (their workers fork from a lean process), the
    modes keep the order asked for, and `× train` uses the train mode's own rate."""
    from cnnbench.benchmarking.bench import Bench
    from cnnbench.commands import benchmark as bench_cmd

    order = []
    for name in ("run_train", "run_data"):
        original = getattr(Bench, name)
        monkeypatch.setattr(Bench, name,
                            lambda self, *a, _f=original, _n=name, **k: order.append(_n) or _f(self, *a, **k))
    cfg = compose_cfg("benchmark", TINY + ["benchmark.mode=[train,data]", "augmentation=pad_crop_flip",
                                           "benchmark.augmentations=[pad_crop_flip]", "benchmark.workers=[0]",
                                           "benchmark.sources=[memory]", "benchmark.plain_loop=false"])
    result = bench_cmd.benchmark(cfg, run_dir=tmp_path)
    assert order == ["run_data", "run_train"] and list(result["modes"]) == ["train", "data"]
    data, train = result["modes"]["data"], result["modes"]["train"]
    assert data["train_images_per_s"] == train["images_per_s"]
    assert data["loaders"][0]["vs_train"] == pytest.approx(data["loaders"][0]["images_per_s"] / train["images_per_s"])


def test_benchmark_values_are_checked_by_the_config_rules():
    from cnnbench.config_schema import problems

    found = problems(compose_cfg("benchmark", TINY + ["benchmark.mode=[train,fit]", "benchmark.steps=1"]))
    assert "benchmark.mode=['train', 'fit'] is invalid; valid: train, infer, data or eval" in found
    assert "benchmark.steps=1 is invalid; valid: an integer >= 2" in found


@pytest.mark.parametrize("override, valid", [("benchmark.optimizer_impl=fast", "default, foreach, fused")])
def test_benchmark_rejects_bad_values(tmp_path, override, valid):
    from cnnbench.commands.benchmark import benchmark

    with pytest.raises(UserError, match=f"valid choices: {valid}"):
        benchmark(compose_cfg("benchmark", TINY + [override]), run_dir=tmp_path)


def test_benchmark_of_training_takes_trains_precision(monkeypatch):
    """Timing the training step times what `train` would run: on a CPU with AVX512-BF16 but no AMX, an
    EfficientNet in fp32 where the precision is hardware=auto's (cnnbench.hardware.fit_precision_to_model); a
    precision set by hand, and inference alone, keep theirs."""
    from cnnbench import hardware
    from cnnbench.commands.benchmark import make_bench

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    auto = [o for o in TINY if not o.startswith("trainer.precision=")]  # hardware=cpu's own choice
    base = auto + ["model=efficientnet_b0", "data.image_size=32"]
    bench = make_bench(compose_cfg("benchmark", base), None)
    assert bench.precision == "bf16-mixed"
    bench.train_precision()
    assert bench.precision == "32-true" and bench.cfg.trainer.precision == "32-true"
    by_hand = make_bench(compose_cfg("benchmark", base + ["trainer.precision=bf16-mixed"]), None)
    by_hand.train_precision()
    assert by_hand.precision == "bf16-mixed"
    resnet = make_bench(compose_cfg("benchmark", auto), None)
    resnet.train_precision()
    assert resnet.precision == "bf16-mixed"


@pytest.mark.parametrize("model, size", [("resnet20", 8), ("googlenet", 64)])
def test_plain_loop_and_module_compute_the_same_loss(model, size):
    """Same weights, same batch: the hand-written loop's loss equals ClassificationModule's (aux heads included)."""
    from cnnbench.commands.benchmark import make_bench as _Bench

    cfg = compose_cfg("benchmark", TINY + [f"model={model}", f"data.image_size={size}", "loss.label_smoothing=0.1"])
    bench = _Bench(cfg, None)
    module = bench.module.train()
    plain = bench.plain(train=True)
    plain.model.train()
    x, y = next(iter(bench.dm.train_dataloader()))
    torch.manual_seed(0)
    ours, _ = module.compute_loss(module.model(module.prepare(x)), y)
    torch.manual_seed(0)
    ref = plain.loss(x, y)
    if model == "googlenet":  # the aux heads are part of the loss on both sides
        out = module.model(module.prepare(x))
        assert isinstance(out, (tuple, list)) and len(out) == 3
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # equal by value, not by reference: the plain loop trains its own copy of the network
    assert all(p is not q for p, q in zip(module.model.parameters(), plain.model.parameters(), strict=True))


@pytest.mark.slow
def test_benchmark_console_script_smoke(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "cnnbench", "benchmark", "benchmark.mode=walk",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "benchmark.mode='walk' is invalid; valid: train, infer, data or eval" in run.stderr


@pytest.mark.slow
def test_benchmark_sweep_with_the_default_wandb_logger(tmp_path):
    """`cnnbench benchmark -m …` with W&B (the default logger): every job measures (each measured window
    finishes its W&B run, so the next job does not log into a finished run's deleted directory)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "cnnbench", "benchmark", "-m", "benchmark.mode=train",
                          "benchmark.steps=2", "benchmark.warmup=0", "benchmark.rounds=1", "benchmark.matmul_size=128",
                          "data=synthetic", "data.limit_train=64", "data.batch_size=16", "model=resnet20", "seed=1,2",
                          f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    for job in ("0", "1"):
        train = json.loads((tmp_path / job / "benchmark.json").read_text())["modes"]["train"]
        assert train["images_per_s"] > 0 and train["ratio_vs_plain_loop"] > 0


def _photo_cfg(root, extra=()):
    return compose_cfg("benchmark", FAST + ["data=imagefolder", f"data.root={root}", "model=resnet20",
                                            "augmentation=random_resized_crop", "data.batch_size=4",
                                            "benchmark.mode=data", "benchmark.warmup=1", "benchmark.steps=2",
                                            "benchmark.matmul_size=128", "benchmark.workers=[0]", *extra])


def test_benchmark_data_mode_on_imagefolder_rows(tmp_path, photo_imagefolder):
    """The dataset's own files through the paper pipelines and eval protocols, beside the OpenCV reference."""
    from cnnbench.commands.benchmark import benchmark

    cfg = _photo_cfg(photo_imagefolder, ["benchmark.file_augmentations=[random_resized_crop,resnet_imagenet]",
                                         "benchmark.protocols=[1,10]"])
    out = benchmark(cfg, run_dir=tmp_path)["modes"]["data"]
    names = [(r["kind"], r["augmentation"]) for r in out["loaders"]]
    assert names == [("reference", "opencv_reference"), ("reference", "opencv_decode"),
                     ("train", "random_resized_crop"), ("train", "resnet_imagenet"), ("eval", "1 crop"),
                     ("eval", "10 crops")]
    assert {r["source"] for r in out["loaders"]} == {"files"} and out["files"] == 12
    ref = out["loaders"][0]
    assert ref["vs_reference"] == 1.0
    for row in out["loaders"]:
        assert _finite_positive(row["images_per_s"]) and row["images_per_s_per_core"] == row["images_per_s"]
        same_round = [v / r for v, r in zip(row["images_per_s_rounds"], ref["images_per_s_rounds"], strict=True)]
        assert row["vs_reference"] == pytest.approx(statistics.median(same_round))
        assert row["vs_train"] == pytest.approx(row["images_per_s"] / out["train_images_per_s"])
    assert out["loaders"][-1]["views_per_image"] == 10
    assert out["images_per_s"] == out["loaders"][2]["images_per_s"]  # the configured pipeline, 0 workers


@pytest.mark.slow
def test_benchmark_data_mode_with_the_photometric_ops_on_the_device(tmp_path, photo_imagefolder):
    """data.photometric=device: the loader rows time the workers' share; the ops' own time is its own column."""
    from cnnbench.commands.benchmark import benchmark

    cfg = _photo_cfg(photo_imagefolder, ["augmentation=googlenet", "data.photometric=device", "benchmark.protocols=[]",
                                         "benchmark.file_augmentations=[googlenet,random_resized_crop]"])
    out = benchmark(cfg, run_dir=tmp_path)["modes"]["data"]
    rows = {r["augmentation"]: r for r in out["loaders"]}
    assert out["photometric"] == "device" and _finite_positive(out["train_images_per_s"])
    assert _finite_positive(rows["googlenet"]["device_ms_per_image"])
    assert "device_ms_per_image" not in rows["random_resized_crop"]  # no photometric ops: plain batches


@pytest.mark.slow
def test_worker_rows_drop_the_batches_of_the_workers_start(tmp_path, photo_imagefolder, monkeypatch):
    """A row with N workers skips benchmark.warmup + 2·N batches: the ones the freshly forked workers make first."""
    from cnnbench.benchmarking import loaders
    from cnnbench.commands.benchmark import benchmark

    warmups = []
    monkeypatch.setattr(loaders, "loader_rate", lambda make, warmup, steps, **k: warmups.append(warmup) or (100.0, 8))
    cfg = _photo_cfg(photo_imagefolder, ["benchmark.file_augmentations=[random_resized_crop]", "benchmark.protocols=[]",
                                         "benchmark.workers=[0,2]"])
    rows = benchmark(cfg, run_dir=tmp_path)["modes"]["data"]["loaders"]
    assert [r["workers"] for r in rows] == [0, 0, 0, 2, 2, 2] and warmups == [1, 1, 1, 5, 5, 5] * rows[0]["rounds"]


def test_benchmark_data_mode_without_rows_is_an_error(tmp_path, photo_imagefolder):
    from cnnbench.commands.benchmark import benchmark

    with pytest.raises(UserError, match=r"measures nothing on file-backed data .*valid choices here: \[jpeg\]"):
        benchmark(_photo_cfg(photo_imagefolder, ["benchmark.sources=[memory]"]), run_dir=tmp_path)


def test_data_rounds_compare_each_row_with_the_reference_of_its_own_round():
    from cnnbench.benchmarking.loaders import summarize_rounds

    def row(kind, name, workers, rates):
        return {"kind": kind, "augmentation": name, "workers": workers, "views_per_image": 1,
                "images_per_s_rounds": rates}

    rows = summarize_rounds([row("reference", "opencv_reference", 0, [100.0, 50.0, 80.0]),
                             row("train", "vgg", 0, [90.0, 50.0, 60.0]),
                             row("reference", "opencv_reference", 2, [180.0, 100.0, 150.0]),
                             row("train", "vgg", 2, [170.0, 90.0, 120.0])], train_images_per_s=10.0)
    ref0, vgg0, _, vgg2 = rows
    assert ref0["vs_reference"] == 1.0 and ref0["vs_reference_range"] == [1.0, 1.0]
    assert vgg0["images_per_s"] == 60.0 and vgg0["rounds"] == 3           # the median of the rounds
    assert vgg0["vs_reference"] == pytest.approx(0.9)                     # median of 0.9, 1.0, 0.75
    assert vgg0["vs_reference_range"] == pytest.approx([0.75, 1.0])
    assert vgg0["vs_workers0"] is None and vgg0["vs_train"] == pytest.approx(6.0)
    assert vgg2["images_per_s_per_core"] == pytest.approx(60.0)
    assert vgg2["vs_workers0"] == pytest.approx(statistics.median([170 / 180, 90 / 100, 120 / 120]))


def test_matmul_peak_sizes_its_blocks_from_the_matmul_not_from_the_timer_overhead(monkeypatch):
    """With Lightning imported, torch's blocked_autorange picked blocks of 10⁵ matmuls (the timer's overhead
    grows); the peak sizes 10 blocks of ≈ min_run_time / 10 from one timed call instead."""
    import lightning  # noqa: F401  (the state in which blocked_autorange misjudged)
    from torch.utils.benchmark import Timer

    from cnnbench.benchmarking import matmul_peak

    numbers = []
    timeit = Timer.timeit
    monkeypatch.setattr(Timer, "timeit", lambda self, number=1000000: numbers.append(number) or timeit(self, number))
    peak = matmul_peak(torch.device("cpu"), torch.float32, 64, min_run_time=0.05)
    assert _finite_positive(peak) and peak < 1e15
    once = 2.0 * 64**3 / peak  # seconds per matmul, as measured
    assert numbers[:2] == [1, 1] and len(numbers) == 12 and len(set(numbers[2:])) == 1
    assert numbers[2] * once < 0.05  # a block stays well under the whole run time


def test_loader_rate_warns_when_the_window_runs_past_an_epoch(caplog):
    from cnnbench.benchmarking.loaders import loader_rate

    batches = [(torch.zeros(2, 1), torch.zeros(2))] * 4
    with caplog.at_level("WARNING", logger="cnnbench"):
        ips, images = loader_rate(lambda: iter(batches), 1, 2, name="row A")
    assert images == 4 and not caplog.records  # the start batch + 2 timed fit after 1 of warm-up in an epoch of 4
    with caplog.at_level("WARNING", logger="cnnbench"):
        ips, images = loader_rate(lambda: iter(batches), 1, 4, name="row B")
    assert images == 8 and len(caplog.records) == 1 and "row B ran out of batches" in caplog.records[0].getMessage()


def test_benchmark_precisions_are_lightnings():
    """The precisions the benchmark takes are Lightning's inputs; the aliases map as Lightning's own table does."""
    from typing import get_args

    from lightning.fabric.plugins.precision import precision as lightning_precision

    from cnnbench.benchmarking.precision import ALIASES, MIXED, unified
    from cnnbench.choices import BENCHMARK_PRECISIONS

    accepted = get_args(lightning_precision._PRECISION_INPUT_STR) + get_args(lightning_precision._PRECISION_INPUT_STR_ALIAS)
    assert set(BENCHMARK_PRECISIONS) <= set(accepted)
    assert ALIASES == {k: v for k, v in lightning_precision._PRECISION_INPUT_STR_ALIAS_CONVERSION.items() if k in ALIASES}
    assert {unified(p) for p in BENCHMARK_PRECISIONS} == {"32-true", *MIXED}


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("bf16-mixed", torch.bfloat16),
                                              ("32-true", None), ("32", None)])
def test_plain_loop_autocasts_as_lightnings_precision_plugin(precision, dtype):
    from cnnbench.benchmarking import PlainLoop

    loop = PlainLoop(torch.nn.Identity(), torch.nn.Identity(), (), 0.0, torch.device("cpu"), precision, False)
    with loop.autocast():
        enabled = torch.is_autocast_enabled("cpu")
        got = torch.get_autocast_dtype("cpu") if enabled else None
    assert got == dtype


def test_benchmark_precision_is_checked_by_the_config_rules():
    from cnnbench.config_schema import problems

    found = problems(compose_cfg("benchmark", TINY + ["trainer.precision=16-true"]))
    assert found == ["trainer.precision='16-true' is invalid for benchmark; valid: 32-true, 32, bf16-mixed, bf16, "
                     "16-mixed or 16"]
    assert problems(compose_cfg("benchmark", TINY + ["trainer.precision=bf16"])) == []
    assert problems(compose_cfg("train", FAST + ["trainer.precision=16-true"])) == []  # train takes any of Lightning's


@pytest.mark.parametrize("override, needle", [
    ("benchmark.sources=[]", "benchmark.sources=[] is invalid"),
    ("benchmark.workers=[]", "benchmark.workers=[] is invalid; valid: a non-empty list of integers >= 0"),
    ("benchmark.augmentations=[none,nope]", "benchmark.augmentations=['none', 'nope'] is invalid"),
    ("benchmark.file_augmentations=[nope]", "benchmark.file_augmentations=['nope'] is invalid"),
    ("benchmark.protocols=[7]", "benchmark.protocols=[7] is invalid; valid: 1, 10, 12, 50 or 144"),
])
def test_benchmark_lists_are_checked_by_the_config_rules(override, needle):
    from cnnbench.config_schema import problems

    found = problems(compose_cfg("benchmark", TINY + [override]))
    assert len(found) == 1 and needle in found[0], found
