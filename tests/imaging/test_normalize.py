"""DRACO robust normalisation against a direct loop-based reference (paper §1.4)."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.imaging.normalize import clip_limits, clip_stats, robust_normalize


def _reference(image: np.ndarray, tile: int = 128, extend: float = 1.5):
    """Slow, literal transcription of the official ``contrast_normalization`` + ``preprocess``."""
    h, w = image.shape
    th, tw = min(tile, h), min(tile, w)
    p2s, p98s = [], []
    for y0 in range(0, h - th + 1, th):
        for x0 in range(0, w - tw + 1, tw):
            patch = image[y0 : y0 + th, x0 : x0 + tw]
            p2s.append(np.percentile(patch, 2))
            p98s.append(np.percentile(patch, 98))
    p2m, p98m = np.median(p2s), np.median(p98s)
    vmid, vrange = (p2m + p98m) / 2, abs(p98m - p2m)
    low, high = vmid - extend * vrange / 2, vmid + extend * vrange / 2
    out = np.empty_like(image, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = min(max(image[i, j], low), high)
    mean, std = out.mean(), out.std()
    std = std if std > 0 else 1.0
    return (out - mean) / std, (low, high), (mean, std)


@pytest.fixture
def contaminated(rng: np.random.Generator) -> np.ndarray:
    """A 300x270 noisy image with hot pixels and a dark 'ice' corner (not tile multiples)."""
    img = rng.normal(100.0, 5.0, size=(300, 270))
    img[:60, :60] -= 80.0  # contamination in one tile: the median over tiles ignores it
    img[rng.integers(0, 300, 40), rng.integers(0, 270, 40)] = 5000.0  # hot pixels
    return img.astype(np.float32)


def test_matches_loop_reference(contaminated: np.ndarray) -> None:
    ref, (low, high), (mean, std) = _reference(contaminated)
    assert clip_limits(contaminated) == pytest.approx((low, high), rel=1e-6)
    out, stats = robust_normalize(contaminated)
    assert out.dtype == np.float32 and out.shape == contaminated.shape
    assert stats == pytest.approx((mean, std), rel=1e-5)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert clip_stats(contaminated) == pytest.approx(stats, rel=1e-12)


def test_other_tile_size_and_extend(contaminated: np.ndarray) -> None:
    ref, limits, _ = _reference(contaminated, tile=64, extend=2.0)
    assert clip_limits(contaminated, 64, 2.0) == pytest.approx(limits, rel=1e-6)
    np.testing.assert_allclose(robust_normalize(contaminated, 64, 2.0)[0], ref, atol=1e-4)


def test_hot_pixels_are_clipped(contaminated: np.ndarray) -> None:
    out, _ = robust_normalize(contaminated)
    # Without the clip the 5000-count pixels would sit hundreds of std above the mean.
    assert out.max() < 4.0
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, abs=1e-4)


def test_image_smaller_than_a_tile(rng: np.random.Generator) -> None:
    img = rng.normal(size=(50, 70)).astype(np.float32)
    ref, _, stats = _reference(img)
    out, got = robust_normalize(img)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert got == pytest.approx(stats, rel=1e-5)


def test_constant_image_has_std_one() -> None:
    out, (mean, std) = robust_normalize(np.full((130, 140), 3.5, np.float32))
    assert (mean, std) == (3.5, 1.0)
    assert np.all(out == 0.0)


# ---- padded borders and saturation (8-bit renderings, io/images.py) --------------------------


def test_replicated_and_constant_borders_are_left_out(rng: np.random.Generator) -> None:
    from draco_em.imaging.normalize import padded_border

    inner = rng.normal(100.0, 10.0, size=(400, 360)).astype(np.float32)
    padded = np.pad(inner, ((40, 24), (30, 0)), mode="edge")  # stripes, like EMPIAR-10017
    padded = np.pad(padded, ((0, 0), (0, 50)), mode="constant", constant_values=0)
    # replicated pads: the run and the edge row they repeat; a constant pad: exactly the pad
    assert padded_border(padded) == (41, 25, 31, 50)
    np.testing.assert_allclose(clip_stats(padded), clip_stats(inner[1:-1, 1:]), rtol=1e-6)
    norm, _ = robust_normalize(padded)
    core = norm[40:-24, 30:-50]
    assert abs(float(core.mean())) < 0.01 and float(core.std()) == pytest.approx(1.0, abs=0.01)
    _, plain_std = _reference(padded.astype(np.float64))[2]
    assert plain_std > 1.25 * clip_stats(inner)[1]  # counted, the pads inflate the std


def test_saturated_8bit_values_are_left_out(rng: np.random.Generator) -> None:
    from draco_em.imaging.normalize import saturated_values

    inner = rng.normal(128.0, 30.0, size=(512, 512))
    sat = inner.copy()
    sat[rng.random(sat.shape) < 0.05] = 255.0  # 5 % blown out, 2 % crushed to black
    sat[rng.random(sat.shape) < 0.02] = 0.0
    sat = np.clip(np.round(sat), 0, 255).astype(np.uint8).astype(np.float32)
    assert saturated_values(sat) == [0.0, 255.0]
    clean = np.clip(np.round(inner), 1, 254)
    mean, std = clip_stats(sat)
    ref_mean, ref_std = clip_stats(clean)
    assert mean == pytest.approx(ref_mean, abs=0.5) and std == pytest.approx(ref_std, rel=0.02)
    # counted, the spikes would pull the std up (the test can fail)
    low, high = clip_limits(sat)
    naive_std = float(np.clip(sat, low, high).std())
    assert naive_std > ref_std * 1.04


def test_ordinary_images_are_untouched(rng: np.random.Generator, contaminated: np.ndarray) -> None:
    """Noisy micrographs, Poisson counts (many zeros) and min-max scaled 8-bit images: no
    border, no saturation, so the statistics are exactly the plain rule's (the reference)."""
    from draco_em.imaging.normalize import padded_border, saturated_values

    counts = rng.poisson(0.8, size=(256, 256)).astype(np.float32)  # 45 % zeros: data, not clip
    scaled = rng.normal(0, 1, size=(256, 256))
    scaled = np.round(255 * (scaled - scaled.min()) / np.ptp(scaled)).astype(np.float32)
    for image in (contaminated, counts, scaled):
        assert padded_border(image) == (0, 0, 0, 0)
        assert saturated_values(image) == []
        _, _, (mean, std) = _reference(image.astype(np.float64))
        assert clip_stats(image) == pytest.approx((mean, std), rel=1e-5)
