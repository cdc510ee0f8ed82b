"""`draco evaluate denoise` scores on the micrograph's grid: coordinates on a `--keep-binned`
prediction without `--raw`, and stacks (tilt series) section by section against the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise
from draco_em.imaging.fourier import fourier_rescale
from draco_em.io.coords import write_cs, write_relion_coords
from draco_em.io.mrc import write_mrc

MIC_PX, BINNED_PX = 1.5, 3.0  # Å/px of the micrograph and of its --keep-binned prediction
PICKS = np.array([[30.0, 30.0], [90.0, 40.0], [40.0, 95.0], [100.0, 100.0]])


@pytest.fixture
def binned(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A 128² micrograph at 1.5 Å/px with disks at its picks, and a smoothed copy of it written
    at 3 Å/px (64², as `draco denoise --keep-binned` writes at the model's pixel size)."""
    yy, xx = np.mgrid[:128, :128]
    signal = sum(((xx - x) ** 2 + (yy - y) ** 2 <= 64).astype(float) for x, y in PICKS)
    raw = signal + rng.normal(size=(128, 128))
    write_mrc(tmp_path / "raw" / "mic_1.mrc", raw, MIC_PX)
    small, px = fourier_rescale(ndimage.gaussian_filter(raw, 2), MIC_PX, BINNED_PX)
    assert small.shape == (64, 64) and px == BINNED_PX
    write_mrc(tmp_path / "pred" / "mic_1.mrc", small, px)
    picks = pd.DataFrame({"micrograph": "mic_1", "x": PICKS[:, 0], "y": PICKS[:, 1]})
    write_relion_coords(tmp_path / "coords" / "mic_1.star", picks)
    write_cs(tmp_path / "picks.cs", picks, micrograph_shape=(128, 128), pixel_size=MIC_PX)
    return tmp_path


def test_coordinates_land_on_a_keep_binned_prediction_without_raw(binned: Path) -> None:
    """Coordinates are in the micrograph's pixels: without --raw they were taken on the
    prediction's half-size grid (pairs off the particles, a 64² pairs file)."""
    kw = {"pred": binned / "pred", "radius": 5.0}
    movie = np.random.default_rng(2).normal(size=(3, 128, 128))
    write_mrc(binned / "raw" / "mic_1.mrcs", movie, MIC_PX)  # a movie beside its sum: not raw
    with_raw = evaluate_denoise(
        EvaluateDenoiseConfig(raw=binned / "raw", coords=binned / "coords", **kw)
    )
    alone = evaluate_denoise(EvaluateDenoiseConfig(
        coords=binned / "coords", pixel_size=MIC_PX, pairs=binned / "pairs.json", **kw
    ))  # fmt: skip
    assert alone["mean"]["snr_db"] == pytest.approx(with_raw["mean"]["snr_db"], abs=1e-9)
    assert alone["per_micrograph"][0]["snr_pairs"] == 4
    saved = json.loads((binned / "pairs.json").read_text())["micrographs"]["mic_1"]
    assert saved["shape"] == [128, 128]
    # A cryoSPARC .cs states the micrograph's pixel size itself.
    from_cs = evaluate_denoise(EvaluateDenoiseConfig(coords=binned / "picks.cs", **kw))
    assert from_cs["mean"]["snr_db"] == pytest.approx(with_raw["mean"]["snr_db"], abs=1e-9)
    # A saved pairs file names the micrograph's grid: reused without --pixel-size.
    again = evaluate_denoise(
        EvaluateDenoiseConfig(coords=binned / "coords", pairs=binned / "pairs.json", **kw)
    )
    assert again["mean"]["snr_db"] == pytest.approx(alone["mean"]["snr_db"])


def test_a_prediction_stating_its_own_pixel_size_needs_the_micrographs(binned: Path) -> None:
    """Nothing says whether a 3 Å/px prediction is a binned 1.5 Å/px micrograph: one line."""
    cfg = EvaluateDenoiseConfig(pred=binned / "pred", coords=binned / "coords", radius=5.0)
    with pytest.raises(DracoInputError, match=r"give --pixel-size .* or --raw") as err:
        evaluate_denoise(cfg)
    assert "\n" not in str(err.value) and "mic_1.mrc" in str(err.value)


def test_a_prediction_at_the_micrographs_pixel_size_is_scored_as_it_is(binned: Path) -> None:
    (binned / "same").mkdir()
    write_mrc(binned / "same" / "mic_1.mrc", np.random.default_rng(1).normal(size=(128, 128)), 1.5)
    cfg = EvaluateDenoiseConfig(pred=binned / "same", coords=binned / "coords", radius=5.0,
                                pixel_size=1.5004, pairs=binned / "p.json")  # fmt: skip
    assert evaluate_denoise(cfg)["per_micrograph"][0]["snr_pairs"] == 4
    saved = json.loads((binned / "p.json").read_text())["micrographs"]["mic_1"]
    assert saved["shape"] == [128, 128]


@pytest.fixture
def tilt_series(tmp_path: Path, blob_pair, rng: np.random.Generator) -> Path:
    """A clean 3-section stack, a noisy one and a denoised one written at half the sampling."""
    clean = np.stack([np.roll(blob_pair[0], 9 * k, axis=1) for k in range(3)])
    noisy = clean + rng.normal(scale=0.7, size=clean.shape)
    write_mrc(tmp_path / "clean" / "ts_01.mrcs", clean, 2.0)
    write_mrc(tmp_path / "noisy" / "ts_01.mrcs", noisy, 2.0)
    smooth = np.stack([ndimage.gaussian_filter(s, 1.0) for s in noisy])
    write_mrc(tmp_path / "binned" / "ts_01.mrcs", fourier_rescale(smooth, 2.0, 4.0)[0], 4.0)
    return tmp_path


def test_a_tilt_series_is_scored_section_by_section(tilt_series: Path) -> None:
    kw = {"clean": tilt_series / "clean"}
    noisy = evaluate_denoise(EvaluateDenoiseConfig(pred=tilt_series / "noisy", **kw))
    binned = evaluate_denoise(EvaluateDenoiseConfig(pred=tilt_series / "binned", **kw))
    assert [r["section"] for r in noisy["per_micrograph"]] == [0, 1, 2] and noisy["n"] == 3
    assert binned["mean"]["psnr_db"] > noisy["mean"]["psnr_db"]
    # 2 Å/px (the clean stack's header): the FRC 0.5 resolution in Å, at least Nyquist (4 Å)
    assert all(r["frc_0.5_resolution_A"] >= 4.0 for r in noisy["per_micrograph"])


def test_a_stack_without_truth_is_refused_in_one_line(tilt_series: Path) -> None:
    write_relion_coords(
        tilt_series / "coords" / "ts_01.star",
        pd.DataFrame({"micrograph": ["ts_01"], "x": [32.0], "y": [32.0]}),
    )
    cfg = EvaluateDenoiseConfig(pred=tilt_series / "noisy", coords=tilt_series / "coords")
    with pytest.raises(DracoInputError, match="stack of 3 sections is scored against --clean"):
        evaluate_denoise(cfg)
    (tilt_series / "one").mkdir()
    write_mrc(tilt_series / "one" / "ts_01.mrcs", np.ones((2, 64, 64)) + np.eye(64), 2.0)
    with pytest.raises(DracoInputError, match=r"2 sections, but its clean ts_01\.mrcs has 3"):
        evaluate_denoise(EvaluateDenoiseConfig(pred=tilt_series / "one",
                                               clean=tilt_series / "clean"))  # fmt: skip
