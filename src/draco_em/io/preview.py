"""8-bit PNG previews of micrographs (contrast from percentiles, downsampled for viewing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from draco_em.io.atomic import atomic_path


def to_uint8(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``–``high`` percentile range of ``image`` onto 0–255."""
    lo, hi = np.percentile(image, [low, high])
    scaled = (image.astype(np.float32) - lo) / max(float(hi - lo), 1e-12)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def downsample_for_view(image: np.ndarray, max_size: int = 1024) -> np.ndarray:
    """Block-average ``image`` by an integer factor so its longer side is ≤ ``max_size``."""
    factor = int(np.ceil(max(image.shape) / max_size))
    if factor <= 1:
        return image
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


GAP_PX = 8  # white band between the panels of a side-by-side preview


def save_preview(
    path: str | Path, image: np.ndarray, max_size: int = 1024, before: np.ndarray | None = None
) -> Path:
    """Write an 8-bit greyscale (PNG mode ``L``) preview of a 2D image atomically.

    With ``before`` (the raw input of ``image``, the denoised one), the two sit side by side,
    raw on the left, each with its own contrast; a binned output is resampled to the raw
    panel's size.
    """
    from PIL import Image

    panel = to_uint8(downsample_for_view(np.asarray(image, dtype=np.float32), max_size))
    if before is not None:
        raw = to_uint8(downsample_for_view(np.asarray(before, dtype=np.float32), max_size))
        if panel.shape != raw.shape:
            resized = Image.fromarray(panel, "L").resize(raw.shape[::-1], Image.Resampling.BILINEAR)
            panel = np.asarray(resized)
        gap = np.full((raw.shape[0], GAP_PX), 255, np.uint8)
        panel = np.concatenate([raw, gap, panel], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(panel), "L").save(tmp, format="PNG")
    return Path(path)
