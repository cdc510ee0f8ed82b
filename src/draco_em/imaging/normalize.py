"""DRACO's robust intensity normalisation (contrast clip, then standardise).

This is ``contrast_normalization`` + ``preprocess`` of the official notebooks
(``draco_paper.md`` §1.4):

1. cut the micrograph into 128x128 tiles and take each tile's 2nd and 98th percentile;
2. take the median over tiles of each, ``p2m`` and ``p98m`` (the median makes the limits
   ignore the few tiles covered by ice, ethane or the carbon edge);
3. clip to ``vmid ± extend * vrange / 2`` with ``vmid = (p2m + p98m) / 2``,
   ``vrange = |p98m - p2m|`` and ``extend = 1.5`` (hot pixels and contamination stop
   dominating the statistics);
4. standardise with the mean and standard deviation of the clipped image (std 0 → 1).

Only whole tiles are used: the ``H % 128`` bottom rows and ``W % 128`` right columns are left
out of the percentiles (but are clipped and standardised like every other pixel). An image
smaller than one tile is treated as one tile.

The tiles are one reshaped view and the percentiles one vectorised call, so a 4096² micrograph
takes well under a second.

Micrographs as users have them (8-bit PNG/JPEG renderings, :mod:`draco_em.io.images`) add two
things the statistics must not see (:func:`statistics_region`):

* **padded borders**: renderings padded to a square with a constant value or by repeating the
  edge row/column (the EMPIAR-10017 JPEGs carry 50-80 px of such stripes on every side). A
  padded row repeats its neighbour, so the mean absolute difference between consecutive rows
  there is near zero while in any real micrograph (noise, even denoised) it is of the order of
  the image's median; border rows/columns up to the innermost one whose difference is below
  ``PAD_RATIO`` of the median (when such rows are most of that strip) are left out, at most a
  quarter of the image per side.
* **saturated values**: an 8-bit rendering clips at 0 and 255; a spike of pixels at the image's
  minimum or maximum (≥ ``SATURATION_MIN_FRACTION`` of the pixels and ``SATURATION_SPIKE``
  times the count of the next grey level, but under ``SATURATION_MAX_FRACTION``, beyond which it
  is the data itself, e.g. zero counts) is left out of the percentiles, mean and std.

Neither triggers on noisy MRC micrographs (consecutive rows differ by noise; a float image's
extreme value is held by one pixel), whose statistics are then bit-identical to the plain rule.
Excluded pixels are still clipped and standardised like every other pixel.
"""

from __future__ import annotations

import numpy as np

#: Tile side in pixels for the percentile estimates (official notebooks).
TILE_SIZE = 128
#: Factor by which the clip window extends the median 2–98 % range (official notebooks).
EXTEND = 1.5


#: A border row/column is padding when its mean |difference| to the next is below this
#: fraction of the image's median row (column) difference.
PAD_RATIO = 0.25
#: At most this fraction of each side is treated as padding.
PAD_MAX_FRACTION = 0.25
#: A value at the image's min or max is saturation when it holds at least this share of pixels,
SATURATION_MIN_FRACTION = 1e-3
#: at least this many times the pixels of the next grey level,
SATURATION_SPIKE = 4.0
#: and less than this share (more is the data itself, e.g. a frame of mostly zero counts).
SATURATION_MAX_FRACTION = 0.25


def padded_border(image: np.ndarray) -> tuple[int, int, int, int]:
    """Number of padded (constant or repeated) rows/columns at each side of an image.

    Args:
        image: ``[H, W]`` array.

    Returns:
        ``(top, bottom, left, right)`` counts; all 0 for an ordinary micrograph.
    """
    img = np.asarray(image)
    h, w = img.shape
    return (*_padded_runs(img, h, w), *_padded_runs(img.T, w, h))


