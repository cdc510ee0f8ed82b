"""Manifest reading, crop augmentation, normalisation and the resumable sampler."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.normalize import clip_stats
from draco_em.io.mrc import read_image, write_mrc
from draco_em.train.data import (
    CropDataset,
    ResumableSampler,
    load_manifest,
    split_train_val,
    working_pixel_range,
)
from tests.train.conftest import write_dataset


def test_manifest_records(tiny_manifest: Path) -> None:
    records = load_manifest(tiny_manifest)
    assert len(records) == 4
    r = records[0]
    assert r.has_pairs and r.clean is not None and r.pixel_size == 2.0 and r.shape == (128, 128)
    assert r.odd.name == "mic_0_odd.mrc" and r.odd.parent == tiny_manifest.parent


def test_mae_stage_accepts_micrographs_without_pairs(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n=2, pairs=False, clean=False)
    assert [r.has_pairs for r in load_manifest(manifest, stage="mae")] == [False, False]
    with pytest.raises(DracoInputError, match="--stage mae"):
        load_manifest(manifest, stage="draco")
    item = CropDataset(load_manifest(manifest, "mae"), 32, 2, pairs=False)[0]
    assert set(item) == {"full"} and item["full"].shape == (1, 32, 32)


def test_mae_manifest_of_png_micrographs(tmp_path: Path) -> None:
    """Real renderings (PNG/JPEG) can feed the MAE stage; their pixel size is the manifest's."""
    from PIL import Image

    from draco_em.io.star import read_micrographs_star, write_micrographs_star

    manifest = write_dataset(tmp_path, n=2, pairs=False, clean=False)
    table = read_micrographs_star(manifest)
    for i in range(2):
        image, _ = read_image(tmp_path / f"mic_{i}.mrc")
        image = np.round(255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / f"mic_{i}.png")
    table.micrographs["rlnMicrographName"] = ["mic_0.png", "mic_1.png"]
    write_micrographs_star(manifest, table)
    records = load_manifest(manifest, stage="mae")
    assert [(r.full.name, r.pixel_size, r.shape) for r in records] == [
        ("mic_0.png", 2.0, (128, 128)),
        ("mic_1.png", 2.0, (128, 128)),
    ]
    item = CropDataset(records, 32, 2, pairs=False)[0]
    assert item["full"].shape == (1, 32, 32) and float(item["full"].std()) > 0.5


def test_a_picture_file_is_decoded_once_for_many_crops(tmp_path: Path, monkeypatch) -> None:
    """A 4096² JPEG takes ~1 s to decode: crops of the same file reuse one decode, and an
    edited file (new modification time) is decoded again."""
    import os

    from PIL import Image

    import draco_em.train.data as data

    image = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
    path = tmp_path / "mic.png"
    Image.fromarray(image).save(path)
    calls: list[Path] = []
    real = data.read_image

    def counting(p, pixel_size=None):
        calls.append(Path(p))
        return real(p, pixel_size=pixel_size)

    monkeypatch.setattr(data, "read_image", counting)
    data._decoded_raster.cache_clear()
    records = load_manifest(path, stage="mae", pixel_size=2.0)
    dataset = CropDataset(records, 16, 8, pairs=False)
    crops = [dataset[i]["full"] for i in range(8)]
    assert len(calls) == 1 and not torch.equal(crops[0], crops[1])
    os.utime(path, ns=(1, 1))
    dataset[0]
    assert len(calls) == 2
    data._decoded_raster.cache_clear()


def test_crops_stay_inside_a_padded_border(tmp_path: Path) -> None:
    """A rendering with constant/striped padding (as the EMPIAR-10017 JPEGs) gives the same crops
    as its interior alone: the MAE stage never learns to draw the padding."""
    from PIL import Image

    from draco_em.io.star import read_micrographs_star, write_micrographs_star

    manifest = write_dataset(tmp_path, n=2, pairs=False, clean=False)
    table = read_micrographs_star(manifest)
    rng = np.random.default_rng(0)
    inner = np.clip(rng.normal(128, 30, (160, 160)), 0, 255).astype(np.uint8)
    padded = np.zeros((200, 210), np.uint8)  # 15/25 rows and 20/30 columns of padding
    padded[15:175, 20:180] = inner
    padded[:15] = 7  # a constant strip of another grey
    Image.fromarray(padded).save(tmp_path / "mic_0.png")
    Image.fromarray(inner).save(tmp_path / "mic_1.png")
    table.micrographs["rlnMicrographName"] = ["mic_0.png", "mic_1.png"]
    write_micrographs_star(manifest, table)
    records = load_manifest(manifest, stage="mae")
    assert records[0].shape == (200, 210)
    padded_ds, inner_ds = (
        CropDataset([r], 32, 40, angstrom=(60.0, 200.0), pairs=False, seed=1) for r in records
    )
    for k in range(40):  # crop k of the padded image and of its interior alone
        np.testing.assert_array_equal(padded_ds[k]["full"].numpy(), inner_ds[k]["full"].numpy())


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n=2)
    (tmp_path / "mic_1_even.mrc").unlink()
    with pytest.raises(DracoInputError, match=r"mic_1_even\.mrc"):
        load_manifest(manifest)


