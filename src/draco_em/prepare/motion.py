"""Beam-induced motion: global frame alignment, local (patch) refinement, motion statistics.

Conventions (the same as ``draco simulate``'s ``motion/<name>.csv``):

* A shift ``(shift_x, shift_y)`` in pixels is where the specimen *appears* in frame k relative
  to frame 0: ``frame_k(x) = frame_0(x - shift_k)``. Aligning frame k means moving it by
  ``-shift_k``; frame 0 has shift (0, 0) and the aligned sums are registered on frame 0.
* x is the column and y the row of the array as stored (``data[y, x]``).

Global alignment is our own (see :func:`estimate_global_shifts` for why); local motion uses
teamtomo's ``torch-motion-correction`` (patch cross-correlation on the globally aligned frames,
a smooth cubic-spline deformation field, bicubic resampling).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from draco_em.imaging.fourier import frequency_grid_torch
from draco_em.io.motion import MotionStats, motion_stats  # noqa: F401  (re-exported)
from draco_em.simulate.detector import critical_exposure  # the one N_e(q) implementation

#: Largest box side (pixels) on which the global alignment cross-correlations are computed:
#: 0.15 px RMS on 2048² simulated movies (1024: 0.13 px at twice the time).
ALIGN_MAX_SIZE = 512


def _frequency_grid(
    shape: tuple[int, int], pixel_size: float, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """(ky, kx, q²) on the rfft2 grid of ``shape``; k in cycles/pixel, q² in 1/Å²."""
    ky, kx = frequency_grid_torch(shape, dtype=torch.float64, device=device)
    q2 = (ky**2 + kx**2) / pixel_size**2
    return ky, kx, q2


def phase_ramp(
    ky: torch.Tensor, kx: torch.Tensor, shifts: torch.Tensor, sign: float = 1.0
) -> torch.Tensor:
    """``exp(sign * 2πi (kx sx + ky sy))`` for each shift: [t, *k.shape] complex64.

    Multiplying a spectrum by the ramp with ``sign = +1`` moves the image by ``-shift``
    (undoes a displacement ``shift``, Fourier shift theorem).

    Args:
        ky, kx: frequencies in cycles/pixel, broadcastable to the spectrum's [H, W'].
        shifts: [t, 2] (x, y) in pixels, float64.
    """

    def ramp(k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # [t, *k.shape], one axis
        phase = sign * 2 * math.pi * k[None] * s[:, None, None]
        return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)

    # Separable: the 2D ramp is the outer product of two 1D ones (H + W phases, not H × W).
    return ramp(ky, shifts[:, 1]) * ramp(kx, shifts[:, 0])


def _edge_taper(
    shape: tuple[int, int], device: torch.device, fraction: float = 0.1
) -> torch.Tensor:
    """Separable Tukey window [H, W]: 1 inside, a raised cosine over ``fraction`` of each edge."""

    def tukey(n: int) -> torch.Tensor:
        width = max(1, int(fraction * n))
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(width, device=device) + 0.5) / width)
        out = torch.ones(n, device=device)
        out[:width] = ramp
        out[n - width :] = ramp.flip(0)
        return out

    return tukey(shape[0])[:, None] * tukey(shape[1])[None, :]


def parabolic_peaks(xcf: torch.Tensor) -> torch.Tensor:
    """Sub-pixel position of the maximum of each real cross-correlation [t, H, W].

    A 1D parabola through the peak and its two neighbours on each axis; the origin is at
    [0, 0] and positions past the middle wrap to negative values. The parabola's bias (up to
    ~0.1 px between integer positions) vanishes at convergence of
    :func:`estimate_global_shifts`: each pass re-measures the residual after the current shift
    is applied, so the measured residual tends to 0, where the parabola is exact by symmetry.

    Returns:
        [t, 2] (x, y) float64.
    """
    t, h, w = xcf.shape
    flat = torch.argmax(xcf.reshape(t, -1), dim=1)
    py, px = flat // w, flat % w
    rows = torch.arange(t, device=xcf.device)

    def vertex(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        denom = (minus - 2 * centre + plus).double()
        safe = torch.where(denom < 0, denom, torch.full_like(denom, -1.0))
        return torch.where(denom < 0, 0.5 * (minus - plus).double() / safe, 0.0)

    centre = xcf[rows, py, px]
    dy = vertex(xcf[rows, (py - 1) % h, px], centre, xcf[rows, (py + 1) % h, px])
    dx = vertex(xcf[rows, py, (px - 1) % w], centre, xcf[rows, py, (px + 1) % w])
    y = torch.where(py <= h // 2, py, py - h).double() + dy
    x = torch.where(px <= w // 2, px, px - w).double() + dx
    return torch.stack([x, y], dim=1)


def _low_pass_spectrum(frame: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """rfft2 of ``frame`` [H, W] keeping the frequencies of a [H', W'] grid, mean removed.

    The same as the spectrum of ``imaging.fourier.fourier_resize(frame, shape)`` (scaled to
    the smaller grid) up to its Nyquist bookkeeping, which does not matter for a correlation,
    at half the cost: one real FFT of the full frame, no inverse.
    """
    h, w = frame.shape
    spec = torch.fft.rfft2(frame)
    top = shape[0] // 2 + 1
    rows = torch.cat([spec[:top], spec[h - (shape[0] - top) :]]) if shape[0] < h else spec
    out = rows[:, : shape[1] // 2 + 1] * (shape[0] * shape[1] / (h * w))
    out[0, 0] = 0
    return out


def alignment_shape(shape: tuple[int, int], pixel_size: float, bfactor: float, max_size: int):
    """Box (H', W') for the correlations: as coarse as the B-factor low-pass allows, <= max_size.

    The weight ``exp(-B q² / 2)`` of the correlation falls below 1e-3 at
    ``q = sqrt(2 ln 1000 / B)``; sampling finer than that frequency's Nyquist adds nothing.
    """
    h, w = shape
    q_max = math.sqrt(2 * math.log(1000) / max(bfactor, 1e-6))
    scale = max(1.0, max(h, w) / max_size, 1 / (2 * q_max * pixel_size))
    return (max(16, round(h / scale)), max(16, round(w / scale)))


def estimate_global_shifts(
    frames: torch.Tensor,
    pixel_size: float,
    *,
    bfactor: float = 150.0,
    max_iterations: int = 12,
    tolerance: float = 0.02,
    max_size: int = ALIGN_MAX_SIZE,
) -> np.ndarray:
    """Whole-frame drift: iterative alignment of each frame to the sum of the others.

    Why not ``torch_motion_correction.estimate_global_motion``: it correlates each frame with
    one single (noisy) frame and returns whole pixels; its one-patch cross-correlation mode is
    sub-pixel but runs a fixed number of passes and smooths the trajectory in time, which
    flattens the fast first frames. On 256² × 10-frame test movies at 1 e⁻/px/frame that mode
    was off by 0.63–0.85 px RMS; this loop (as in MotionCor2 and Unblur) reaches 0.1–0.2 px.

    Each pass: frames moved by their current shift (Fourier shift), then tapered to 0 at the
    edges *in aligned coordinates*; the reference for frame i is the sum of all the *other*
    frames (its own noise stays out of the peak); the residual shift is the peak of the
    B-factor-weighted cross-correlation, refined by a parabola. The taper matters: a frame's
    edges are at the same detector place in every frame, and the periodic FFT's wrap-around
    step there is a fixed pattern that pulls every shift towards 0. Tapering after the shift
    puts the window at the same place in every aligned frame, so what is left of its pull is
    towards a residual of 0, the fixed point. Stops when no shift moves by ``tolerance`` px.

    Args:
        frames: [t, H, W] float32 gain-corrected frames.
        pixel_size: Å per pixel of ``frames``.
        bfactor: B-factor in Å² of the low-pass ``exp(-B q² / 4)`` applied to each side of the
            correlation.
        max_iterations: upper bound on the refinement passes.
        tolerance: convergence threshold in pixels of ``frames``.
        max_size: the correlation runs on a Fourier-cropped copy whose longest side is at most
            this (see :func:`alignment_shape`); shifts are scaled back to pixels of ``frames``.

    Returns:
        [t, 2] float64 (x, y) shifts in pixels of ``frames``, relative to frame 0.
    """
    t, h, w = frames.shape
    shape = alignment_shape((h, w), pixel_size, bfactor, max_size)
    bin_factor = h / shape[0]
    ky, kx, q2 = _frequency_grid(shape, pixel_size * bin_factor, frames.device)
    weight = torch.exp(-bfactor * q2 / 2).to(torch.float32)  # both sides' exp(-B q²/4)
    weight[0, 0] = 0
    taper = _edge_taper(shape, frames.device)
    spectra = torch.stack([_low_pass_spectrum(frames[i], shape) for i in range(t)])
    shifts = torch.zeros(t, 2, dtype=torch.float64, device=frames.device)
    for _ in range(max_iterations):
        aligned = torch.fft.irfft2(spectra * phase_ramp(ky, kx, shifts), s=shape) * taper
        aligned = torch.fft.rfft2(aligned)
        others = aligned.sum(0, keepdim=True) - aligned
        xcf = torch.fft.irfft2(aligned * torch.conj(others) * weight, s=shape)
        # Frame i's peak is its residual minus the mean of the *others'* residuals,
        # (t r_i - Σr) / (t - 1): scaled by (t - 1) / t it is r_i - mean(r), the step that
        # aligns. Unscaled, two frames each overshoot by 2× and swap places forever.
        step = parabolic_peaks(xcf) * ((t - 1) / t)
        del aligned, others, xcf
        shifts += step
        shifts -= shifts.mean(0)  # keep the reference centred; only relative shifts matter
        if float(step.abs().max()) * bin_factor < tolerance:
            break
    shifts = (shifts - shifts[0]) * bin_factor
    return shifts.cpu().numpy()


def apply_global_shifts(frames: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Undo each frame's drift by a Fourier (sub-pixel, periodic) shift, in place.

    A Fourier shift is unitary: it moves the image without blurring it and keeps the Poisson
    noise white and independent between frames, which the odd/even sums rely on. Content that
    leaves one edge re-enters at the other (at most the drift, a few pixels wide).

    Args:
        frames: [t, H, W] float32, overwritten with the aligned frames.
        shifts: [t, 2] (x, y) displacements in pixels of ``frames``.

    Returns:
        ``frames``.
    """
    _, h, w = frames.shape
    ky, kx = frequency_grid_torch((h, w), dtype=torch.float64, device=frames.device)
    all_shifts = torch.as_tensor(np.asarray(shifts), dtype=torch.float64, device=frames.device)
    for i in range(frames.shape[0]):  # one frame's spectrum at a time: bounded memory
        ramp = phase_ramp(ky, kx, all_shifts[i : i + 1])[0]
        frames[i] = torch.fft.irfft2(torch.fft.rfft2(frames[i]) * ramp, s=(h, w))
    return frames


