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

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.mrc import _first_line, read_mrc  # one message-trimming helper for all readers
from draco_em.io.validate import validate_image

MRC_SUFFIXES = (".mrc", ".mrcs", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer", ".ecc")
EER_COMPRESSIONS = (65000, 65001, 65002)
#: Largest frame accepted, in pixels: a Falcon 4 EER rendered at 4× is 16384² = 2**28.
MAX_FRAME_PIXELS = 2**28


class Movie:
    """A dose-fractionated movie opened for lazy, frame-by-frame reading.

    Attributes:
        path: the file.
        n_frames: number of (grouped) frames.
        shape: (ny, nx) of one frame, in output pixels.
        dtype: the stored sample type (uint8, uint16, float32, ...; EER: bool, one electron
            event per pixel per raw frame).
        pixel_size: Å per output pixel, or None when neither the file nor the caller gives one.
        notes: things the user should know (dropped EER frames, placeholder pixel size, ...).
        metadata: format-specific header facts (EER acquisition metadata, TIFF compression).
    """

    path: Path
    n_frames: int
    shape: tuple[int, int]
    dtype: np.dtype
    pixel_size: float | None
    notes: list[str]
    metadata: dict

    def _read(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:
        """Decode frame ``index`` (0-based, negative counts from the end) as float32 [ny, nx].

        Raises:
            IndexError: index out of range.
            DracoInputError: the frame cannot be decoded, has another shape, or has NaN/Inf.
        """
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range for {self.n_frames} frames")
        index %= self.n_frames
        try:
            data = self._read(index)
        except DracoInputError:
            raise
        except Exception as exc:  # codec errors, short reads of truncated files
            msg = f"cannot decode frame {index} ({_first_line(exc)})"
            raise DracoInputError(msg, self.path) from exc
        data = np.asarray(data)
        if data.shape != self.shape:
            raise DracoInputError(
                f"frame {index} has shape {data.shape}, expected {self.shape}", self.path
            )
        out = data.astype(np.float32, copy=True)
        if data.dtype.kind in "fc" and not np.isfinite(out).all():
            validate_image(out, self.path, f"frame {index}")  # raises with the NaN/Inf count
        return out

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def sum(self, frames: Iterable[int] | slice | None = None) -> np.ndarray:
        """Sum of the given frames (default: all) as float32 [ny, nx], one frame in memory.

        Args:
            frames: frame indices or a slice, e.g. ``slice(0, None, 2)`` for the even frames.
        """
        if frames is None:
            indices: Iterable[int] = range(self.n_frames)
        elif isinstance(frames, slice):
            indices = range(self.n_frames)[frames]
        else:
            indices = frames
        total = np.zeros(self.shape, np.float64)  # float64: exact for any realistic count
        for i in indices:
            total += self.frame(i)
        return total.astype(np.float32)

    def close(self) -> None:
        """Release the file handle (also done by ``with open_movie(...) as movie``)."""

    def __enter__(self) -> Movie:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, n_frames={self.n_frames}, "
            f"shape={self.shape}, dtype={self.dtype}, pixel_size={self.pixel_size})"
        )


def check_frame_shape(shape: tuple[int, ...], path: Path) -> None:
    """Reject frame sizes no detector makes: a corrupt header must not allocate 32 GB."""
    if len(shape) == 2 and 0 < shape[0] * shape[1] <= MAX_FRAME_PIXELS:
        return
    raise DracoInputError(
        f"frame shape {tuple(shape)} is not a plausible image (corrupt header?)", path
    )


def check_pixel_size_override(pixel_size: float | None, path: Path) -> None:
    """Raise unless a user-given pixel size (Å) is None or a finite positive number."""
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise DracoInputError(f"pixel size override must be > 0 Å, got {pixel_size}", path)


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
        from draco_em.io.tiff_movies import open_tiff_like

        return open_tiff_like(path, grouping, eer_upsampling, pixel_size)
    known = ", ".join(MRC_SUFFIXES + TIFF_SUFFIXES + EER_SUFFIXES)
    raise DracoInputError(f"unknown movie type {path.suffix!r} (known: {known})", path)


def movie_summary(path: str | Path) -> dict:
    """Facts about a TIFF or EER movie for ``draco info``; statistics from the first frame only.

    MRC movies are summarised by :func:`draco_em.io.mrc.mrc_summary`.
    """
    from draco_em.io.tiff_movies import EerMovie

    with open_movie(path) as movie:
        first = movie.frame(0)
        kind = "eer" if isinstance(movie, EerMovie) else "tiff"
        out: dict[str, Any] = {
            "format": kind,
            "kind": "movie" if movie.n_frames > 1 else "image",
            "shape": [movie.n_frames, *movie.shape],
            "dtype": str(movie.dtype),
            "pixel_size": movie.pixel_size,
            "n_frames": movie.n_frames,
            "compression": movie.metadata.get("compression"),
            "stats_frame0": {
                "min": float(first.min()),
                "max": float(first.max()),
                "mean": float(first.mean()),
                "std": float(first.std()),
            },
            "notes": list(movie.notes),
        }
        if isinstance(movie, EerMovie):
            out["n_raw_frames"] = movie.n_raw_frames
            out["dose_per_px"] = movie.metadata.get("totalDose")
            out["notes"].append("EER frames shown ungrouped; pick --eer-grouping when preparing")
        return out
