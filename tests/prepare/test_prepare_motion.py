"""Global alignment accuracy, shift application, dose weights and trajectory statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from draco_em.prepare import motion
from tests.prepare.prepare_movies import corr, fourier_shift, make_movie


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).sum(1).mean()))


@pytest.mark.parametrize("seed", [0, 1])
def test_global_shifts_within_half_pixel_rms(seed: int) -> None:
    movie = make_movie(seed=seed)
    frames = torch.from_numpy(movie.counts.astype(np.float32))
    est = motion.estimate_global_shifts(frames, pixel_size=1.0)
    assert est.shape == (10, 2)
    assert np.allclose(est[0], 0)
    assert _rms(est, movie.shifts) < 0.5
    assert np.abs(movie.shifts).max() > 5  # the test movie really drifts


@pytest.mark.parametrize("n_frames", [2, 3])
def test_global_shifts_of_short_movies(n_frames: int) -> None:
    """Each frame's peak against the others' sum is t/(t-1) times its residual: unscaled, a
    2-frame movie's frames overshoot and swap places on every pass (a 2.7 px drift came out
    as 0.5 px)."""
    movie = make_movie(frames=n_frames, dose=3.0)
    frames = torch.from_numpy(movie.counts.astype(np.float32))
    est = motion.estimate_global_shifts(frames, pixel_size=1.0)
    assert np.linalg.norm(movie.shifts[1]) > 2  # the movie really drifts
    assert _rms(est, movie.shifts) < 0.3


def test_global_shifts_on_binned_alignment_grid() -> None:
    """A movie larger than ``max_size`` is aligned on a Fourier-cropped copy, then scaled back."""
    movie = make_movie(seed=2)
    frames = torch.from_numpy(movie.counts.astype(np.float32))
    est = motion.estimate_global_shifts(frames, pixel_size=1.0, max_size=128)
    assert _rms(est, movie.shifts) < 0.5


def test_edge_taper_removes_pull_towards_zero() -> None:
    """Without the taper the detector edges (same place in every frame) bias shifts to 0."""
    movie = make_movie(seed=3, contrast=0.15)
    frames = torch.from_numpy(movie.counts.astype(np.float32))
    est = motion.estimate_global_shifts(frames, pixel_size=1.0, bfactor=1500)
    assert _rms(est, movie.shifts) < 0.6


def test_apply_global_shifts_undoes_a_known_drift() -> None:
    rng = np.random.default_rng(0)
    spec = np.fft.rfft2(rng.normal(size=(64, 64)))
    band = (np.abs(np.fft.fftfreq(64))[:, None] < 0.45) & (np.fft.rfftfreq(64)[None] < 0.45)
    image = np.fft.irfft2(spec * band, s=(64, 64))  # no Nyquist term: sub-pixel shifts exact
    shifts = np.array([[0.0, 0.0], [2.5, -1.25], [-3.0, 0.75]])
    frames = torch.from_numpy(np.stack([fourier_shift(image, *s) for s in shifts])).float()
    aligned = motion.apply_global_shifts(frames, shifts).numpy()
    for frame in aligned:
        assert np.allclose(frame, image, atol=1e-4)


def test_aligned_sum_correlates_like_perfect_alignment() -> None:
    synth_movie = make_movie()
    frames = torch.from_numpy(synth_movie.counts.astype(np.float32))
    est = motion.estimate_global_shifts(frames, pixel_size=1.0)
    ours = motion.apply_global_shifts(frames.clone(), est).sum(0).numpy()
    perfect = motion.apply_global_shifts(frames.clone(), synth_movie.shifts).sum(0).numpy()
    unaligned = frames.sum(0).numpy()
    m = 16  # the edge strip holds wrapped content either way
    inner = np.s_[m:-m, m:-m]
    c_ours, c_perfect = (
        corr(ours[inner], synth_movie.clean[inner]),
        corr(perfect[inner], synth_movie.clean[inner]),
    )
    assert c_ours >= 0.95 * c_perfect
    assert corr(unaligned[inner], synth_movie.clean[inner]) < 0.9 * c_perfect


def test_parabolic_peaks_finds_subpixel_maximum() -> None:
    y, x = np.mgrid[:32, :32]
    sy, sx = (y + 16) % 32 - 16, (x + 16) % 32 - 16  # signed, wrapped: origin at [0, 0]
    true = np.array([[0.3, -0.2], [-1.2, 2.4]])
    xcf = np.stack([np.exp(-((sx - tx) ** 2 + (sy - ty) ** 2) / 8) for tx, ty in true])
    found = motion.parabolic_peaks(torch.from_numpy(xcf)).numpy()
    assert np.abs(found - true).max() < 0.1


def test_motion_stats_in_angstrom() -> None:
    shifts = np.array([[0, 0], [3, 4], [3, 4], [4, 4]], float)  # steps 5, 0, 1 px
    stats = motion.motion_stats(shifts, pixel_size=2.0)
    assert stats.total_shift == pytest.approx(12.0)
    assert stats.max_frame_jump == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("text", "grid"), [("5x5", (5, 5)), ("3X2", (3, 2)), ("1x1", (1, 1)), ("0", (1, 1))]
)
def test_patch_grid_shape(text: str, grid: tuple[int, int]) -> None:
    assert motion.patch_grid_shape(text) == grid


@pytest.mark.parametrize("text", ["5", "5x", "axb", "0x3"])
def test_patch_grid_shape_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        motion.patch_grid_shape(text)


def test_dose_weights_keep_low_frequencies_and_damp_late_frames() -> None:
    w = motion.dose_weights(20, (64, 64), pixel_size=1.0, dose_per_frame=2.0).numpy()
    assert w.shape == (20, 64, 33)
    assert np.allclose((w**2).sum(0), 20, rtol=1e-5)  # flat noise power, as the plain sum
    assert w[0, 0, 0] == pytest.approx(1.0, abs=0.01)  # the mean is unweighted
    assert w[0, 0, 32] > w[-1, 0, 32]  # high frequency: late (damaged) frames count less


def test_dose_weights_at_200_kv_damp_faster() -> None:
    """Grant & Grigorieff: the critical exposure at 200 kV is 0.8 times that at 300 kV."""
    at300 = motion.dose_weights(20, (64, 64), 1.0, 2.0, voltage=300.0).numpy()
    at200 = motion.dose_weights(20, (64, 64), 1.0, 2.0, voltage=200.0).numpy()
    assert np.allclose((at200**2).sum(0), 20, rtol=1e-5)
    ratio = lambda w: w[-1, 0, 16] / w[0, 0, 16]  # noqa: E731  last frame against the first
    assert ratio(at200) < ratio(at300) < 1


def test_local_motion_field_shape_and_identity() -> None:
    """A movie without motion gets a near-zero field, and a zero field changes nothing."""
    movie = make_movie(n=192, frames=8, seed=4)
    frames = torch.from_numpy(movie.counts.astype(np.float32))
    aligned = motion.apply_global_shifts(frames, movie.shifts)
    field = motion.estimate_local_motion(aligned, (2, 2), pixel_size=1.0)
    assert field.shape[:2] == (2, 8)
    assert float(field.abs().mean()) < 0.5
    same = motion.apply_local_motion(aligned, torch.zeros_like(field))
    assert torch.allclose(same, aligned, atol=1e-3)
