"""The movie interface shared by the MRC reader (:mod:`draco_em.io.movies`) and the TIFF/EER
readers (:mod:`draco_em.io.tiff_movies`): the :class:`Movie` base class, the file suffixes and
the checks every reader makes. Its own module so that neither reader imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError, first_line
from draco_em.io.mrc import MIN_MICROGRAPH_SIDE
from draco_em.io.validate import validate_image

MRC_SUFFIXES = (".mrc", ".mrcs", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer", ".ecc")
#: Movie files (an ``.mrc``/``.st`` may hold a movie too: told apart by its depth).
MOVIE_SUFFIXES = (".mrcs", *TIFF_SUFFIXES, *EER_SUFFIXES)
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
        decode_threads: threads that decode one frame's compressed data (TIFF strips, the raw
            EER pages of a group); imagecodecs releases the GIL, so 2 threads nearly halve it.
            Set by :func:`~draco_em.io.movies.open_movie`; MRC stacks ignore it.
        is_eer: an EER file (by its content, not its name), whose gain references follow
            their own rule (RELION inverts any but EPU's ``.gain``: :mod:`draco_em.io.gain`).
    """

    path: Path
    n_frames: int
    shape: tuple[int, int]
    dtype: np.dtype
    pixel_size: float | None
    notes: list[str]
    metadata: dict
    decode_threads: int = 1
    is_eer: bool = False

    def _read(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame(self, index: int, *, as_stored: bool = False) -> np.ndarray:
        """Decode frame ``index`` (0-based, negative counts from the end) as float32 [ny, nx].

        ``as_stored=True`` keeps the file's dtype (uint8/uint16/int8 counts, float16/32): a copy
        the caller owns, without the float32 conversion, so a reader that holds a whole movie
        (``draco prepare``: the hot-pixel sum needs every frame first) holds a 4-bit or 8-bit
        movie in a quarter of the memory, and skips a conversion per frame.

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
            msg = f"cannot decode frame {index} ({first_line(exc)})"
            raise DracoInputError(msg, self.path) from exc
        data = np.asarray(data)
        if data.shape != self.shape:
            raise DracoInputError(
                f"frame {index} has shape {data.shape}, expected {self.shape}", self.path
            )
        if as_stored:  # copied only where the reader lent a view (an MRC memory map)
            out = np.array(data, copy=not data.flags.owndata)
        else:
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


def check_frame_shape(shape: tuple[int, ...], path: Path, where: str = "") -> None:
    """Reject frame sizes no detector makes: a corrupt header must not allocate 32 GB, and a
    side under :data:`~draco_em.io.mrc.MIN_MICROGRAPH_SIDE` px (the smallest micrograph any
    stage accepts) leaves global alignment no room: its correlation box is at least that wide
    (``prepare.motion.alignment_shape``), larger than such a frame.

    Args:
        shape: (ny, nx) of one frame.
        path: the movie, named in the error.
        where: what ``shape`` is, when not the frame as stored (e.g. after a Fourier crop).
    """
    if len(shape) == 2 and 0 < shape[0] * shape[1] <= MAX_FRAME_PIXELS:
        if min(shape) >= MIN_MICROGRAPH_SIDE:
            return
        raise DracoInputError(
            f"frames of {shape[1]}x{shape[0]} px{where} are too small to align and prepare "
            f"(each side needs at least {MIN_MICROGRAPH_SIDE} px)",
            path,
        )
    raise DracoInputError(
        f"frame shape {tuple(shape)} is not a plausible image (corrupt header?)", path
    )


def check_pixel_size_override(pixel_size: float | None, path: Path) -> None:
    """Raise unless a user-given pixel size (Å) is None or a finite positive number."""
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise DracoInputError(f"pixel size override must be > 0 Å, got {pixel_size}", path)