def patch_grid_shape(text: str) -> tuple[int, int]:
    """Parse ``"5x5"`` (columns x rows) into (n_x, n_y); ``"1x1"`` or ``"0"`` means none."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) == 1 and parts[0].strip() == "0":
        return (1, 1)
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"patches must look like 5x5 (columns x rows), got {text!r}")
    nx, ny = (int(p) for p in parts)
    if nx < 1 or ny < 1:
        raise ValueError(f"patch counts must be >= 1, got {text!r}")
    return nx, ny


def estimate_local_motion(
    aligned: torch.Tensor, patches: tuple[int, int], pixel_size: float, bfactor: float = 500.0
) -> torch.Tensor:
    """Residual local motion after global alignment, by patch cross-correlation.

    Uses ``torch_motion_correction.estimate_motion_cross_correlation_patches``: each patch of
    each frame against the same patch of the mean of the other frames, sub-pixel peaks,
    outlier patches replaced, trajectories smoothed in time (Savitzky–Golay). Patches overlap by
    half, so ``n`` patches across a side of ``W`` pixels are ``2W / (n + 1)`` wide.

    Args:
        aligned: [t, H, W] globally aligned frames.
        patches: (n_x, n_y) patches across the image.
        pixel_size: Å per pixel of ``aligned``.
        bfactor: low-pass B-factor in Å² for the patch correlations (noisier than whole frames).

    Returns:
        Deformation-field data [2 (y, x), t, n_y, n_x] in pixels (content displacement).
    """
    import warnings

    from torch_motion_correction import (
        FourierFilterConfig,
        PatchSamplingConfig,
        estimate_motion_cross_correlation_patches,
    )

    _, h, w = aligned.shape
    nx, ny = patches
    shape = (min(h, int(2 * h / (ny + 1))), min(w, int(2 * w / (nx + 1))))
    # frequency_range is (low, high) cut-off in Å: keep everything up to 2.5 pixels.
    band = FourierFilterConfig(b_factor=bfactor, frequency_range=(1e4, 2.5 * pixel_size))
    with warnings.catch_warnings():  # torch.std over one patch warns; harmless
        warnings.simplefilter("ignore", UserWarning)
        field, _ = estimate_motion_cross_correlation_patches(
            aligned,
            pixel_spacing=pixel_size,
            patch_sampling=PatchSamplingConfig(patch_shape=shape, overlap=0.5),
            reference_strategy="mean_except_current",
            fourier_filter=band,
        )
    return field.data.detach() / pixel_size


def apply_local_motion(aligned: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Resample each frame along a smooth deformation field (bicubic, teamtomo's code).

    Args:
        aligned: [t, H, W] globally aligned frames.
        field: [2 (y, x), t, n_y, n_x] residual displacements in pixels.

    Returns:
        [t, H, W] locally corrected frames (a new tensor).
    """
    from torch_motion_correction import DeformationField, correct_motion

    return correct_motion(aligned, DeformationField(field.to(torch.float32)), pixel_spacing=1.0)


