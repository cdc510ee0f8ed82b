"""Classical filters used as denoising baselines (low-pass as in cryoSPARC, oracle Gaussian)."""

from __future__ import annotations

import numpy as np

from draco_em.imaging.fourier import frequency_grid


def gaussian_lowpass(image: np.ndarray, pixel_size: float, resolution: float) -> np.ndarray:
    """Gaussian low-pass whose amplitude falls to 0.5 at spatial frequency 1/``resolution``.

    Args:
        image: [..., ny, nx] array.
        pixel_size: Å per pixel.
        resolution: cut-off in Å (cryoSPARC's default display filter is 20 Å).

    Returns:
        Filtered float32 image of the same shape (mean preserved).
    """
    ny, nx = image.shape[-2:]
    fy, fx = frequency_grid((ny, nx), pixel_size)
    f2 = fy**2 + fx**2
    # exp(-ln2 (f·res)²) = 0.5 at f = 1/res: the "cut-off" a user reads off the option.
    response = np.exp(-np.log(2.0) * f2 * resolution**2)
    out = np.fft.irfft2(np.fft.rfft2(image.astype(np.float64)) * response, s=(ny, nx))
    return out.astype(np.float32)


def gaussian_blur_px(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Real-space Gaussian blur with σ in pixels (the oracle baseline sweeps σ)."""
    from scipy import ndimage

    return ndimage.gaussian_filter(image.astype(np.float32), sigma_px, mode="reflect")