def test_nan_pixels_are_refused_before_training(tmp_path: Path) -> None:
    """Like every other command, pretraining names the file instead of a NaN loss at step 0;
    the odd/even halves only in the stage that trains on them."""
    from draco_em.io.mrc import write_mrc

    manifest = write_dataset(tmp_path, n=2)
    odd = read_image(tmp_path / "mic_1_odd.mrc")[0].copy()
    odd[5, :3] = [np.nan, np.inf, np.nan]
    write_mrc(tmp_path / "mic_1_odd.mrc", odd, 2.0)
    with pytest.raises(DracoInputError, match=r"mic_1_odd\.mrc: image has 3 NaN/Inf pixels"):
        load_manifest(manifest)
    assert len(load_manifest(manifest, stage="mae")) == 2  # the MAE stage reads only full
    full = read_image(tmp_path / "mic_0.mrc")[0].copy()
    full[0, 0] = np.nan
    image = write_mrc(tmp_path / "one.mrc", full, 2.0)
    with pytest.raises(DracoInputError, match=r"one\.mrc: image has 1 NaN/Inf pixels"):
        load_manifest(image, stage="mae", pixel_size=4.0)


def test_crop_area_and_flip_statistics(tiny_manifest: Path) -> None:
    records = load_manifest(tiny_manifest)
    ds = CropDataset(records, 64, 200, seed=3)
    sides, flips = [], []
    for i in range(200):
        y0, x0, side, flip = ds.geometry(i, (128, 128))
        assert 0 <= y0 <= 128 - side and 0 <= x0 <= 128 - side
        sides.append(side)
        flips.append(flip)
    area = np.array(sides) ** 2 / 128**2
    assert area.min() >= 1 / 16 - 0.01 and area.max() <= 1 / 4 + 0.01  # paper §3.2: area
    assert area.min() < 0.08 and area.max() > 0.23  # the range is covered
    assert 0.3 < np.mean(flips) < 0.7