def dose_weights(
    n_frames: int,
    shape: tuple[int, int],
    pixel_size: float,
    dose_per_frame: float,
    voltage: float = 300.0,
) -> torch.Tensor:
    """Per-frame, per-frequency weights on the rfft2 grid [t, H, W//2 + 1].

    ``w_i(q) = exp(-N_i / (2 N_e(q)))`` with ``N_i`` the exposure (e⁻/Å²) at the middle of
    frame i and ``N_e`` the critical exposure of Grant & Grigorieff (2015, Eq. 3 and 9),
    measured at 300 kV and 0.8 times that at 200 kV (their scaling, as MotionCor2's; other
    voltages use the 300 kV curve),
    normalised so that the *squared* weights of each frequency sum to the number of frames
    (``Σ_i w_i² = t``). The shot noise of the weighted sum then has the same flat power
    spectrum as the plain sum's (a denoiser sees the same noise model), and where the damage
    is negligible (low frequencies, the mean) every weight is 1, i.e. the plain sum.
    """
    ky, kx = frequency_grid_torch(shape, dtype=torch.float64)
    q = torch.sqrt(ky**2 + kx**2) / pixel_size
    exposure = (torch.arange(n_frames, dtype=torch.float64) + 0.5) * dose_per_frame
    scale = 0.8 if abs(voltage - 200.0) < 10.0 else 1.0  # faster damage at 200 kV
    weights = torch.exp(-exposure[:, None, None] / (2 * scale * critical_exposure(q)[None]))
    return (weights * torch.sqrt(n_frames / (weights**2).sum(0, keepdim=True))).to(torch.float32)


