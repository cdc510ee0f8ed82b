"""Lazy movie readers: MRC/MRCS stacks (packed 4-bit too), TIFF (LZW/deflate, 8/16-bit), EER.

One entry point, :func:`open_movie`, returns a :class:`Movie` that decodes one frame at a time:
MRC stacks are memory-mapped, TIFF and EER (:mod:`draco_em.io.tiff_movies`) are decoded
page by page, so memory stays at a few
frames whatever the movie's length. Frames come back as float32 [ny, nx] (row = y, column = x,
as stored), in detector counts. Gain correction lives in :mod:`draco_em.io.gain`.

Pixel sizes are in Å. EER super-resolution renders each physical pixel as 2×2 or 4×4 output
pixels, so the output pixel size is the physical one divided by the upsampling factor.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.movie_base import (
    EER_SUFFIXES,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    Movie,
    check_frame_shape,
    check_pixel_size_override,
)
from draco_em.io.mrc import imod_flags, read_mrc


class MrcMovie(Movie):
    """An MRC/MRCS stack [n_frames, ny, nx], memory-mapped."""

    def __init__(self, path: Path, pixel_size: float | None = None) -> None:
        check_pixel_size_override(pixel_size, path)
        mrc = read_mrc(path, pixel_size=pixel_size, mmap=True, ndim=(3,))
        self.path = path
        self._data: np.ndarray | None = mrc.data
        self.n_frames = int(mrc.data.shape[0])
        self.shape = (int(mrc.data.shape[1]), int(mrc.data.shape[2]))
        check_frame_shape(self.shape, path)
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


#: IMOD's packed 4-bit mode, SerialEM's K2/K3 counting movies (RELION reads it too), which
#: mrcfile does not know.
MRC_MODE_PACKED_4BIT = 101
#: imodFlags bit: the first pixel of a byte is in the high 4 bits instead of the low ones.
_IMOD_NYBBLES_SWAPPED = 0x10


def _packed_4bit_header(path: Path) -> np.recarray | None:
    """The header of a mode-101 MRC file, or None for any other file (read without data)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                header = mrc.header.copy()
    except Exception:
        return None  # not an MRC header: MrcMovie reports it
    return header if int(header.mode) == MRC_MODE_PACKED_4BIT else None


def is_packed_4bit_mrc(path: str | Path) -> bool:
    """Whether an MRC file holds packed 4-bit pixels (mode 101: only movies are written so)."""
    return _packed_4bit_header(Path(path)) is not None


class Packed4BitMrcMovie(Movie):
    """An MRC stack in IMOD's mode 101: two 4-bit counts per byte, memory-mapped.

    The first pixel of each byte is in its low 4 bits (high with imodFlags 0x10). A row of odd
    width is taken to end with 4 bits of padding, each row starting on a byte, as IMOD describes
    it (not checked against a real file: K2/K3 frames have even widths).
    Frames come back as uint8 [ny, nx] (``as_stored``), 0-15 counts.
    """

    def __init__(self, path: Path, header: np.recarray, pixel_size: float | None = None) -> None:
        check_pixel_size_override(pixel_size, path)
        nx, ny, nz, nsymbt = (int(header[k]) for k in ("nx", "ny", "nz", "nsymbt"))
        check_frame_shape((ny, nx), path)
        row_bytes = (nx + 1) // 2
        offset = 1024 + nsymbt
        expected = offset + nz * ny * row_bytes
        size = path.stat().st_size
        if nz < 1 or nsymbt < 0 or expected > size:
            raise DracoInputError(
                f"truncated or corrupt 4-bit MRC file: header says {nx}x{ny}x{nz} "
                f"({expected} bytes) but the file has {size} bytes",
                path,
            )
        self._swapped = bool((imod_flags(header) or 0) & _IMOD_NYBBLES_SWAPPED)
        self.path = path
        self._data: np.ndarray | None = np.memmap(
            path, np.uint8, mode="r", offset=offset, shape=(nz, ny, row_bytes)
        )
        self.n_frames, self.shape = nz, (ny, nx)
        self.dtype = np.dtype(np.uint8)
        header_px = float(header.cella.x) / int(header.mx) if int(header.mx) > 0 else 0.0
        self.pixel_size = pixel_size or (header_px if header_px > 0 else None)
        self.notes = []
        self.metadata = {"mode": MRC_MODE_PACKED_4BIT}
        if pixel_size is None and header_px == 1.0:
            self.notes.append(
                "header pixel size is 1, often a placeholder; pass pixel_size to override"
            )

    def _read(self, index: int) -> np.ndarray:
        if self._data is None:
            raise ValueError(f"{self.path} is closed")
        packed = np.asarray(self._data[index])
        low, high = packed & 0x0F, packed >> 4
        first, second = (high, low) if self._swapped else (low, high)
        out = np.empty((packed.shape[0], 2 * packed.shape[1]), np.uint8)
        out[:, 0::2], out[:, 1::2] = first, second
        nx = self.shape[1]
        return out if out.shape[1] == nx else out[:, :nx]  # an owned array: no copy by frame()

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
        if (header := _packed_4bit_header(path)) is not None:
            return Packed4BitMrcMovie(path, header, pixel_size)
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
