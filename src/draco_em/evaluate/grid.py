"""The micrograph's pixel grid, on which ``draco evaluate denoise`` scores every image.

Coordinates, disk radii, contamination masks and saved region pairs are all in the
micrograph's pixels. A prediction written at another sampling (``draco denoise
--keep-binned``: the model's working pixel size, a smaller grid) is Fourier-resized onto the
micrograph's grid before it is scored (:func:`on_frame`). That grid is the raw input's or the
clean image's where either is given; otherwise :func:`prediction_grid` works it out from the
prediction's header and the micrograph's pixel size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.evaluate.regions import RegionPairs
from draco_em.imaging.fourier import fourier_resize, rescaled_shape
from draco_em.io.images import is_raster
from draco_em.io.mrc import header_pixel_size_state, read_micrograph, read_mrc
from draco_em.io.validate import validate_image

#: Two pixel sizes this close (relative) are one: the rounding of a stated pixel size.
SAME_PIXEL_SIZE = 1e-3


#: The largest factor a prediction is resampled by onto the micrograph's grid: ``--keep-binned``
#: outputs are at the model's working pixel size (1.98 Å), at most a few times coarser than
#: any micrograph; an 8×8 file blown up onto a 512² clean image scored 20.5 dB.
MAX_RESAMPLE = 8.0


def on_frame(
    image: np.ndarray,
    frame: tuple[int, int],
    path: Path,
    image_px: float | None = None,
    frame_px: float | None = None,
) -> np.ndarray:
    """``image`` [ny', nx'] on the [ny, nx] ``frame``: as it is, or Fourier-resized when it is
    the same field at another sampling (``--keep-binned``: one scale on both axes, each side
    within a pixel of it, as :func:`draco_em.imaging.fourier.rescaled_shape` makes them).

    ``image_px``, ``frame_px``: the Å/px the image's file and the micrograph state (None:
    unknown). A resize is said on stderr unless both are known and agree with it: a header
    may be a placeholder, or nominal where the micrograph's is calibrated, so the shape decides
    and the pixel sizes only check it.

    Raises:
        DracoInputError: another aspect ratio (a crop, a transposed or foreign image), or a
            factor beyond :data:`MAX_RESAMPLE`: a resize would make a meaningless score.
    """
    (h, w), (ny, nx) = image.shape, frame
    if (h, w) == (ny, nx):
        return image
    if max((h - 1) / ny, (w - 1) / nx) > min((h + 1) / ny, (w + 1) / nx):
        raise DracoInputError(
            f"shape {tuple(image.shape)} is not the {ny} × {nx} micrograph at another sampling "
            "(the aspect ratio differs): not the same field of view",
            path,
        )
    factor = ny / h
    if not 1 / MAX_RESAMPLE <= factor <= MAX_RESAMPLE:
        raise DracoInputError(
            f"shape {h} × {w} would be resampled ×{factor:.3g} onto the {ny} × {nx} micrograph: "
            f"no denoiser output differs so much (at most ×{MAX_RESAMPLE:g}); not scored",
            path,
        )
    said = (
        f"warning: {path.name}: {h} × {w} resampled ×{factor:.3g} onto the {ny} × {nx} micrograph"
    )
    if image_px is None:
        tqdm.write(f"{said} (the file states no pixel size to check it by)", file=sys.stderr)
    elif frame_px is None:
        tqdm.write(f"{said}, whose pixel size nothing states (--pixel-size)", file=sys.stderr)
    elif any(abs(a - b) > 1 for a, b in zip(rescaled_shape(frame, frame_px, image_px), (h, w),
                                              strict=True)):  # fmt: skip
        tqdm.write(
            f"{said}, though its header's {image_px:g} Å/px against the micrograph's "
            f"{frame_px:g} says another size: check the pixel sizes",
            file=sys.stderr,
        )
    return fourier_resize(image, frame)


def stated_pixel_size(path: Path, px: float | None) -> float | None:
    """``px`` as read from ``path``, or None where the file states none (a picture, or an MRC
    header's 0 or 1.0 placeholder)."""
    return None if is_raster(path) or header_pixel_size_state(path) is not None else px


def read_scored(path: Path, pixel_size: float | None) -> tuple[np.ndarray, float | None]:
    """A prediction or clean image: [ny, nx], or the [n, ny, nx] sections of an MRC stack or
    volume (a tilt series), each checked as a micrograph is; and the Å/px its file states
    (:func:`stated_pixel_size`). ``pixel_size`` is for pictures only, which need one to be read.
    """
    if is_raster(path):
        return read_micrograph(path, pixel_size)[0], None
    mrc = read_mrc(path)
    data = np.asarray(mrc.data, dtype=np.float32)
    for k, section in enumerate(data if data.ndim == 3 else [data]):
        validate_image(section, path, f"section {k}" if data.ndim == 3 else "image")
    return data, stated_pixel_size(path, mrc.pixel_size)


def same_sampling(shape: tuple[int, int], pixel_size: float, other: float) -> bool:
    """Whether ``shape`` at ``pixel_size`` and at ``other`` Å/px are one grid: the two agree to
    :data:`SAME_PIXEL_SIZE`, or the other grid is within a pixel of ``shape`` on each axis."""
    grid = rescaled_shape(shape, pixel_size, other)
    near = all(abs(a - b) <= 1 for a, b in zip(grid, shape, strict=True))
    return near or abs(pixel_size / other - 1) <= SAME_PIXEL_SIZE


def prediction_grid(
    stem: str,
    path: Path,
    shape: tuple[int, int],
    stated: float | None,
    pixel_size: float | None,
    regions: RegionPairs,
) -> tuple[tuple[int, int], float | None]:
    """The micrograph's grid and Å/px where only its prediction is at hand (no raw or clean
    image of it).

    Args:
        stem: the micrograph.
        path, shape, stated: the prediction's file, [ny', nx'] and the Å/px its header states.
        pixel_size: ``--pixel-size``, the micrographs' Å/px; else the coordinates' file's (a
            ``.cs``) is used.
        regions: the region pairs: a ``--pairs`` file names the grid they were made on.

    Returns:
        ``((ny, nx), Å/px or None)``: the prediction's own grid unless it states another
        pixel size than the micrograph's.

    Raises:
        DracoInputError: coordinates to place on a prediction that states a pixel size, and
            nothing stating the micrograph's: the prediction may be binned, so nobody can say
            where the coordinates fall on it.
    """
    mic_px = pixel_size or regions.pixel_size(stem)
    grid = regions.stored_shape(stem)
    if grid is None and mic_px and stated and not same_sampling(shape, stated, mic_px):
        grid = rescaled_shape(shape, stated, mic_px)
        # said: a nominal header beside a calibrated --pixel-size reads the same way
        tqdm.write(
            f"warning: {path.name}: its header's {stated:g} Å/px against the micrograph's "
            f"{mic_px:g}: scored as a --keep-binned output of a {grid[0]} × {grid[1]} "
            "micrograph; give --raw to score it on the micrograph's own grid",
            file=sys.stderr,
        )
    if grid is None and mic_px is None and stated and regions.needed(stem):
        raise DracoInputError(
            f"the prediction states {stated:g} Å/px and nothing states the micrograph's: "
            "coordinates are in the micrograph's pixels, so give --pixel-size (the "
            "micrographs' Å/px) or --raw, in case it was denoised with --keep-binned",
            path,
        )
    grid = grid or shape
    if mic_px is None and stated:  # the micrograph's pixels span the prediction's field too
        mic_px = stated * shape[0] / grid[0]
    return grid, mic_px
