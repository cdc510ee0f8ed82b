"""Dose, radiation damage, specimen motion and the counting detector.

* Radiation damage: the specimen's Fourier components fade with the accumulated exposure N as
  ``exp(-N / (2 N_e(q)))``, ``N_e(q) = 0.245 q^-1.665 + 2.81`` e⁻/Å² (Grant & Grigorieff 2015,
  eLife 4:e06980, Eq. 3 and Fig. 2).
* Motion: a global drift, fast in the first frames and then slower (Li et al. 2013, Nat. Methods
  10, 584), plus a smooth local beam-induced displacement field that grows with exposure
  (Zheng et al. 2017, Nat. Methods 14, 331; Zivanov et al. 2019, IUCrJ 6, 5).
* Detector: an electron-counting detector with MTF ``sinc(f) · exp(-(f / 1.06)²)`` (f in cycles
  per pixel; 0.5 at Nyquist, as a K2/K3 in counting mode, McMullan et al. 2014, Ultramicroscopy
  147, 156) applied to the expected image; counts are Poisson, independent per pixel and frame,
  so the noise power is flat and DQE(f) = MTF(f)². An optional per-pixel gain (sensitivity)
  map makes raw counts non-uniform; ``gain.mrc`` holds its reciprocal, the gain reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from draco_em.imaging.fourier import frequency_grid_torch
from draco_em.simulate.sample import smooth_field


def critical_exposure(q: torch.Tensor) -> torch.Tensor:
    """N_e(q) in e⁻/Å² for spatial frequency q in 1/Å (Grant & Grigorieff 2015)."""
    return 0.245 * q.clamp(min=1e-3) ** -1.665 + 2.81


def damage_filter(q: torch.Tensor, exposure: float) -> torch.Tensor:
    """Amplitude left after ``exposure`` e⁻/Å² at frequency q (1/Å)."""
    return torch.exp(-exposure / (2 * critical_exposure(q)))


def detector_mtf(shape: tuple[int, int]) -> torch.Tensor:
    """MTF on the rfft2 grid of ``shape`` (separable sinc of the pixel × Gaussian blur)."""
    fy, fx = frequency_grid_torch(shape)
    blur = torch.exp(-(fy**2 + fx**2) / 1.06**2)
    return torch.sinc(fy) * torch.sinc(fx) * blur


def drift_trajectory(
    rng: np.random.Generator, frames: int, speed_px: float, heavy: bool = False
) -> np.ndarray:
    """True global shift of each frame relative to frame 0, [frames, 2] (x, y) in pixels.

    The specimen in frame k appears moved by ``shift[k]``: aligning frame k means shifting it
    by ``-shift[k]``. Speed decays from ~4× ``speed_px`` in the first frames, and the direction
    wanders slowly. ``heavy`` multiplies the speed by 15–40 (a bad micrograph: at the default
    0.6 Å/frame the blur within each frame is ~11–29 Å, visible at a 2 Å working pixel size;
    milder drift blurs only beyond the 4 Å working Nyquist and cannot be told from the image).
    """
    speed = speed_px * (rng.uniform(15, 40) if heavy else rng.uniform(0.5, 1.5))
    k = np.arange(frames)
    step = speed * (1 + 3 * np.exp(-k / 3.0))
    direction = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, frames))
    steps = np.stack([np.cos(direction), np.sin(direction)], 1) * step[:, None]
    steps[0] = 0
    return np.cumsum(steps, axis=0)


def local_motion_field(
    rng: np.random.Generator, canvas: tuple[int, int], rms_px: float
) -> torch.Tensor:
    """Final local displacement field [2, H, W] (x, y) in pixels, RMS ``rms_px``, smooth on a
    scale of ~1/4 of the image (patches move somewhat independently, like in MotionCor2)."""
    fields = [smooth_field(rng, canvas, 0.25 * max(canvas)) for _ in range(2)]
    return torch.from_numpy(np.stack(fields)) * (rms_px / np.sqrt(2))


def motion_progress(frames: int) -> np.ndarray:
    """Fraction of the final local displacement reached in each frame (fast early, saturating)."""
    k = np.arange(frames, dtype=np.float64)
    return (1 - np.exp(-k / 4.0)) / (1 - np.exp(-(frames - 1) / 4.0) + 1e-12)


class Warper:
    """Moves a canvas by a global shift plus a scaled local field (bilinear, border-clamped).

    ``warper(image, shift_xy, scale)`` returns ``out(x) = image(x - shift - scale * local(x))``.
    The sampling grid is built once per canvas, so a frame costs one ``grid_sample``.
    """

    def __init__(self, shape: tuple[int, int], local: torch.Tensor | None) -> None:
        h, w = shape
        self._size = torch.tensor([w, h], dtype=torch.float32)
        ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        # grid_sample's normalised coordinates (align_corners=False): (2 x + 1) / w - 1.
        self._base = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1)
        self._local = (
            None if local is None else torch.stack([2 * local[0] / w, 2 * local[1] / h], -1)
        )

    def __call__(
        self, image: torch.Tensor, shift_xy: np.ndarray, scale: float = 1.0
    ) -> torch.Tensor:
        offset = 2 * torch.as_tensor(shift_xy, dtype=torch.float32) / self._size
        grid = self._base - offset
        if self._local is not None and scale != 0:
            grid = grid.sub_(self._local, alpha=float(scale))
        out = F.grid_sample(
            image[None, None],
            grid[None],
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        return out[0, 0]


def poisson(rng: np.random.Generator, lam: np.ndarray, max_count: int = 255) -> np.ndarray:
    """Exact Poisson draws for a low-dose frame, by inversion with an active set (uint8/int16).

    For the 0.5–5 counts per pixel of a dose-fractionated frame this is ~3× faster than
    ``rng.poisson``: after two terms of the CDF only a few pixels remain active.
    """
    lam = np.ascontiguousarray(lam, dtype=np.float32).ravel()
    if lam.size and float(lam.max()) > 12:  # inversion needs ~λ passes: numpy's sampler wins
        return rng.poisson(lam).astype(np.int16).reshape(-1)
    floor = float(lam.min()) if lam.size else 0.0
    if floor > 0.3:
        # Poisson(λ) = Poisson(floor) + Poisson(λ - floor), independent: the constant part is
        # a table look-up, and only the small remainder needs the per-pixel inversion.
        base = _constant_poisson(rng, floor, lam.size)
        return base + poisson(rng, lam - np.float32(floor), max_count).astype(base.dtype)
    u = rng.random(lam.size, dtype=np.float32)
    p = np.exp(-lam)
    counts: np.ndarray = np.zeros(lam.size, np.uint8 if max_count <= 255 else np.int16)
    idx = np.flatnonzero(u > p)
    u, p = u[idx], p[idx]
    cdf = p.copy()
    k = 0
    while idx.size and k < max_count:
        counts[idx] += 1
        k += 1
        p = p * lam[idx] / k
        cdf = cdf + p
        # In float32 the CDF can stall just below a uniform draw near 1: stop a pixel once its
        # next terms are below float32 resolution (a bias of < 1e-7 in probability).
        keep = (u > cdf) & ((p > 1e-7) | (k <= lam[idx]))
        idx, u, p, cdf = idx[keep], u[keep], p[keep], cdf[keep]
    return counts


def _constant_poisson(rng: np.random.Generator, lam: float, n: int) -> np.ndarray:
    """``n`` Poisson(λ) draws for one λ ≤ 12, by inverting the tabulated CDF (uint8)."""
    k = np.arange(64)
    log_pmf = -lam + k * np.log(lam) - np.array([math.lgamma(i + 1) for i in k])
    cdf = np.cumsum(np.exp(log_pmf))
    cdf = cdf[cdf < 1 - 1e-7].astype(np.float32)
    return np.searchsorted(cdf, rng.random(n, dtype=np.float32), side="right").astype(np.uint8)


def gain_sensitivity(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Relative pixel sensitivity [H, W] (mean 1): 3 % pixel scatter, column banding and a
    smooth ±5 % gradient, as seen in uncorrected counting-detector frames."""
    pixels = rng.normal(1.0, 0.03, shape)
    columns = rng.normal(0.0, 0.01, (1, shape[1]))
    smooth = 0.05 * smooth_field(rng, shape, 0.5 * max(shape))
    return np.clip(pixels + columns + smooth, 0.5, 1.5).astype(np.float32)


