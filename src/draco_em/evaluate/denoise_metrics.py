"""Denoising metrics, one implementation for every method (raw, low-pass, Topaz, DRACO).

Denoisers output different units (normalised, counts, phase), so every prediction is first
matched to the clean image by least squares (``a·pred + b``) before PSNR/SSIM; FRC and the
paper's SNR (Eq. 11) are invariant to that affine change anyway.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from draco_em.imaging.fourier import frequency_grid


def match_scale_offset(pred: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Least-squares ``a·pred + b`` closest to ``clean`` (both [ny, nx])."""
    p = pred.astype(np.float64).ravel()
    c = clean.astype(np.float64).ravel()
    p_mean, c_mean = p.mean(), c.mean()
    var = np.mean((p - p_mean) ** 2)
    a = 0.0 if var == 0 else np.mean((p - p_mean) * (c - c_mean)) / var
    return (a * (pred.astype(np.float64) - p_mean) + c_mean).astype(np.float64)


def psnr(pred: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB after scale/offset matching; peak = max − min of the clean image (skimage)."""
    matched = match_scale_offset(pred, clean)
    clean = clean.astype(np.float64)
    mse = float(np.mean((matched - clean) ** 2))
    peak = float(np.ptp(clean))
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(peak**2 / mse)


def ssim(pred: np.ndarray, clean: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004; Gaussian window σ = 1.5 px, K1 = 0.01, K2 = 0.03)."""
    x = match_scale_offset(pred, clean)
    y = clean.astype(np.float64)
    peak = float(np.ptp(y)) or 1.0
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = ndimage.gaussian_filter(x, sigma), ndimage.gaussian_filter(y, sigma)
    sxx = ndimage.gaussian_filter(x * x, sigma) - mx * mx
    syy = ndimage.gaussian_filter(y * y, sigma) - my * my
    sxy = ndimage.gaussian_filter(x * y, sigma) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def fourier_ring_correlation(
    a: np.ndarray, b: np.ndarray, taper: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """FRC between two same-shape images.

    Args:
        taper: multiply both by a cosine edge window (1/8 of each side) first. Without it the
            wrap-around jump at the borders puts low-frequency (signal) content into every ring,
            which after a blur dominates the high rings and correlates between two halves.

    Returns:
        (frequency [n_shells] in cycles/pixel, frc [n_shells]), shells of width 1/min(ny, nx).
    """
    if a.shape != b.shape:
        raise ValueError(f"FRC needs equal shapes, got {a.shape} and {b.shape}")
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    ny, nx = a.shape
    if taper:
        window = np.outer(_edge_window(ny), _edge_window(nx))
        a, b = a * window, b * window
    fa, fb = np.fft.rfft2(a), np.fft.rfft2(b)
    ky, kx = frequency_grid((ny, nx))
    n = min(ny, nx)
    shell = np.rint(np.sqrt(ky**2 + kx**2) * n).astype(int).ravel()
    keep = shell <= n // 2
    shell = shell[keep]
    # The half plane of rfft2 stands for the full ring: each column but kx = 0 (and Nyquist
    # for even nx) also stands for its conjugate twin, so it counts twice.
    twin = np.full(fa.shape[1], 2.0)
    twin[0] = 1.0
    if nx % 2 == 0:
        twin[-1] = 1.0
    w = np.broadcast_to(twin, fa.shape).ravel()[keep]
    num = np.bincount(shell, w * (fa * np.conj(fb)).real.ravel()[keep], minlength=n // 2 + 1)
    da = np.bincount(shell, w * (np.abs(fa) ** 2).ravel()[keep], minlength=n // 2 + 1)
    db = np.bincount(shell, w * (np.abs(fb) ** 2).ravel()[keep], minlength=n // 2 + 1)
    frc = num / np.sqrt(np.maximum(da * db, 1e-30))
    return np.arange(n // 2 + 1) / n, frc


def _edge_window(n: int) -> np.ndarray:
    """1D Tukey window: cosine ramps over n/8 samples at each end, 1 in between."""
    ramp = max(1, n // 8)
    w = np.ones(n)
    t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    w[:ramp], w[n - ramp :] = t, t[::-1]
    return w


def frc_crossing(freq: np.ndarray, frc: np.ndarray, threshold: float) -> float | None:
    """Frequency (cycles/px) of the first shell after DC whose FRC is below ``threshold``;
    None when the FRC stays at or above it up to Nyquist (not reached)."""
    below = np.nonzero(frc[1:] < threshold)[0]
    return float(freq[1:][below[0]]) if below.size else None


def _criterion(
    prefix: str, freq: np.ndarray, frc: np.ndarray, threshold: float, pixel_size: float | None
) -> dict[str, float | None]:
    """``{prefix}_{threshold}_cycles_per_px`` (Nyquist, 0.5, when not reached) and, with a
    pixel size, ``{prefix}_{threshold}_resolution_A`` (None when not reached)."""
    f = frc_crossing(freq, frc, threshold)
    out: dict[str, float | None] = {f"{prefix}_{threshold}_cycles_per_px": f or float(freq[-1])}
    if pixel_size:
        out[f"{prefix}_{threshold}_resolution_A"] = float(pixel_size / f) if f else None
    return out


def frc_summary(pred: np.ndarray, clean: np.ndarray, pixel_size: float | None = None) -> dict:
    """Mean FRC against the clean image, and where it first drops below 0.5.

    0.5 is the criterion for a comparison with a noise-free reference: it matches the 0.143 of
    two independent halves compared with each other (Rosenthal & Henderson 2003:
    C_ref = sqrt(2 · 0.143 / 1.143) = 0.5), so the two report the same resolution.
    """
    freq, frc = fourier_ring_correlation(pred, clean)
    return {"frc_mean": float(frc[1:].mean()), **_criterion("frc", freq, frc, 0.5, pixel_size)}


def half_frc_summary(even: np.ndarray, odd: np.ndarray, pixel_size: float | None = None) -> dict:
    """Half-map FRC between the denoised even and odd halves (independent noise, same signal).

    Where it drops below 0.143 is the resolution of the full sum in cryo-EM's gold-standard
    convention for two independent halves (Rosenthal & Henderson 2003); below 0.5 is the older,
    more conservative half-map criterion, reported beside it. Both in cycles/px and, with
    ``pixel_size`` (Å/px of the images), in Å (None: not reached by Nyquist).

    Higher is better. A linear isotropic filter (a Gaussian) scales both halves by the same
    factor in each ring and leaves this FRC unchanged (edges are tapered so that holds), so it
    does not reward blur; but it does not punish it either, and it rises for any structure a
    denoiser puts into both halves alike (e.g. a fixed tile or patch grid): the halves share
    the model, so they are independent in their noise only. Read it beside
    :func:`half_cross_db`, which punishes both blur and leftover noise.
    """
    freq, frc = fourier_ring_correlation(even, odd, taper=True)
    out: dict[str, float | None] = {"half_frc_mean": float(frc[1:].mean())}
    for threshold in (0.143, 0.5):
        out |= _criterion("half_frc", freq, frc, threshold, pixel_size)
    return out


def half_cross_db(
    den_even: np.ndarray, den_odd: np.ndarray, raw_even: np.ndarray, raw_odd: np.ndarray
) -> float:
    """Noise2Noise score without truth: each denoised half against the OTHER raw half, in dB.

    The raw halves carry the same signal s with independent noise, so for a prediction f made
    from the odd half, E|a·f + b − even|² = E|a·f + b − s|² + σ²: the error against the clean
    image plus a constant. Ranking methods by it therefore ranks them by their error against
    the unknown clean image: blur (lost signal) and leftover noise both lower it. Returned as
    10·log10(var(target) / mse) after least-squares scale/offset matching, averaged over the
    two directions; higher is better (the constant σ² keeps the range small: compare methods,
    not absolute values).
    """
    out = []
    for pred, target in ((den_odd, raw_even), (den_even, raw_odd)):
        t = target.astype(np.float64)
        mse = float(np.mean((match_scale_offset(pred, t) - t) ** 2))
        out.append(10.0 * np.log10(max(t.var(), 1e-30) / max(mse, 1e-30)))
    return float(np.mean(out))


def disk_mask(shape: tuple[int, int], cx: float, cy: float, radius: float) -> np.ndarray:
    """Boolean [ny, nx] disk around pixel (cx, cy) (x = column, y = row)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def pair_regions(
    coords: np.ndarray,
    shape: tuple[int, int],
    radius: float,
    n_pairs: int = 20,
    seed: int = 0,
    exclusion: float | None = None,
    avoid: np.ndarray | None = None,
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Signal/background disk centres for the paper's SNR (Eq. 11, after Topaz-Denoise).

    The paper annotates 20 pairs by hand, "regions chosen close together". Here a signal disk sits
    on a true particle, and its background disk is the nearest candidate position (on rings of
    ``exclusion`` to ``exclusion`` + 4 radii around it) whose disk lies inside the image and whose
    centre is at least ``exclusion`` from every particle centre, so it holds no particle.

    Args:
        coords: [N, 2] particle centres (x, y) in pixels.
        shape: image shape (ny, nx).
        radius: disk radius in pixels (about the particle radius).
        n_pairs: how many pairs to return at most.
        seed: which particles are used when there are more than ``n_pairs``.
        exclusion: minimum distance in pixels from a background centre to any particle centre;
            set it to particle radius + disk radius (default: 2 × ``radius``).
        avoid: optional boolean [ny, nx] map of regions no disk may touch (e.g. contamination
            from a curation mask): a disk whose centre is within ``radius`` of it is skipped, so
            an ice blob's edge is never scored as "signal" or "background".

    Returns:
        List of ((sx, sy), (bx, by)).
    """
    ny, nx = shape
    exclusion = 2 * radius if exclusion is None else exclusion
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(coords))
    pairs = []
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    blocked = None
    if avoid is not None:
        # Distance of every pixel to the nearest avoided pixel; a disk centre needs > radius.
        blocked = ndimage.distance_transform_edt(~avoid.astype(bool)) <= radius
    for i in order:
        sx, sy = coords[i]
        if not (radius <= sx < nx - radius and radius <= sy < ny - radius):
            continue
        if blocked is not None and blocked[int(sy), int(sx)]:
            continue
        for dist in exclusion + np.arange(0.0, 4.01, 0.5) * radius:
            bx, by = sx + dist * np.cos(angles), sy + dist * np.sin(angles)
            inside = (bx >= radius) & (bx < nx - radius) & (by >= radius) & (by < ny - radius)
            d2 = (bx[:, None] - coords[None, :, 0]) ** 2 + (by[:, None] - coords[None, :, 1]) ** 2
            free = inside & (d2.min(axis=1) >= exclusion**2)
            if blocked is not None:
                iy = np.clip(by.astype(int), 0, ny - 1)
                ix = np.clip(bx.astype(int), 0, nx - 1)
                free &= ~blocked[iy, ix]
            if free.any():
                k = int(np.nonzero(free)[0][0])
                pairs.append(((float(sx), float(sy)), (float(bx[k]), float(by[k]))))
                break
        if len(pairs) >= n_pairs:
            break
    return pairs


def snr_db(image: np.ndarray, pairs, radius: float) -> float:
    """Paper Eq. 11: SNR = (10/N) Σ log10((μ_s − μ_b)² / v_b) over signal/background disk pairs."""
    if not pairs:
        return float("nan")
    img = image.astype(np.float64)
    terms = []
    for (sx, sy), (bx, by) in pairs:
        sig = img[disk_mask(img.shape, sx, sy, radius)]
        bg = img[disk_mask(img.shape, bx, by, radius)]
        var_b = bg.var()
        terms.append(np.log10(max((sig.mean() - bg.mean()) ** 2, 1e-30) / max(var_b, 1e-30)))
    return float(10.0 * np.mean(terms))
