"""Blend the denoised odd/even halves with their sum, fitted per micrograph on the halves.

Where a micrograph comes with half sums ``a`` (even frames) and ``b`` (odd frames), the noise of
``a`` and ``b`` is independent and their signal ``s`` is the same (Noise2Noise's premise, paper
Eq. 5). The output is, per ring of spatial frequency,

    ŝ = w · D̄ + v · (a + b),        D̄ = (D(a) + D(b)) / 2,

with ``D`` the denoiser: a mix of the denoiser's view and the raw sum, a linear Wiener filter
(``w = 0``) and the averaged denoised halves (``v = 0``) as special cases. ``w`` and ``v`` minimise
the squared error against the sum's signal ``2s``, and every term of that error is measured on
the halves without a clean image:

* ``E[D(a)·(2s)*] = 2 E[D(a)·b*]``: ``b``'s noise is independent of ``D(a)`` (and vice versa);
* ``E[(a+b)·(2s)*] = 4 E[a·b*]``: the cross-power of the halves is the signal's power;
* ``E|D̄|²``, ``E[D̄·(a+b)*]`` and ``E|a+b|²`` are measured directly.

Each ring's weights are the least-squares solution constrained to ``w, v ≥ 0`` (the unconstrained
one chases noise where the signal is weak). Rings are ``max(shape) / 256`` px wide (128 to
Nyquist): chosen on development sets only (docs/benchmarks.md, issue 20, session 10). The fit
needs halves the denoiser never trained on: a model adapted on the same halves (``--adapt``)
would see ``b``'s noise in ``D(a)`` and bias it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

from draco_em.imaging.fourier import frequency_grid

#: Rings from the centre to Nyquist (ring width ``max(shape) / (2 · RINGS_TO_NYQUIST)`` px).
RINGS_TO_NYQUIST = 128
#: Denoised power / sum's power under which a ring holds no model output (float32 round-off
#: lies near 1e-13; the model's faintest real output on development data near 1e-6).
EMPTY_RING = 1e-9


def _rings(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ring index of each rfft2 coefficient and each column's multiplicity in the full plane.

    Returns:
        ``(ring [ny, nx // 2 + 1] int32, weight [nx // 2 + 1] float32)``: the half-plane
        columns other than 0 and (for even nx) nx/2 stand for two coefficients of the full plane.
    """
    nx = shape[1]
    fy, fx = frequency_grid(shape)  # cycles per pixel
    width = max(shape) / (2 * RINGS_TO_NYQUIST)
    ring = np.floor(np.hypot(fy, fx) * max(shape) / width + 0.5).astype(np.int32)
    weight = np.full(fx.shape[1], 2.0, dtype=np.float32)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    return ring, weight


#: Rows of the spectrum handled at a time (bounds the temporaries of a 4096² micrograph).
_CHUNK_ROWS = 256


