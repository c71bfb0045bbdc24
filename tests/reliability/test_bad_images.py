"""Fault 3: bad files in an ImageFolder (data.on_bad_image=skip|error); odd but valid modes convert to RGB."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cnnbench.cli import run_guarded
from cnnbench.data.datamodule import ImageDataModule, load_image_file
from cnnbench.data.sources import BadImageError, check_image
from cnnbench.errors import one_line
from tests.helpers import FAST, compose_cfg

BAD = {"empty.jpg": "empty file", "truncated.jpg": "truncated", "notes.jpg": "not an image"}


def _write_bad_and_odd(folder, good_jpeg):
    (folder / "empty.jpg").write_bytes(b"")
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    Image.new("CMYK", (40, 36), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((36, 40), 32768, dtype=np.uint16)).save(folder / "deep16.png")
    Image.new("RGBA", (40, 36), (10, 20, 30, 128)).save(folder / "rgba.png")
    Image.new("L", (40, 36), 77).save(folder / "gray.png")
    Image.new("RGB", (5, 5), (200, 100, 50)).save(folder / "tiny5x5.png")


@pytest.fixture()
def dirty_folder(tmp_path, jpeg_imagefolder):
    root = tmp_path / "dirty"
    shutil.copytree(jpeg_imagefolder, root)
    folder = sorted((root / "train").iterdir())[0]
    _write_bad_and_odd(folder, sorted(folder.glob("*.jpg"))[0])
    return root, folder


def test_odd_modes_convert_to_rgb(tmp_path, jpeg_imagefolder):
    _write_bad_and_odd(tmp_path, next(jpeg_imagefolder.rglob("*.jpg")))
    expect = {"cmyk.jpg": (255, 0, 0), "deep16.png": (127, 127, 127), "rgba.png": (10, 20, 30),
              "gray.png": (77, 77, 77), "tiny5x5.png": (200, 100, 50)}
    for name, rgb in expect.items():
        assert check_image(str(tmp_path / name)) is None, name
        image = load_image_file(str(tmp_path / name))
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert np.abs(image.reshape(-1, 3).mean(0) - rgb).max() <= 3, (name, image.reshape(-1, 3).mean(0))
    for name, reason in BAD.items():
        assert reason in check_image(str(tmp_path / name)), name
        with pytest.raises(BadImageError, match=name):
            load_image_file(str(tmp_path / name))


def _dm(root, mode, workers=0):
    cfg = compose_cfg("train", FAST + ["data=imagefolder", f"data.root={root}", f"data.on_bad_image={mode}",
                                       "data.image_size=32", f"data.num_workers={workers}", "data.batch_size=8"])
    from omegaconf import OmegaConf

    return cfg, ImageDataModule(OmegaConf.to_container(cfg.data), OmegaConf.to_container(cfg.augmentation),
                                cfg.model.name, seed=0)


def test_skip_counts_and_names_bad_files_and_trains(dirty_folder, tmp_path, caplog):
    from cnnbench.commands.train import train

    root, folder = dirty_folder
    cfg = compose_cfg("train", FAST + ["data=imagefolder", f"data.root={root}", "data.on_bad_image=skip",
                                       "data.image_size=32", "trainer.max_epochs=1", "schedule=cosine",
                                       "data.batch_size=8", "data.val_split=0"])
    with caplog.at_level("WARNING", logger="cnnbench"):
        results = train(cfg, run_dir=tmp_path / "run")
    skipped = {entry["path"]: entry["reason"] for entry in results["skipped_images"]}
    assert set(skipped) == {str(folder / name) for name in BAD}
    for name, reason in BAD.items():
        assert reason in skipped[str(folder / name)]
    assert "skipped 3 bad train image(s)" in caplog.text and "truncated.jpg" in caplog.text
    # the odd-mode and tiny images stayed in and went through the 32×32 pipeline
    good = len([p for p in root.rglob("*") if p.is_file() and p.parent.parent.name == "train"]) - len(BAD)
    assert results["n_train"] == good


def test_error_names_the_file_before_training(dirty_folder, tmp_path, capsys):
    root, folder = dirty_folder
    cfg = compose_cfg("train", FAST + ["data=imagefolder", f"data.root={root}", "data.on_bad_image=error",
                                       "data.image_size=32"])
    with pytest.raises(SystemExit) as exit_info:
        run_guarded("train", cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad image" in err and str(folder) in err
    assert any(name in err for name in BAD)


def test_file_going_bad_after_the_scan_is_named_not_a_worker_traceback(tmp_path, jpeg_imagefolder):
    root = tmp_path / "later"
    shutil.copytree(jpeg_imagefolder, root)
    cfg, dm = _dm(root, "error", workers=2)
    dm.load()
    victim = dm.train_split.files[0][0]
    open(victim, "wb").close()  # truncated to 0 bytes after the scan
    loader = dm.train_dataloader()
    with pytest.raises(BadImageError) as info:
        for _ in loader:
            pass
    line = one_line(info.value)
    assert "Traceback" not in line and victim in line and line.startswith("cannot decode image")
