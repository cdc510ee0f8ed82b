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
"""

from __future__ import annotations

import numpy as np

#: Tile side in pixels for the percentile estimates (official notebooks).
TILE_SIZE = 128
#: Factor by which the clip window extends the median 2–98 % range (official notebooks).
EXTEND = 1.5


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
    h, w = img.shape
    th, tw = min(tile_size, h), min(tile_size, w)
    ny, nx = h // th, w // tw
    # [ny, th, nx, tw] -> [ny*nx, th*tw]: one row per tile, a view until the reshape copies.
    tiles = img[: ny * th, : nx * tw].reshape(ny, th, nx, tw).swapaxes(1, 2).reshape(ny * nx, -1)
    p2, p98 = np.percentile(tiles, (2.0, 98.0), axis=1)
    p2m, p98m = float(np.median(p2)), float(np.median(p98))
    vmid = (p2m + p98m) / 2.0
    half = extend * abs(p98m - p2m) / 2.0
    return vmid - half, vmid + half


def _clipped_stats(clipped: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(clipped, dtype=np.float64))
    std = float(np.std(clipped, dtype=np.float64))
    return mean, (std if std > 0 else 1.0)


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
    low, high = clip_limits(image, tile_size, extend)
    return _clipped_stats(np.clip(np.asarray(image, dtype=np.float32), low, high))


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
    low, high = clip_limits(image, tile_size, extend)
    clipped = np.clip(np.asarray(image, dtype=np.float32), low, high)
    mean, std = _clipped_stats(clipped)
    clipped -= np.float32(mean)
    clipped /= np.float32(std)
    return clipped, (mean, std)