def _ring_sum(p: np.ndarray, q: np.ndarray, ring: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Σ Re(p·q*) over each ring of the full plane, from half-plane spectra ``[ny, nxh]``."""
    n = int(ring.max()) + 1
    total = np.zeros(n)
    for r0 in range(0, p.shape[0], _CHUNK_ROWS):
        a, b = p[r0 : r0 + _CHUNK_ROWS], q[r0 : r0 + _CHUNK_ROWS]
        prod = (a.real * b.real + a.imag * b.imag) * weight
        total += np.bincount(ring[r0 : r0 + _CHUNK_ROWS].ravel(), prod.ravel(), minlength=n)
    return total


def fft_workers() -> int:
    """FFT threads: as many as torch uses (OMP_NUM_THREADS, a SLURM allocation), not every
    core of the node (scipy's -1)."""
    return max(1, torch.get_num_threads())


def _spectrum(image: np.ndarray) -> np.ndarray:
    """rfft2 of the mean-free image, complex64 ``[ny, nx // 2 + 1]``."""
    x = np.asarray(image, dtype=np.float32)
    return scipy.fft.rfft2(x - np.float32(x.mean(dtype=np.float64)), workers=fft_workers())


def _constrained_fit(
    m11: np.ndarray, m12: np.ndarray, m22: np.ndarray, r1: np.ndarray, r2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per ring, ``argmin_{w, v ≥ 0} w²m11 + 2wv·m12 + v²m22 − 2w·r1 − 2v·r2``.

    The minimum of a convex quadratic over the quadrant lies at the interior stationary point
    (when both weights come out ≥ 0), on one axis, or at 0: the lowest of these is taken.
    """
    tiny = 1e-30
    det = m11 * m22 - m12**2
    with np.errstate(divide="ignore", invalid="ignore"):
        w_in = (r1 * m22 - r2 * m12) / det
        v_in = (m11 * r2 - m12 * r1) / det
    inside = (det > tiny) & (w_in >= 0) & (v_in >= 0)
    candidates = [
        (np.where(inside, w_in, 0.0), np.where(inside, v_in, 0.0), inside),
        (np.maximum(r1, 0) / np.maximum(m11, tiny), np.zeros_like(r1), np.ones_like(inside)),
        (np.zeros_like(r1), np.maximum(r2, 0) / np.maximum(m22, tiny), np.ones_like(inside)),
    ]
    best_w, best_v, best_risk = np.zeros_like(r1), np.zeros_like(r1), np.zeros_like(r1)
    for w, v, valid in candidates:
        risk = w * w * m11 + 2 * w * v * m12 + v * v * m22 - 2 * w * r1 - 2 * v * r2
        better = valid & (risk < best_risk)
        best_w = np.where(better, w, best_w)
        best_v = np.where(better, v, best_v)
        best_risk = np.where(better, risk, best_risk)
    return best_w, best_v


def ring_weights(
    m11: np.ndarray, m12: np.ndarray, m22: np.ndarray, r1: np.ndarray, r2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per ring, the weights ``w`` (denoised) and ``v`` (raw sum) of :func:`_constrained_fit`,
    with the sum alone where the denoised image holds no power."""
    w, v = _constrained_fit(m11, m12, m22, r1, r2)
    # Beyond the model's Nyquist (data finer than its pixel) the denoised halves hold only
    # float32 round-off, ~1e-13 of the sum's power: a weight fitted on it is round-off over
    # round-off (measured: w up to 4.5e6, and 1e-6 changes of the input moved the output by
    # 5 % rms). Those rings take the sum alone.
    empty = m11 <= EMPTY_RING * m22
    w = np.where(empty, 0.0, w)
    v = np.where(empty, np.maximum(r2, 0) / np.maximum(m22, 1e-30), v)
    return w, v


def blend_halves(
    den_even: np.ndarray, den_odd: np.ndarray | None, even: np.ndarray, odd: np.ndarray
) -> tuple[np.ndarray, dict]:
    """The halves-calibrated blend of a micrograph (module docstring).

    Args:
        den_even, den_odd: ``[ny, nx]`` denoiser outputs of the halves, same shape as them.
            ``den_odd=None``: one model pass (``--blend-passes 1``): ``D̄ = D(even)``, fitted
            with ``E[D(a)·(2s)*] = 2 E[D(a)·b*]`` alone (half the model time; D(a)'s noise is
            not averaged with D(b)'s: 0.08–0.15 dB less on development sets).
        even, odd: ``[ny, nx]`` the raw half sums (even and odd frames).

    Returns:
        ``(image, info)``: the ``[ny, nx]`` float32 estimate of the sum's signal (in the units
        of ``even + odd``), and ``info`` with the per-ring weights ``w`` (denoised) and ``v``
        (raw sum).
    """
    shape = even.shape
    for name, arr in (("den_even", den_even), ("den_odd", den_odd), ("odd", odd)):
        if arr is not None and arr.shape != shape:
            raise ValueError(f"blend_halves: {name} has shape {arr.shape}, even has {shape}")
    ring, weight = _rings(shape)
    # Spectra one at a time, combined in place: four complex64 half-plane arrays at most
    # (~270 MB for a 4096² micrograph) and row-chunked temporaries.
    a, b = _spectrum(even), _spectrum(odd)
    r2 = 4 * _ring_sum(a, b, ring, weight)  # E[(a+b)·(2s)*] = 4 E[a b*]
    dbar = _spectrum(den_even)
    r1 = _ring_sum(dbar, b, ring, weight)  # E[D̄·(2s)*] = (2E[D(a)b*] + 2E[D(b)a*]) / 2
    if den_odd is None:  # one pass: D̄ = D(a), E[D(a)·(2s)*] = 2E[D(a)b*]
        r1 *= 2
    else:
        d_odd = _spectrum(den_odd)
        r1 += _ring_sum(d_odd, a, ring, weight)
        dbar += d_odd
        dbar *= 0.5
        del d_odd
    full = a
    full += b
    del a, b
    m11 = _ring_sum(dbar, dbar, ring, weight)
    m12 = _ring_sum(dbar, full, ring, weight)
    m22 = _ring_sum(full, full, ring, weight)
    w, v = ring_weights(m11, m12, m22, r1, r2)
    w32, v32 = w.astype(np.float32), v.astype(np.float32)
    for r0 in range(0, shape[0], _CHUNK_ROWS):
        rows = ring[r0 : r0 + _CHUNK_ROWS]
        dbar[r0 : r0 + _CHUNK_ROWS] *= w32[rows]
        dbar[r0 : r0 + _CHUNK_ROWS] += v32[rows] * full[r0 : r0 + _CHUNK_ROWS]
    del full
    mean = float(np.mean(even, dtype=np.float64) + np.mean(odd, dtype=np.float64))
    image = scipy.fft.irfft2(dbar, s=shape, workers=fft_workers(), overwrite_x=True)
    image = image.astype(np.float32, copy=False)
    image += np.float32(mean)
    return image, {"w": w.tolist(), "v": v.tolist()}
