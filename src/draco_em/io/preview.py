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


def save_preview(path: str | Path, image: np.ndarray, max_size: int = 1024) -> Path:
    """Write an 8-bit grayscale PNG preview of a 2D image atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    small = to_uint8(downsample_for_view(np.asarray(image, dtype=np.float32), max_size))
    with atomic_path(path) as tmp:
        plt.imsave(tmp, small, cmap="gray", vmin=0, vmax=255, format="png")
    return Path(path)