def parity_sums(
    frames: torch.Tensor,
    shifts: np.ndarray | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Odd and even sums (and the dose-weighted full sum) of a movie, aligned on the way.

    Odd = frames 0, 2, 4, … and even = frames 1, 3, … (MotionCor2's ``_ODD``/``_EVN``). Every
    frame gets the same treatment (one trajectory), so the two sums differ only by their
    independent shot noise. Shifting is a phase ramp in Fourier space (see
    :func:`apply_global_shifts`); the sums are accumulated as spectra, so a movie costs one
    forward FFT per frame and three inverse FFTs in all.

    Args:
        frames: [t, H, W] float32 frames.
        shifts: [t, 2] (x, y) displacements in pixels to undo, or None (already aligned).
        weights: [t, H, W // 2 + 1] dose weights (:func:`dose_weights`), or None.

    Returns:
        (odd [H, W], even [H, W], weighted full sum [H, W] or None), float32 numpy.
    """
    t, h, w = frames.shape
    if shifts is None and weights is None:  # nothing to do in Fourier space
        return frames[0::2].sum(0).cpu().numpy(), frames[1::2].sum(0).cpu().numpy(), None
    dev = frames.device
    ky, kx = frequency_grid_torch((h, w), dtype=torch.float64, device=dev)
    sums = torch.zeros((3 if weights is not None else 2, h, w // 2 + 1), dtype=torch.complex64,
                       device=dev)  # fmt: skip
    for i in range(t):
        spec = torch.fft.rfft2(frames[i])
        if shifts is not None:
            shift = torch.as_tensor(np.asarray(shifts[i : i + 1]), dtype=torch.float64, device=dev)
            spec *= phase_ramp(ky, kx, shift)[0]
        sums[i % 2] += spec
        if weights is not None:
            sums[2] += spec * weights[i].to(dev)
    images = torch.fft.irfft2(sums, s=(h, w)).cpu().numpy()
    return images[0], images[1], (images[2] if weights is not None else None)