def _padded_runs(img: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """(leading, trailing) rows of ``img`` [h, w] that repeat their inner neighbour."""
    band = int(h * PAD_MAX_FRACTION)
    if band < 2 or h < 8:
        return 0, 0
    step = max(1, w // 1024)  # every k-th column estimates a row's mean difference well

    def row_diffs(rows: np.ndarray) -> np.ndarray:
        sub = rows[:, ::step].astype(np.float32)
        return np.abs(np.diff(sub, axis=0)).mean(axis=1)

    mid = h // 2
    ref = float(np.median(row_diffs(img[max(0, mid - 32) : mid + 33])))
    if not ref > 0:
        return 0, 0  # flat image: nothing to compare with
    counts = []
    for rows in (img[: band + 1], img[h - band - 1 :][::-1]):
        small = row_diffs(rows) < PAD_RATIO * ref
        # Up to the innermost near-repeat, provided near-repeats are most of the way there:
        # a rendering may blur the outermost rows (the EMPIAR-10017 JPEGs' last ~24 rows are
        # a smooth ramp left by a periodic filter), and a single similar row is chance.
        n = int(np.flatnonzero(small)[-1]) + 1 if small.any() else 0
        # n differences span n + 1 rows: the last one is the edge a replicating pad repeats,
        # or the last row of a constant pad; either way it goes too.
        counts.append(min(n + 1, band) if n >= 4 and small[:n].mean() >= 0.5 else 0)
    return counts[0], counts[1]


def saturated_values(image: np.ndarray) -> list[float]:
    """The image's min and/or max when they are clipping spikes (see the module docstring)."""
    img = np.asarray(image)
    n = img.size
    out = []
    for extreme, is_min in ((img.min(), True), (img.max(), False)):
        count = int(np.count_nonzero(img == extreme))
        if count < SATURATION_MIN_FRACTION * n or count >= SATURATION_MAX_FRACTION * n:
            continue
        rest = img[img != extreme]
        nxt = rest.min() if is_min else rest.max()  # the next grey level inward
        if count >= SATURATION_SPIKE * int(np.count_nonzero(img == nxt)):
            out.append(float(extreme))
    return out


def statistics_region(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The part of an image its statistics are taken from.

    Args:
        image: ``[H, W]`` array.

    Returns:
        ``(crop, valid)``: ``crop`` is the image without its padded border (a view);
        ``valid`` is a boolean mask over ``crop`` of the non-saturated pixels, or None when
        nothing is saturated.
    """
    img = np.asarray(image)
    top, bottom, left, right = padded_border(img)
    crop = img[top : img.shape[0] - bottom, left : img.shape[1] - right]
    sat = saturated_values(crop)
    if not sat:
        return crop, None
    return crop, ~np.isin(crop, np.asarray(sat, dtype=crop.dtype))


def clip_limits(
    image: np.ndarray, tile_size: int = TILE_SIZE, extend: float = EXTEND
) -> tuple[float, float]:
    """The DRACO contrast-clip window ``(low, high)`` in the image's intensity units.

    Args:
        image: ``[H, W]`` array.
        tile_size: tile side in pixels.
        extend: widening factor of the median 2nd–98th percentile range.

    Returns:
        ``(vmid - extend * vrange / 2, vmid + extend * vrange / 2)``.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    crop, valid = statistics_region(img)
    return _limits(crop, valid, tile_size, extend)


def _limits(
    img: np.ndarray, valid: np.ndarray | None, tile_size: int, extend: float
) -> tuple[float, float]:
    """:func:`clip_limits` of ``img`` [H, W] counting only ``valid`` pixels (None: all)."""
    h, w = img.shape
    th, tw = min(tile_size, h), min(tile_size, w)
    ny, nx = h // th, w // tw
    if valid is not None:  # saturated pixels become NaN and drop out of each tile's percentiles
        img = np.where(valid, img.astype(np.float32), np.float32(np.nan))
    # [ny, th, nx, tw] -> [ny*nx, th*tw]: one row per tile, a view until the reshape copies.
    blocks = img[: ny * th, : nx * tw].reshape(ny, th, nx, tw).swapaxes(1, 2)
    tiles = blocks.reshape(ny * nx, th * tw)
    if valid is None:
        p2, p98 = np.percentile(tiles, (2.0, 98.0), axis=1)
        p2m, p98m = float(np.median(p2)), float(np.median(p98))
    else:
        tiles = tiles[~np.isnan(tiles).all(axis=1)]  # a tile that is all saturation says nothing
        p2, p98 = np.nanpercentile(tiles, (2.0, 98.0), axis=1)
        p2m, p98m = float(np.median(p2)), float(np.median(p98))
    vmid = (p2m + p98m) / 2.0
    half = extend * abs(p98m - p2m) / 2.0
    return vmid - half, vmid + half


def _clipped_stats(clipped: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(clipped, dtype=np.float64))
    std = float(np.std(clipped, dtype=np.float64))
    return mean, (std if std > 0 else 1.0)


def _stats(image: np.ndarray, tile_size: int, extend: float) -> tuple[float, float, float, float]:
    """(low, high, mean, std): the clip window and the clipped statistics of the valid region."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {img.shape}")
    crop, valid = statistics_region(img)
    low, high = _limits(crop, valid, tile_size, extend)
    clipped = np.clip(np.asarray(crop, dtype=np.float32), low, high)
    mean, std = _clipped_stats(clipped if valid is None else clipped[valid])
    return low, high, mean, std


def clip_stats(
    image: np.ndarray, tile_size: int = TILE_SIZE, extend: float = EXTEND
) -> tuple[float, float]:
    """Mean and standard deviation of the contrast-clipped image (std 0 → 1).

    Use these to normalise the odd and even sums with the statistics of the full micrograph:
    ``(odd - mean) / std``.

    Args:
        image: ``[H, W]`` array.
        tile_size: tile side in pixels.
        extend: widening factor of the clip window.

    Returns:
        ``(mean, std)`` as Python floats, in the image's intensity units.
    """
    _, _, mean, std = _stats(image, tile_size, extend)
    return mean, std


def robust_normalize(
    image: np.ndarray, tile_size: int = TILE_SIZE, extend: float = EXTEND
) -> tuple[np.ndarray, tuple[float, float]]:
    """Contrast-clip and standardise an image as DRACO's preprocessing does.

    Args:
        image: ``[H, W]`` array.
        tile_size: tile side in pixels.
        extend: widening factor of the clip window.

    Returns:
        ``(normalized [H, W] float32, (mean, std))``: ``normalized = (clip(image) - mean) /
        std`` where mean and std are those of the clipped image.
    """
    low, high, mean, std = _stats(image, tile_size, extend)
    clipped = np.clip(np.asarray(image, dtype=np.float32), low, high)
    clipped -= np.float32(mean)
    clipped /= np.float32(std)
    return clipped, (mean, std)
