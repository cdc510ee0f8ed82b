"""Synthetic drifting movies with known shifts, made in milliseconds with numpy (test helpers).

A movie is a fixed detector window onto a larger specimen canvas that drifts: frame k shows
the canvas moved by ``shift[k]`` (x, y) pixels, so the frame edges are *not* periodic, as on a
real detector. Counts are Poisson at ``dose`` e⁻/px/frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

MARGIN = 32


@dataclass
class SynthMovie:
    counts: np.ndarray  # uint8 [t, n, n] raw counts
    shifts: np.ndarray  # [t, 2] (x, y) px, relative to frame 0
    expected: np.ndarray  # float64 [t, n, n] Poisson means of each frame
    clean: np.ndarray  # float64 [n, n] the specimen in frame-0 coordinates, mean 1


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def fourier_shift(image: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``image`` moved by (sx, sy) pixels (periodic)."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * (kx * sx + ky * sy))).real


def make_movie(
    n: int = 256, frames: int = 10, dose: float = 1.0, seed: int = 0, contrast: float = 0.35
) -> SynthMovie:
    """A drifting movie: blobs + textured background, fast early drift that slows down."""
    rng = np.random.default_rng(seed)
    size = n + 2 * MARGIN
    yy, xx = np.mgrid[:size, :size]
    canvas = ndi.gaussian_filter(rng.normal(size=(size, size)), 1.5) * 2.0
    for cy, cx, r in zip(*rng.uniform(0, size, (2, 80)), rng.uniform(3, 9, 80), strict=True):
        canvas += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    canvas = np.clip(1 + contrast * (canvas - canvas.mean()) / canvas.std(), 0.05, None)
    k = np.arange(frames)
    steps = np.array([1.1, -0.7]) * (1 + 2 * np.exp(-k / 3))[:, None]
    steps = steps + rng.normal(0, 0.3, (frames, 2))
    steps[0] = 0
    shifts = np.cumsum(steps, axis=0)
    window = np.s_[MARGIN : MARGIN + n, MARGIN : MARGIN + n]
    expected = np.stack([fourier_shift(canvas, *s)[window] for s in shifts]).clip(0) * dose
    counts = rng.poisson(expected).astype(np.uint8)
    return SynthMovie(counts, shifts, expected, canvas[window])
