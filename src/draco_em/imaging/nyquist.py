"""Raw sum or pre-denoised picture? Power near Nyquist tells them apart.

A raw sum carries shot noise, white up to Nyquist; a denoised picture (EMPIAR-10017's 8-bit
JPEGs, Topaz- or DRACO-denoised micrographs) holds almost none there. The ratio of the mean
spectral power in the ring 0.30–0.50 cycles/px to that in 0.15–0.30 cycles/px, measured at
:data:`DOMAIN_PX` (finer images are Fourier-binned to it), is 1 for white noise, 0.71 for the
median of our raw simulated training micrographs and 0.16 for the median of their renderings.

Where the two overlap, signal decides: a raw field rich in strong particles puts power in the
band below Nyquist, so the ratio of raw sums runs down to 0.11 (the bundled curator's 534 raw
training micrographs; 0.20–0.46 for cryoJAX's good fields at 40 e⁻/Å², 0.18 for the lowest real
MicAssess PNG). The split that misroutes the fewest of our raw sums and renderings (0.348,
docs/benchmarks.md, issue 19 session 12) would call half of cryoJAX's good raw fields
pre-denoised, so the package only flags a micrograph below :data:`PRE_DENOISED_BELOW`, lower
than every raw sum we simulated; EMPIAR-10017's JPEGs lie at 0.055–0.078, the contaminated raw
MRC at 0.58.

Used by ``draco curate predict`` (:mod:`draco_em.curate.domain`) and ``draco pick predict``
(:mod:`draco_em.pick.run`): both bundled models were calibrated mostly on raw sums.
"""

from __future__ import annotations

import numpy as np

from draco_em.imaging.fourier import fourier_rescale, frequency_grid

#: Sampling (Å/px) at which the ratio is measured: MicAssess's ~7 Å/px, the coarsest input the
#: curator is shown; finer images are Fourier-binned to it, coarser ones used as they are.
DOMAIN_PX = 7.0
#: Rings (cycles/px) compared: near Nyquist against the band below it.
HIGH_RING = (0.30, 0.50)
MID_RING = (0.15, 0.30)
#: Below this ratio a micrograph looks pre-denoised: the lowest ratio of the 534 raw simulated
#: training micrographs of the bundled curator's recipe (0.1135), rounded down.
PRE_DENOISED_BELOW = 0.11


def nyquist_ratio(image: np.ndarray, pixel_size: float | None) -> float:
    """Mean spectral power near Nyquist over that of the band below (module docstring).

    Args:
        image: ``[H, W]`` micrograph, any units.
        pixel_size: its pixel size in Å (None: measured at its own sampling).

    Returns:
        The ratio (white noise: 1; below :data:`PRE_DENOISED_BELOW`: looks pre-denoised); NaN
        for a constant image (never counted as pre-denoised).
    """
    img = np.asarray(image, np.float32)
    if pixel_size and pixel_size < DOMAIN_PX - 1e-3:
        img, _ = fourier_rescale(img, pixel_size, DOMAIN_PX)
    img = img - np.float32(img.mean(dtype=np.float64))
    scale = float(np.std(img, dtype=np.float64))
    if not np.isfinite(scale) or scale == 0:
        return float("nan")  # a constant (or broken) image has no spectrum to judge
    power = np.abs(np.fft.rfft2(img / np.float32(scale))) ** 2  # unit variance: no overflow
    ky, kx = frequency_grid(img.shape)
    radius = np.hypot(ky, kx)
    high = power[(radius >= HIGH_RING[0]) & (radius < HIGH_RING[1])]
    mid = power[(radius >= MID_RING[0]) & (radius < MID_RING[1])]
    if high.size == 0 or mid.size == 0:  # a few pixels at 7 Å: no rings to compare
        return float("nan")
    return float(high.mean() / max(float(mid.mean()), 1e-30))


def looks_pre_denoised(ratio: float) -> bool:
    """Whether a ratio of :func:`nyquist_ratio` says pre-denoised (NaN: no)."""
    return bool(ratio < PRE_DENOISED_BELOW)
