"""Checks on pixel data shared by every reader (MRC, TIFF, EER, movies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError


def validate_image(
    image: np.ndarray, path: str | Path | None, what: str = "image", unit: str = "pixel"
) -> None:
    """Raise :class:`DracoInputError` for NaN/Inf pixels or a constant (zero-variance) image.

    Args:
        image: [..., H, W] array (or a [D, H, W] density map).
        path: file the data came from, for the message.
        what: what the array is ("image", "frame 3", "the map", ...), for the message.
        unit: what one element is called ("pixel", "voxel"), for the message.
    """
    finite = np.isfinite(image)
    if not finite.all():
        n_bad = int(image.size - np.count_nonzero(finite))
        raise DracoInputError(f"{what} has {n_bad} NaN/Inf {unit}s", path)
    if image.size and float(np.ptp(image)) == 0.0:
        raise DracoInputError(
            f"{what} has zero variance (every {unit} = {image.flat[0].item()!r})", path
        )


def expect_ndim(shape: tuple[int, ...], allowed: tuple[int, ...], path: str | Path | None) -> None:
    """Raise unless ``len(shape)`` is one of ``allowed``."""
    if len(shape) not in allowed:
        want = " or ".join(f"{n}D" for n in allowed)
        raise DracoInputError(f"expected a {want} array, found shape {tuple(shape)}", path)


def expect_same_shape(a: np.ndarray, b: np.ndarray, path_a: str | Path, path_b: str | Path) -> None:
    """Raise if two images that must pair up (odd/even, image/mask) differ in shape."""
    if a.shape != b.shape:
        raise DracoInputError(
            f"shape {a.shape} does not match {path_b} with shape {b.shape}", path_a
        )