# ----------------------------------------------------------------------------- realistic preset
#: Counting-camera models of the realistic preset: (width f0 of the Gaussian part of the MTF,
#: in cycles per detector pixel; noise power at Nyquist relative to zero frequency). The MTF is
#: ``sinc(f) · exp(-(f / f0)²)``: 0.51 (K2-like, McMullan et al. 2014, as in classic), 0.54 and
#: 0.57 at Nyquist; newer counting cameras localise events better. The noise power spectrum of
#: a counting camera is not flat: an electron whose charge spreads over neighbouring pixels can
#: be counted in either or (rarely) both, which correlates neighbours; 0.70–0.85 at Nyquist is
#: the range we assume (a stated assumption, not a fit to a published curve).
CAMERAS: dict[str, tuple[float, float]] = {
    "k2": (1.06, 0.70),
    "k3": (1.25, 0.80),
    "falcon4": (1.45, 0.85),
}


def _interp_weights(kind: str, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Taps (offsets) and weights [len(s), taps] that interpolate a value ``s`` ∈ [0, 1) px
    past a sample: linear, or Keys' cubic convolution (a = -0.5)."""
    if kind == "bilinear":
        return np.array([0, 1]), np.stack([1 - s, s], 1)
    a = -0.5

    def keys(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        return np.where(
            x <= 1,
            (a + 2) * x**3 - (a + 3) * x**2 + 1,
            np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
        )

    taps = np.array([-1, 0, 1, 2])
    return taps, keys(taps[None, :] - s[:, None])


def interpolation_transfer(kind: str, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal amplitude and noise power transfer, per axis, of resampling frames at random
    sub-pixel shifts (motion correction), at frequency ``f`` in cycles per pixel.

    Each frame is shifted by a fraction s ~ U(0, 1) of a pixel with interpolation weights w(s):
    the noise power of the aligned sum is multiplied by ``E_s |Σ w_k e^{2πi f k}|²``, the signal
    (aligned, so its ideal phase ``e^{2πi f s}`` removed) by ``|E_s Σ w_k e^{2πi f (k - s)}|``.
    Fourier shifting (``"fourier"``) changes neither. Bilinear: noise 1/3 at Nyquist per axis.
    """
    if kind == "fourier":
        return np.ones_like(f), np.ones_like(f)
    s = (np.arange(64) + 0.5) / 64
    taps, w = _interp_weights(kind, s)
    phase = np.exp(2j * np.pi * f[None, None, :] * taps[None, :, None])  # [1, taps, nf]
    t = (w[:, :, None] * phase).sum(axis=1)  # [ns, nf]
    noise = (np.abs(t) ** 2).mean(axis=0)
    signal = np.abs((t * np.exp(-2j * np.pi * s[:, None] * f[None, :])).mean(axis=0))
    return signal, noise


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.fftfreq(shape[0]), np.fft.rfftfreq(shape[1])


def realistic_signal_transfer(
    shape: tuple[int, int], camera: str, interpolation: str, binning: float
) -> torch.Tensor:
    """Camera MTF × interpolation signal transfer on the rfft2 grid of ``shape`` (working
    pixels), for data recorded at ``binning`` × finer pixels and Fourier-cropped: working
    frequency f sits at f / binning on the detector, so coarser binning sees only the flat,
    low-frequency part of the detector's curves."""
    f0, _ = CAMERAS[camera]
    fy, fx = (f / binning for f in _grid(shape))
    sy, _ = interpolation_transfer(interpolation, np.abs(fy))
    sx, _ = interpolation_transfer(interpolation, np.abs(fx))
    mtf = np.sinc(fy)[:, None] * np.sinc(fx)[None, :]
    mtf = mtf * np.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / f0**2)
    return torch.from_numpy((mtf * sy[:, None] * sx[None, :]).astype(np.float32))


def realistic_noise_transfer(
    shape: tuple[int, int], camera: str, interpolation: str, binning: float
) -> np.ndarray:
    """Amplitude filter [H, W//2+1] (1 at zero frequency) that gives white counting noise the
    camera's noise power spectrum and the interpolation's low-pass (see the two above)."""
    _, nyquist_power = CAMERAS[camera]
    fy, fx = (f / binning for f in _grid(shape))
    _, ny = interpolation_transfer(interpolation, np.abs(fy))
    _, nx = interpolation_transfer(interpolation, np.abs(fx))
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    # Gaussian correlation of neighbours: power nyquist_power at f = 0.5 cycles/px.
    nps = np.exp(np.log(nyquist_power) * f2 / 0.25)
    return np.sqrt(nps * ny[:, None] * nx[None, :]).astype(np.float32)


def colour_noise(counts: np.ndarray, expected: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """``expected + F⁻¹[transfer · F(counts - expected)]``: the noise is filtered, its mean
    (``expected``) kept exactly, so the clean image is still the expectation of the result."""
    noise = np.fft.rfft2(counts - expected) * transfer
    return (expected + np.fft.irfft2(noise, s=counts.shape)).astype(np.float32)
