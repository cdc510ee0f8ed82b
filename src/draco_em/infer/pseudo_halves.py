"""Odd/even pseudo-halves recorrupted from a sum in electron counts (``--pseudo-halves``).

The halves-calibrated blend (:mod:`draco_em.infer.halves_blend`) needs two half sums with the
same signal and independent noise. Where a micrograph comes without them, Recorrupted-to-
Recorrupted (Pang et al., CVPR 2021) makes a pair from the sum ``y`` alone: with ``z`` Gaussian
of the sum's noise power spectrum ``N``,

    a′ = (y + z) / 2,   b′ = (y − z) / 2

carry the signal ``s/2`` each, noise of power ``N/2`` each (as real halves), and noise
cross-power ``(N − N)/4 = 0``; for Gaussian noise they are distributed as real halves, so the
blend's calibration holds unchanged. The crux is ``N`` without halves. For a sum in electron
counts it is modelled as

    N(f) = λ · exp(−c f²),    λ = the sum's mean count (e⁻/px),  f in cycles/px:

Poisson counting noise at zero frequency (interpolation and a counting camera's charge sharing
keep the mean and only lower the noise towards Nyquist), falling smoothly to the level the sum's
own power has in the band :data:`NOISE_BAND`, where the signal is a few per cent of the noise.
``c ≥ 0`` makes the model's mean power over that band equal the sum's. Where the band's power
is 1–1.5 × λ (coarse pixels: the band still holds signal) the noise is taken as flat at λ;
above 1.5 × (noise beyond Poisson's: an integrating camera, or counts scaled by a gain above 1)
as flat at the band's level. Development sets (our simulator at 1.2, 2.5 and 4 Å/px;
docs/benchmarks.md, issue 20, session 19): per ring, 0.77–1.41 × the halves' true noise power,
where a flat Poisson guess reaches 4.3 ×.

A sum that is not in counts (mean ≤ 0, or a band power under :data:`MIN_BAND_RATIO` of the
mean: normalised, pre-filtered or scaled down) has no noise model here and is refused.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.fft

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import frequency_grid
from draco_em.infer.halves_blend import fft_workers

#: Band (cycles per pixel, radial) whose power is taken as noise: chosen on development sets.
NOISE_BAND = (0.40, 0.50)
#: Band power / mean count under which the sum is not taken to be in counts (a counting camera's
#: noise near Nyquist stays above ~0.25 λ even after bilinear interpolation; development sets).
MIN_BAND_RATIO = 0.1
#: Band power / mean up to which the excess over Poisson's λ is taken as signal, the noise as
#: flat at λ (development sets at 4 Å/px: 1.03–1.30 from signal; docs/benchmarks.md, issue 20,
#: session 19, variant V1); above it the counts are taken as scaled and the noise as flat at the
#: band's level.
MAX_SIGNAL_RATIO = 1.5


def counting_noise_model(full: np.ndarray) -> dict[str, float]:
    """The noise model ``N(f) = level · exp(−c f²)`` of a 2-D sum in counts (module docstring).

    Returns ``{"level": λ or the band's level (power per pixel), "c": c, "band_ratio": the band
    power over the mean}``; raises :class:`DracoInputError` if the sum is not in counts.
    """
    y = np.asarray(full, dtype=np.float32)
    mean = float(y.mean(dtype=np.float64))
    spec = scipy.fft.rfft2(y - np.float32(mean), workers=fft_workers())
    fy, fx = frequency_grid(y.shape)
    f = np.hypot(fy, fx)
    band = (f >= NOISE_BAND[0]) & (f <= NOISE_BAND[1])
    power = (spec.real[band] ** 2 + spec.imag[band] ** 2).astype(np.float64) / y.size
    ratio = float(power.mean()) / mean if mean > 0 else float("nan")
    if not mean > 0 or not ratio >= MIN_BAND_RATIO:
        why = (f"its mean is {mean:.3g} per pixel" if not mean > 0 else
               f"its noise power near Nyquist is {ratio:.3g} × its mean {mean:.3g}")  # fmt: skip
        raise DracoInputError(
            f"no noise model for pseudo-halves: the sum is not in electron counts ({why}); "
            "give a raw sum"
        )
    if ratio > MAX_SIGNAL_RATIO:  # noise above Poisson's: scaled counts; flat at that level
        return {"level": float(power.mean()), "c": 0.0, "band_ratio": ratio}
    if ratio >= 1.0:  # coarse pixels: the band still holds signal; the noise is Poisson's
        return {"level": mean, "c": 0.0, "band_ratio": ratio}
    # c matches the model's mean power over the band to the sum's (bisection: the mean falls
    # monotonically in c); a fit to per-coefficient log powers would be biased (χ² with 2
    # degrees of freedom: the mean log lies below the log mean by Euler's γ). The band's f² go
    # in 1024 bins (count and mean f² each), so the 60 steps cost nothing on a 4096² sum
    # (c moves by < 1e-6 against the coefficient-by-coefficient mean).
    f2 = f[band].astype(np.float64) ** 2
    edges = np.linspace(f2.min(), f2.max(), 1025)
    which = np.clip(np.searchsorted(edges, f2, side="right") - 1, 0, 1023)
    count = np.bincount(which, minlength=1024)
    centre = np.bincount(which, f2, minlength=1024)[count > 0] / count[count > 0]
    share = count[count > 0] / count.sum()
    lo, hi = 0.0, 200.0
    for _ in range(60):
        c = 0.5 * (lo + hi)
        lo, hi = (c, hi) if float(share @ np.exp(-c * centre)) > ratio else (lo, c)
    return {"level": mean, "c": 0.5 * (lo + hi), "band_ratio": ratio}


def pseudo_halves(
    full: np.ndarray, seed: int | str, model: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Recorrupted pseudo-halves ``(a′, b′)`` of a 2-D sum in counts, float32 ``[ny, nx]``.

    ``seed`` (an int, or a string such as the file's stem) fixes ``z``, so a re-run gives the
    same halves. ``model`` (``level``, ``c``) replaces :func:`counting_noise_model`'s. Returns
    the halves and the noise model's parameters.
    """
    if isinstance(seed, str):
        seed = zlib.crc32(seed.encode())
    model = counting_noise_model(full) if model is None else model
    y = np.asarray(full, dtype=np.float32)
    fy, fx = frequency_grid(y.shape)
    # √N(f) = √level · exp(−c fy²/2) · exp(−c fx²/2): separable, applied as a column then a row.
    col = (np.sqrt(model["level"]) * np.exp(-0.5 * model["c"] * fy**2)).astype(np.float32)
    row = np.exp(-0.5 * model["c"] * fx**2).astype(np.float32)
    white = np.random.default_rng(seed).standard_normal(y.shape, dtype=np.float32)
    spec = scipy.fft.rfft2(white, workers=fft_workers())
    spec *= col
    spec *= row
    z = scipy.fft.irfft2(spec, s=y.shape, workers=fft_workers(), overwrite_x=True)
    z = z.astype(np.float32, copy=False)
    return (y + z) * np.float32(0.5), (y - z) * np.float32(0.5), model
