import numpy as np
import pytest

from draco_em.evaluate.denoise_metrics import (
    disk_mask,
    fourier_ring_correlation,
    match_scale_offset,
    pair_regions,
    psnr,
    snr_db,
    ssim,
)


def test_metrics_ignore_scale_and_offset(blob_pair):
    clean, odd, _ = blob_pair
    scaled = 7.5 * clean - 3.0
    assert psnr(scaled, clean) > 100
    assert ssim(scaled, clean) == pytest.approx(1.0)
    np.testing.assert_allclose(match_scale_offset(scaled, clean), clean, atol=1e-5)
    # A noisy image scores lower than a smoothed version of the same noise on a smooth target.
    assert psnr(odd, clean) < psnr(odd * 0 + clean + 0.01 * odd, clean)


def test_psnr_hand_value():
    clean = np.array([[0.0, 1.0], [2.0, 3.0]])
    pred = clean + np.array([[0.1, -0.1], [0.1, -0.1]])
    matched = match_scale_offset(pred, clean)
    mse = np.mean((matched - clean) ** 2)
    assert psnr(pred, clean) == pytest.approx(10 * np.log10(9.0 / mse))


def test_frc_identical_is_one_and_noise_is_low(rng):
    a = rng.normal(size=(64, 64))
    _, frc = fourier_ring_correlation(a, a)
    np.testing.assert_allclose(frc[1:], 1.0, atol=1e-9)
    _, frc_noise = fourier_ring_correlation(a, rng.normal(size=(64, 64)))
    assert abs(frc_noise[1:].mean()) < 0.1


def test_frc_sums_the_full_rings_of_the_2d_spectrum(rng):
    """The rfft2 half plane must weigh as the full plane it stands for (even and odd widths)."""
    for shape in ((48, 64), (48, 63)):
        a, b = rng.normal(size=shape), rng.normal(size=shape)
        b = a + b
        fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
        ky, kx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
        n = min(shape)
        ring = np.rint(np.hypot(ky, kx) * n)
        want = [
            (fa * np.conj(fb))[ring == r].real.sum()
            / np.sqrt((abs(fa[ring == r]) ** 2).sum() * (abs(fb[ring == r]) ** 2).sum())
            for r in range(1, n // 2 + 1)
        ]
        np.testing.assert_allclose(fourier_ring_correlation(a, b)[1][1:], want, atol=1e-12)


def test_snr_eq11_hand_computation():
    img = np.zeros((40, 40))
    img[disk_mask(img.shape, 10, 10, 3)] = 2.0
    img[20:, :] = np.tile([0.0, 1.0], 20)[None, :]  # background with mean 0.5, var 0.25
    pairs = [((10.0, 10.0), (20.0, 30.0))]
    bg = img[disk_mask(img.shape, 20, 30, 3)]
    expected = 10 * np.log10((2.0 - bg.mean()) ** 2 / bg.var())
    assert snr_db(img, pairs, 3) == pytest.approx(expected)


def test_pair_regions_backgrounds_hold_no_particle(rng):
    coords = rng.uniform(20, 236, size=(30, 2))
    pairs = pair_regions(coords, (256, 256), radius=8, n_pairs=20)
    assert 0 < len(pairs) <= 20
    for (sx, sy), (bx, by) in pairs:
        assert np.min(np.hypot(coords[:, 0] - bx, coords[:, 1] - by)) >= 16 - 1e-9
        assert np.hypot(sx - bx, sy - by) <= 6 * 8 + 1e-9


def test_pair_regions_avoid_mask_keeps_disks_off_contamination(rng):
    coords = rng.uniform(20, 236, size=(30, 2))
    avoid = np.zeros((256, 256), dtype=bool)
    avoid[:, 128:] = True  # right half is "ice"
    pairs = pair_regions(coords, (256, 256), radius=8, n_pairs=30, avoid=avoid)
    assert pairs
    for (sx, _), (bx, _) in pairs:
        assert sx < 128 - 8 and bx < 128 - 8 + 1


def test_half_cross_db_punishes_both_leftover_noise_and_blur(rng):
    from scipy import ndimage

    from draco_em.evaluate.denoise_metrics import half_cross_db

    signal = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 3) * 10
    even, odd = signal + rng.normal(size=signal.shape), signal + rng.normal(size=signal.shape)

    def score(sigma: float) -> float:
        f = (lambda x: ndimage.gaussian_filter(x, sigma)) if sigma else (lambda x: x)
        return half_cross_db(f(even), f(odd), even, odd)

    assert score(2.0) > score(0.0) + 1  # leftover noise costs
    assert score(2.0) > score(12.0) + 1  # so does blur


def test_half_frc_reports_the_gold_standard_and_the_half_bit_criteria_in_angstrom(rng):
    """0.143 between two independent halves (the full sum's resolution) and the stricter 0.5,
    both in Å with a pixel size; a criterion never crossed by Nyquist is None, not Nyquist."""
    from scipy import ndimage

    from draco_em.evaluate.denoise_metrics import frc_crossing, half_frc_summary

    signal = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 2) * 6  # power falls with f
    even, odd = signal + rng.normal(size=signal.shape), signal + rng.normal(size=signal.shape)
    out = half_frc_summary(even, odd, pixel_size=2.0)
    at_143, at_05 = out["half_frc_0.143_resolution_A"], out["half_frc_0.5_resolution_A"]
    assert at_143 == pytest.approx(2.0 / out["half_frc_0.143_cycles_per_px"])
    assert at_05 == pytest.approx(2.0 / out["half_frc_0.5_cycles_per_px"])
    assert 4.0 < at_143 < at_05  # 0.5 is met at a lower frequency: a coarser resolution
    freq, frc = fourier_ring_correlation(even, odd, taper=True)
    assert frc_crossing(freq, frc, 0.143) == pytest.approx(2.0 / at_143)
    assert frc[1:][freq[1:] < 2.0 / at_05].min() >= 0.5  # "first drops below"
    same = half_frc_summary(signal, signal, pixel_size=2.0)
    assert same["half_frc_0.143_resolution_A"] is None and same["half_frc_0.5_resolution_A"] is None
    assert same["half_frc_0.143_cycles_per_px"] == 0.5  # Nyquist, as before
    assert "half_frc_0.5_resolution_A" not in half_frc_summary(even, odd)  # no pixel size