def test_same_geometry_and_own_statistics_for_full_odd_even(tiny_manifest: Path) -> None:
    records = load_manifest(tiny_manifest)
    ds = CropDataset(records, 48, 3, seed=1)
    for index in range(6):
        item = ds[index]
        r = records[index // 3]
        stats = {
            name: clip_stats(read_image(getattr(r, name))[0]) for name in ("full", "odd", "even")
        }
        assert stats["odd"] != stats["full"]  # half dose: each image has its own statistics
        raw = {name: item[name] * stats[name][1] + stats[name][0] for name in stats}
        # Resizing is linear, so full = odd + even holds crop-wise only with identical geometry.
        torch.testing.assert_close(raw["full"], raw["odd"] + raw["even"], atol=1e-3, rtol=1e-4)
        assert abs(float(item["full"].mean())) < 1.5


def test_crops_are_a_function_of_seed_epoch_index(tiny_manifest: Path) -> None:
    records = load_manifest(tiny_manifest)
    a, b = CropDataset(records, 32, 4, seed=5), CropDataset(records, 32, 4, seed=5)
    assert torch.equal(a[7]["odd"], b[7]["odd"])
    assert not torch.equal(a[7]["odd"], b[7 + len(b)]["odd"])  # ticket of epoch 1
    assert not torch.equal(a[7]["odd"], CropDataset(records, 32, 4, seed=5, salt=1)[7]["odd"])


def test_split_puts_clean_micrographs_in_validation(tmp_path: Path) -> None:
    records = load_manifest(write_dataset(tmp_path, n=5, clean=False))
    clean = load_manifest(write_dataset(tmp_path / "c", n=1, clean=True))
    train, val = split_train_val(records + clean, 0.2, seed=0)
    assert len(train) == 5 and val == clean
    assert split_train_val(records, 0.0, 0)[1] == []


def test_working_pixel_range_scales_with_pixel_size(tiny_manifest: Path) -> None:
    records = load_manifest(tiny_manifest)  # 128 px at 2 Å: sides 32-64 px → 64 px crops
    assert working_pixel_range(records, 64, (1 / 16, 1 / 4)) == pytest.approx((1.0, 2.0))
    # Physical crop sizes: 128-256 Å at 2 Å/px is 64-128 px, clipped to the 128 px image.
    assert working_pixel_range(records, 64, (1 / 16, 1 / 4), (128.0, 256.0)) == pytest.approx(
        (2.0, 4.0)
    )


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_shards_per_step(world: int) -> None:
    n, b, accum = 50, 4, 2
    single = list(ResumableSampler(n, b * world, 1, 0, accum, seed=7))  # epoch 0: tickets = i
    shards = [list(ResumableSampler(n, b, world, r, accum, seed=7)) for r in range(world)]
    steps = len(single) // (b * world)
    for m in range(steps):  # rank r's m-th batch is the r-th block of the global m-th batch
        glob = single[m * b * world : (m + 1) * b * world]
        assert [i for s in shards for i in s[m * b : (m + 1) * b]] == glob
    assert len(set(single)) == len(single) == (n // (b * world * accum)) * b * world * accum


def test_sampler_position_restores() -> None:
    s = ResumableSampler(40, 4, seed=1)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start_batch=2)
    assert list(s) == full[8:] and len(s) == len(full) - 8
    assert all(120 <= t < 160 for t in full)  # tickets of epoch 3: 3 · 40 + index
    s.set_epoch(4)
    assert [t - 160 for t in s] != [t - 120 for t in full]  # a new permutation each epoch


def test_sampler_too_small_is_a_user_error() -> None:
    with pytest.raises(DracoInputError, match="batch"):
        ResumableSampler(7, 4, world_size=2)


def test_resize_is_antialiased(tiny_manifest: Path) -> None:
    # Pure noise downsampled 2× by an antialiasing filter loses variance; plain bilinear
    # sampling at pixel centres would keep most of it (aliasing).
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(128, 128)).astype(np.float32)
    from draco_em.train.data import _crop_resize

    out = _crop_resize(noise, 0, 0, 128, 64, (False, False), (0.0, 1.0))
    assert out.shape == (1, 64, 64) and float(out.var()) < 0.5
    assert math.isclose(float(out.mean()), float(noise.mean()), abs_tol=0.02)


def test_statistics_from_a_prepare_manifest_are_used(tmp_path: Path) -> None:
    from draco_em.io.star import read_micrographs_star, write_micrographs_star

    manifest = write_dataset(tmp_path, n=1)
    table = read_micrographs_star(manifest)
    table.micrographs["dracoMean"], table.micrographs["dracoStd"] = 100.0, 10.0  # simulate: alone
    write_micrographs_star(manifest, table)
    assert load_manifest(manifest)[0].manifest_stats is None  # not mixed with computed ones
    for suffix, value in (("Odd", 50.0), ("Even", 40.0)):
        table.micrographs[f"dracoMean{suffix}"], table.micrographs[f"dracoStd{suffix}"] = value, 5.0
    write_micrographs_star(manifest, table)
    record = load_manifest(manifest)[0]
    assert record.manifest_stats == {"full": (100.0, 10.0), "odd": (50.0, 5.0), "even": (40.0, 5.0)}
    item = CropDataset([record], 32, 1)[0]
    raw = {k: item[k] * record.manifest_stats[k][1] + record.manifest_stats[k][0] for k in item}
    torch.testing.assert_close(raw["full"], raw["odd"] + raw["even"], atol=1e-3, rtol=1e-4)


