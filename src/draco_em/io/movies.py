"""Lazy movie readers: MRC/MRCS stacks, TIFF (LZW/deflate, 8/16-bit) and EER (Falcon 4).

One entry point, :func:`open_movie`, returns a :class:`Movie` that decodes one frame at a time:
MRC stacks are memory-mapped, TIFF and EER (:mod:`draco_em.io.tiff_movies`) are decoded
page by page, so memory stays at a few
frames whatever the movie's length. Frames come back as float32 [ny, nx] (row = y, column = x,
as stored), in detector counts. Gain correction lives in :mod:`draco_em.io.gain`.

Pixel sizes are in Å. EER super-resolution renders each physical pixel as 2×2 or 4×4 output
pixels, so the output pixel size is the physical one divided by the upsampling factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.movie_base import (
    EER_SUFFIXES,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    Movie,
    check_pixel_size_override,
)
from draco_em.io.mrc import read_mrc


class MrcMovie(Movie):
    """An MRC/MRCS stack [n_frames, ny, nx], memory-mapped."""

    def __init__(self, path: Path, pixel_size: float | None = None) -> None:
        check_pixel_size_override(pixel_size, path)
        mrc = read_mrc(path, pixel_size=pixel_size, mmap=True, ndim=(3,))
        self.path = path
        self._data: np.ndarray | None = mrc.data
        self.n_frames = int(mrc.data.shape[0])
        self.shape = (int(mrc.data.shape[1]), int(mrc.data.shape[2]))
        self.dtype = np.dtype(mrc.data.dtype)
        self.pixel_size = mrc.pixel_size
        self.notes = list(mrc.notes)
        self.metadata = {"mode": mrc.mode}
        if pixel_size is None and mrc.pixel_size_is_placeholder:
            self.notes.append(
                f"header pixel size is {mrc.voxel_size[0]:g}, often a placeholder; "
                "pass pixel_size to override"
            )

    def _read(self, index: int) -> np.ndarray:
        if self._data is None:
            raise ValueError(f"{self.path} is closed")
        return self._data[index]

    def close(self) -> None:
        self._data = None  # drops the memory map


def open_movie(
    path: str | Path,
    *,
    eer_grouping: int | None = None,
    eer_upsampling: int = 1,
    pixel_size: float | None = None,
    decode_threads: int = 1,
) -> Movie:
    """Open a movie for lazy frame-by-frame reading.

    Args:
        path: ``.mrc``/``.mrcs`` stack, ``.tif``/``.tiff`` or ``.eer``.
        eer_grouping: raw EER frames summed per output frame (default 1: every raw frame).
            Raw frames past the last full group are dropped (``movie.notes`` says so).
            Ignored for MRC and TIFF movies.
        eer_upsampling: EER rendering grid: 1 (physical, e.g. 4096²), 2 or 4 (super-resolution
            from the events' sub-pixel bits). Ignored for other formats.
        pixel_size: Å per pixel, overriding the header. For EER this is the physical pixel; the
            output pixel is ``pixel_size / eer_upsampling``.
        decode_threads: threads decoding each TIFF/EER frame (:attr:`Movie.decode_threads`).

    Returns:
        A :class:`Movie`; use it as a context manager to close the file.

    Raises:
        DracoInputError: missing, unreadable or corrupt file, wrong dimensions, zero frames,
            unknown extension, invalid grouping/upsampling.
    """
    path = Path(path)
    if not path.exists():
        raise DracoInputError("file not found", path)
    if path.is_dir():
        raise DracoInputError("is a folder, expected a movie file", path)
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return MrcMovie(path, pixel_size)
    if suffix in TIFF_SUFFIXES + EER_SUFFIXES:
        grouping = 1 if eer_grouping is None else int(eer_grouping)
        if grouping < 1:
            raise DracoInputError(f"EER grouping must be >= 1, got {eer_grouping}", path)
        if eer_upsampling not in (1, 2, 4):
            raise DracoInputError(f"EER upsampling must be 1, 2 or 4, got {eer_upsampling}", path)
        # Imported here, not at the top: reading MRC movies should not import tifffile and
        # imagecodecs (start-up time); tiff_movies itself imports only movie_base, no cycle.
        from draco_em.io.tiff_movies import open_tiff_like

        movie = open_tiff_like(path, grouping, eer_upsampling, pixel_size)
        movie.decode_threads = max(1, int(decode_threads))
        return movie
    known = ", ".join(MRC_SUFFIXES + TIFF_SUFFIXES + EER_SUFFIXES)
    raise DracoInputError(f"unknown movie type {path.suffix!r} (known: {known})", path)
