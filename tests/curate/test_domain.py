"""Raw sum or pre-denoised picture: the power near Nyquist (curate/domain.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from draco_em.curate.config import CuratePredictConfig
from draco_em.curate.domain import PRE_DENOISED_BELOW, denoised_warning, nyquist_ratio
from draco_em.curate.predict import predict_curation
from draco_em.io.mrc import read_image, write_mrc
from tests.curate.conftest import train_toy_curator


def test_white_noise_is_raw_and_a_low_pass_is_not(rng: np.random.Generator) -> None:
    noise = rng.normal(size=(512, 512)).astype(np.float32)
    # White noise has the same mean power per coefficient in both rings: a ratio of 1.
    white = nyquist_ratio(noise, 7.0)
    assert white == pytest.approx(1.0, abs=0.05) and white > PRE_DENOISED_BELOW
    # finer sampling is Fourier-binned to 7 Å first: still white
    assert nyquist_ratio(rng.normal(size=(1024, 1024)), 1.77) == pytest.approx(1.0, abs=0.05)
    # what a denoiser returns: little left near Nyquist
    assert nyquist_ratio(gaussian_filter(noise, 2.0), 7.0) < 0.05 < PRE_DENOISED_BELOW
    # a raw sum: strong smooth signal under shot noise stays above the floor, even when the
    # noise is weak
    blobs = gaussian_filter(rng.normal(size=(512, 512)), 6.0) * 30
    assert nyquist_ratio(blobs + noise, 7.0) > nyquist_ratio(blobs + 0.05 * noise, 7.0)
    assert nyquist_ratio(blobs + 0.05 * noise, 7.0) > PRE_DENOISED_BELOW


def test_the_warning_needs_most_of_a_batch() -> None:
    assert denoised_warning([]) is None
    assert denoised_warning([0.1] * 5 + [1.0] * 5) is None  # half: not most
    warning = denoised_warning([0.1] * 6 + [1.0] * 4)
    assert warning is not None and warning.startswith("6 of 10 micrographs look pre-denoised")
    assert "EMPIAR-10017" in warning  # the bundled head's measured failure
    own = denoised_warning([0.1] * 6 + [1.0] * 4, bundled=False)
    assert own is not None and "bundled" not in own and "EMPIAR" not in own


def test_predict_records_the_ratio_and_warns_on_denoised_inputs(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    run = train_toy_curator(toy_set, tiny_encoder, tmp_path / "run", 20)
    raw = tmp_path / "raw"
    smooth = tmp_path / "smooth"
    for folder in (raw, smooth):
        folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        image, px = read_image(toy_set / "mics" / f"toy_{i:02d}.mrc")
        noisy = image + rng.normal(0, 3 * float(image.std()), image.shape).astype(np.float32)
        write_mrc(raw / f"m{i}.mrc", noisy, px or 2.0)
        write_mrc(smooth / f"m{i}.mrc", gaussian_filter(noisy, 5.0), px or 2.0)
    results = {}
    for folder in (raw, smooth):
        cfg = CuratePredictConfig(
            inputs=[str(folder)], out_dir=tmp_path / f"out_{folder.name}", model=str(run),
            progress=False, device="cpu",
        )  # fmt: skip
        results[folder.name] = predict_curation(cfg)
    assert (results["raw"].table["nyquist_ratio"] > PRE_DENOISED_BELOW).all() and not results[
        "raw"
    ].warnings
    assert (results["smooth"].table["nyquist_ratio"] < PRE_DENOISED_BELOW).all()
    assert results["smooth"].warnings[0].startswith("3 of 3 micrographs look pre-denoised")
    assert "bundled" not in results["smooth"].warnings[0]  # a user's head, not the bundled one
    # cached per file beside the features: a resumed run reads no image again for it
    assert len(list((tmp_path / "out_smooth" / "features").glob("*-nyquist-*.npy"))) == 3


def test_extreme_images_give_a_ratio_or_nan_and_no_warning(rng: np.random.Generator) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nyquist_ratio(rng.normal(size=(64, 64)) * 1e30, 7.0) == pytest.approx(1.0, abs=0.2)
        assert np.isnan(nyquist_ratio(np.full((64, 64), 3.0), 7.0))
        assert np.isnan(nyquist_ratio(rng.normal(size=(8, 8)), 2.0))  # 2 px at 7 Å: no rings
    assert denoised_warning([float("nan")] * 4) is None  # NaN never counts as pre-denoised