def test_mae_pretraining_reads_a_folder_of_pngs_with_a_pixel_size(tmp_path) -> None:
    """``--data FOLDER --pixel-size`` for real micrographs as users have them (issue 17)."""
    from PIL import Image

    from draco_em.cli import main as cli_main

    rng = np.random.default_rng(3)
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(mics / f"m{i}.png")
    records = load_manifest(mics, "mae", pixel_size=7.0)
    assert [r.full.name for r in records] == ["m0.png", "m1.png", "m2.png"]
    assert {r.pixel_size for r in records} == {7.0} and records[0].shape == (96, 96)
    with pytest.raises(DracoInputError, match="pixel size"):
        load_manifest(mics, "mae")  # a PNG carries no pixel size
    with pytest.raises(DracoInputError, match="odd/even"):
        load_manifest(str(mics / "*.png"), "draco", pixel_size=7.0)
    argv = ["pretrain", "--data", str(mics / "*.png"), "--pixel-size", "7", "--stage", "mae",
            "-o", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2",
            "--crops-per-micrograph", "2", "--crop-size", "32", "--device", "cpu",
            "--workers", "0", "-q", "--max-steps", "1", "--val-fraction", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        cli_main(argv)
    assert done.value.code in (0, None)
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_a_pixel_size_beside_a_manifest_is_refused(tmp_path) -> None:
    """The manifest gives each micrograph's pixel size; --pixel-size is never silently ignored."""
    star = write_dataset(tmp_path / "d", n=2, size=64)
    with pytest.raises(DracoInputError, match="--pixel-size is for image inputs"):
        load_manifest(star, "mae", pixel_size=2.0)


def test_nan_pixels_behind_manifest_statistics_name_the_file(tmp_path: Path) -> None:
    """A `prepare` manifest's statistics skip the up-front check; a micrograph that gained NaNs
    after them is named at its first crop (it was a NaN loss with no file, mid-run)."""
    from draco_em.io.mrc import write_mrc
    from draco_em.io.star import read_micrographs_star, write_micrographs_star

    manifest = write_dataset(tmp_path, n=1)
    table = read_micrographs_star(manifest)
    for suffix in ("", "Odd", "Even"):
        table.micrographs[f"dracoMean{suffix}"], table.micrographs[f"dracoStd{suffix}"] = 0.0, 1.0
    write_micrographs_star(manifest, table)
    full = read_image(tmp_path / "mic_0.mrc")[0].copy()
    full[:] = np.nan
    write_mrc(tmp_path / "mic_0.mrc", full, 2.0)
    (record,) = load_manifest(manifest)  # statistics given: not read whole here
    with pytest.raises(DracoInputError, match=r"mic_0\.mrc: NaN/Inf pixels in a training crop"):
        CropDataset([record], 32, 1)[0]


def test_an_empty_manifest_says_so(tmp_path: Path) -> None:
    """It said "no micrograph has odd/even pairs" (QA, session 22)."""
    manifest = write_dataset(tmp_path, n=1)
    text = manifest.read_text()
    manifest.write_text(text[: text.index("data_micrographs")] + "data_micrographs\n\nloop_\n"
                        "_rlnMicrographName #1\n")  # fmt: skip
    with pytest.raises(DracoInputError, match="lists no micrographs"):
        load_manifest(manifest, stage="draco")


def test_micrographs_without_halves_left_out_are_named(tmp_path: Path, caplog) -> None:
    manifest = write_dataset(tmp_path, n=3)
    text = manifest.read_text().replace("mic_1_odd.mrc", "None").replace("mic_1_even.mrc", "None")
    manifest.write_text(text)
    with caplog.at_level("WARNING", logger="draco_em"):
        records = load_manifest(manifest, stage="draco")
    assert [r.full.name for r in records] == ["mic_0.mrc", "mic_2.mrc"]
    assert "1 of 3 micrographs have no odd/even halves" in caplog.text and "mic_1" in caplog.text


def test_a_folder_of_sums_and_halves_pairs_them(tmp_path: Path) -> None:
    """X, X_EVN, X_ODD (MotionCor2 -SplitSum) are one exposure: read as X with its halves, not
    three images (a half could land in validation while its sum trained; QA, session 22)."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for suffix in ("", "_EVN", "_ODD"):
            write_mrc(tmp_path / f"{name}{suffix}.mrc", rng.random((64, 64), np.float32), 2.0)
    write_mrc(tmp_path / "c.mrc", rng.random((64, 64), np.float32), 2.0)
    records = load_manifest(tmp_path, stage="mae")
    assert [r.full.name for r in records] == ["a.mrc", "b.mrc", "c.mrc"]
    assert [(r.even.name, r.odd.name) for r in records[:2]] == [
        ("a_EVN.mrc", "a_ODD.mrc"),
        ("b_EVN.mrc", "b_ODD.mrc"),
    ]
    assert not records[2].has_pairs
    assert [r.full.name for r in load_manifest(tmp_path, stage="draco")] == ["a.mrc", "b.mrc"]
