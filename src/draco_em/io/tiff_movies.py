"""TIFF and EER movie readers (tifffile + imagecodecs), opened through ``open_movie``.

Kept apart from :mod:`draco_em.io.movies` so that reading MRC movies never imports tifffile.
tifffile *logs* rather than raises on many broken files (a page list pointing past the end,
pages missing tags); those messages are collected here and turned into
:class:`~draco_em.errors.DracoInputError` so a corrupt movie never yields blank frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from tifffile import COMPRESSION, TiffFile, TiffFrame, TiffPage

from draco_em.errors import DracoInputError, first_line
from draco_em.io.movie_base import (
    EER_COMPRESSIONS,
    EER_SUFFIXES,
    Movie,
    check_frame_shape,
    check_pixel_size_override,
)


class TiffMovie(Movie):
    """A multi-page TIFF, one frame per page (LZW, deflate or uncompressed; 8/16-bit).

    Frames are flipped along the slow axis (rows reversed) as they are read, as RELION,
    MotionCor2 and IMOD read TIFF (docs/movies.md, "TIFF orientation").
    """

    def __init__(self, tif: TiffFile, path: Path, pixel_size: float | None = None) -> None:
        check_pixel_size_override(pixel_size, path)
        self.path, self._tif = path, tif
        pages = tif.pages
        pages.useframes = True  # every page shares the first page's layout: read IFDs lazily
        first = pages.first
        if len(first.shape) != 2:
            raise DracoInputError(
                f"TIFF pages must be 2D grey images, found page shape {first.shape}", path
            )
        check_frame_shape(first.shape, path)
        self.n_frames = len(pages)
        self.shape = (int(first.shape[0]), int(first.shape[1]))
        self.dtype = np.dtype(first.dtype)
        self.notes = []
        # Declared int in tifffile, a COMPRESSION enum (named) at run time.
        self.metadata = {"compression": COMPRESSION(first.compression).name.lower()}
        self.pixel_size = pixel_size or _tiff_pixel_size(first)

    def _read(self, index: int) -> np.ndarray:
        with _tifffile_log() as log:
            page = self._tif.pages[index]
            _check_page_data(page, self.path, index)
            _check_lzw_strips(page, self.path, index)
            data = page.asarray(maxworkers=self.decode_threads)  # strips decoded in parallel
        _raise_logged(log, self.path, index)
        return data[::-1]  # a view: Movie.frame copies it

    def close(self) -> None:
        self._tif.close()


LZW_CLEAR, LZW_EOI, LZW_FIRST = 256, 257, 258  # TIFF 6.0 §13: the two control codes
#: Bit offset of each code after a clear code, and its width: the table gains one entry per
#: code after the first, and TIFF's "early change" widens codes one entry early (9 bits up to
#: entry 510, 10 up to 1022, 11 up to 2046, then 12); 4096 - 258 codes fill the table, and the
#: code after them must be a clear (or end-of-information) code.
_LZW_WIDTHS = np.array(
    [9 if k < 254 else 10 if k < 766 else 11 if k < 1790 else 12 for k in range(4096 - 257)]
)
_LZW_OFFSETS = np.concatenate([[0], np.cumsum(_LZW_WIDTHS)])


def lzw_stream_ok(data: bytes) -> bool:
    """Whether a TIFF LZW strip's codes are all decodable, without decoding it.

    imagecodecs' decoder (which tifffile calls) segfaults on some corrupt streams instead of
    raising, which would end a whole batch: seen with a literal-less code right after a clear
    code (a table entry that does not exist yet), found by
    ``tests/io/test_movies.py::test_fuzzed_bytes_give_movie_or_input_error``. So a stream is
    checked first, segment by segment between clear codes (vectorised over a segment's codes):
    the first code after a clear must be a literal (< 256), every later code at most the next
    table entry (the K-w-K-w-K case), and a full table must be followed by a clear code.
    Ends at the end-of-information code or where the bits run out.
    """
    buf = np.frombuffer(data + b"\0\0\0", np.uint8).astype(np.int64)
    nbits = 8 * len(data)
    pos = 0
    while pos + 9 <= nbits:
        starts = pos + _LZW_OFFSETS[:-1]
        fits = starts + _LZW_WIDTHS <= nbits
        starts, widths = starts[fits], _LZW_WIDTHS[fits]
        byte, shift = starts // 8, starts % 8
        window = (buf[byte] << 16) | (buf[byte + 1] << 8) | buf[byte + 2]
        codes = (window >> (24 - shift - widths)) & ((1 << widths) - 1)
        control = np.flatnonzero((codes == LZW_CLEAR) | (codes == LZW_EOI))
        end = int(control[0]) if len(control) else len(codes)
        body = codes[:end]
        if len(body) and body[0] >= 256:
            return False  # no literal to start the segment
        limit = LZW_FIRST + np.arange(len(body)) - 1  # the next entry before code j (j >= 1)
        if len(body) > 1 and np.any(body[1:] > limit[1:]):
            return False
        if not len(control):  # bits ran out (tifffile then reports the short strip), or a
            return len(codes) < len(_LZW_WIDTHS)  # full table not followed by a clear code
        if codes[end] == LZW_EOI:
            return True
        pos = int(starts[end] + widths[end])  # restart after the clear code
    return True


def _check_lzw_strips(page: TiffPage | TiffFrame, path: Path, index: int) -> None:
    """Raise before tifffile decodes an LZW page whose strips :func:`lzw_stream_ok` rejects."""
    key = page.keyframe
    if key is None or key.compression != COMPRESSION.LZW:
        return
    fh = page.parent.filehandle
    with fh.lock:
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            fh.seek(offset)
            if not lzw_stream_ok(fh.read(count)):
                raise DracoInputError(
                    f"cannot decode frame {index}: corrupt LZW data at byte {offset}", path
                )


def _tiff_pixel_size(page: TiffPage) -> float | None:
    """Å per pixel from X resolution in pixels/cm (what ``write_tiff_movie`` stores), else None.

    Resolutions in inches or without a unit are ignored: they are display DPI, not a sampling.
    """
    unit = page.tags.valueof(296)  # ResolutionUnit: 3 = centimetre
    xres = page.tags.valueof(282)
    if unit != 3 or not xres or not xres[0] or not xres[1]:
        return None
    per_cm = xres[0] / xres[1]
    return round(1e8 / per_cm, 6) if per_cm > 0 else None


class EerMovie(Movie):
    """A Falcon 4 EER file: raw electron-event frames summed in groups, optionally upsampled.

    Args:
        tif: the opened ``tifffile.TiffFile`` (opened with ``superres`` = log2 upsampling).
        grouping: raw frames summed into one output frame; the remainder is dropped.
        upsampling: 1 (physical grid), 2 or 4 (super-resolution from the sub-pixel bits).
        pixel_size: physical pixel size override in Å (the output pixel is this / upsampling).
    """

    is_eer = True

    def __init__(
        self, tif: TiffFile, path: Path, grouping: int, upsampling: int, pixel_size: float | None
    ) -> None:
        check_pixel_size_override(pixel_size, path)
        self.path, self._tif = path, tif
        self.notes = []
        self.metadata = dict(tif.eer_metadata or {})
        raw = list(tif.series[0].pages) if tif.series else []
        pages: list[TiffPage | TiffFrame] = [
            p for p in raw if p is not None and p.compression in EER_COMPRESSIONS
        ]
        if not pages:
            raise DracoInputError("EER file holds no electron-event frames", path)
        self._pages = pages
        self.n_raw_frames, self.grouping, self.upsampling = len(pages), grouping, upsampling
        self.n_frames = self.n_raw_frames // grouping
        if self.n_frames == 0:
            raise DracoInputError(
                f"EER grouping {grouping} is larger than the {self.n_raw_frames} raw frames",
                path,
            )
        dropped = self.n_raw_frames - self.n_frames * grouping
        if dropped:
            self.notes.append(
                f"EER grouping {grouping}: {self.n_raw_frames} raw frames make {self.n_frames} "
                f"frames; the last {dropped} raw frames are dropped"
            )
        first = pages[0]
        check_frame_shape(first.shape, path)
        self.shape = (int(first.shape[0]), int(first.shape[1]))
        self.dtype = np.dtype(bool)
        # The rendered grid is 2**min(sub-pixel bits, level) per axis: a file with fewer
        # sub-pixel bits than asked for renders coarser, and the pixel size must follow.
        keyframe = first.keyframe
        sensor_width = (keyframe.tags.valueof(256) if keyframe else None) or first.shape[1]
        factor = first.shape[1] / sensor_width
        if factor != upsampling:
            self.notes.append(f"EER sub-pixel bits allow {factor:g}× upsampling, not {upsampling}×")
        physical = pixel_size or _eer_pixel_size(self.metadata)
        self.pixel_size = None if physical is None else physical / factor
        self.metadata["compression"] = int(first.compression)
        expected = self.metadata.get("numberOfFrames")
        if isinstance(expected, int) and expected != self.n_raw_frames:
            self.notes.append(
                f"EER metadata says {expected} raw frames but the file holds {self.n_raw_frames}"
            )

    def _read(self, index: int) -> np.ndarray:
        # A raw EER page decodes to 0/1 per rendered pixel, so a group's count is at most its
        # grouping: uint8 holds it up to 255 raw frames per group (half the memory of uint16,
        # which prepare holds for every group of a movie: 2.7 GB for 40 groups at 8192²).
        total = np.zeros(self.shape, np.uint8 if self.grouping <= 255 else np.uint16)
        start = index * self.grouping
        pages = self._pages[start : start + self.grouping]
        for k, page in enumerate(pages):
            _check_page_data(page, self.path, start + k)
        with _tifffile_log() as log:
            if self.decode_threads > 1 and len(pages) > 1:
                # Raw pages decoded side by side (imagecodecs releases the GIL); the shared
                # file handle's seeks and reads then need tifffile's lock.
                self._tif.filehandle.set_lock(True)
                with ThreadPoolExecutor(self.decode_threads) as pool:
                    for data in pool.map(lambda page: page.asarray(), pages):
                        total += data
            else:
                for page in pages:
                    total += page.asarray()
        _raise_logged(log, self.path, index)
        return total

    def close(self) -> None:
        self._tif.close()


def _eer_pixel_size(metadata: dict) -> float | None:
    """Physical pixel size in Å from EER metadata ``sensorPixelSize.width`` (metres)."""
    value = metadata.get("sensorPixelSize.width")
    unit = metadata.get("sensorPixelSize.width.unit", "m")
    if not isinstance(value, int | float) or value <= 0:
        return None
    return float(value) * 1e10 if unit == "m" else None


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """Collect tifffile's logged warnings (it logs, not raises, on broken IFD chains)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    log = logging.getLogger("tifffile")
    handler, propagate = _Collect(level=logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False  # keep them off the user's terminal; we turn them into errors
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


_CORRUPT_WORDS = ("segments", "missing required", "TiffFileError", "invalid", "corrupt")


def _raise_logged(log: list[str], path: Path, index: int) -> None:
    """tifffile logs (and returns blank data) for corrupt pages: make that a user error.

    Only messages about the page structure or its data count; tifffile's remarks on odd but
    harmless metadata tags of real files do not stop a movie.
    """
    bad = [m for m in log if any(word in m for word in _CORRUPT_WORDS)]
    if bad:
        raise DracoInputError(f"corrupt frame {index} (tifffile: {bad[0]})", path)


def open_tiff_like(path: Path, grouping: int, upsampling: int, pixel_size: float | None) -> Movie:
    """TIFF or EER, decided by the content (EER metadata and compression), not the name."""
    kind = "EER" if path.suffix.lower() in EER_SUFFIXES else "TIFF"
    with _tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path, superres=int(math.log2(upsampling)))
        except Exception as exc:  # TiffFileError, struct errors, OSError on short headers
            raise DracoInputError(f"not a readable {kind} file ({first_line(exc)})", path) from exc
        try:
            movie = _movie_from_tiff(tif, path, grouping, upsampling, pixel_size)
            broken = [m for m in log if "invalid" in m and "offset" in m]
            if broken:  # the IFD chain points past the end: pages are missing
                raise DracoInputError(
                    f"truncated or corrupt {kind} file: its page list points past the end "
                    f"({broken[0].split('> ')[-1]}; the file has {path.stat().st_size} bytes)",
                    path,
                )
            return movie
        except DracoInputError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise DracoInputError(f"corrupt {kind} structure ({first_line(exc)})", path) from exc


def _movie_from_tiff(
    tif: TiffFile, path: Path, grouping: int, upsampling: int, pixel_size: float | None
) -> Movie:
    if len(tif.pages) == 0:
        raise DracoInputError("file holds zero frames (empty or truncated)", path)
    compression = int(tif.pages.first.compression)
    if tif.is_eer or compression in EER_COMPRESSIONS:
        return EerMovie(tif, path, grouping, upsampling, pixel_size)
    if path.suffix.lower() in EER_SUFFIXES:
        raise DracoInputError(
            f"not an EER file: a TIFF without EER metadata (compression {compression})", path
        )
    return TiffMovie(tif, path, pixel_size)


def _check_page_data(page: TiffPage | TiffFrame, path: Path, index: int) -> None:
    """Raise if a page's strips or tiles run past the end of the file (a truncated download)."""
    size = page.parent.filehandle.size
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
    if ends and max(ends) > size:
        raise DracoInputError(
            f"truncated file: frame {index}'s data ends at byte {max(ends)} but the file has "
            f"{size} bytes",
            path,
        )


def movie_summary(path: str | Path) -> dict:
    """Facts about a TIFF or EER movie for ``draco info``; statistics from the first frame only.

    MRC movies are summarised by :func:`draco_em.io.mrc.mrc_summary`.
    """
    with open_tiff_like(Path(path), 1, 1, None) as movie:
        try:
            first = movie.frame(0)
        except DracoInputError:  # NaN/Inf pixels: described with a note, as an MRC is
            first = np.asarray(movie._read(0), dtype=np.float32)  # decoded; only values refused
            if first.shape != movie.shape or np.isfinite(first).all():
                raise
        finite = first[np.isfinite(first)]
        kind = "eer" if isinstance(movie, EerMovie) else "tiff"
        out: dict[str, Any] = {
            "format": kind,
            "kind": "movie" if movie.n_frames > 1 else "image",
            "shape": [movie.n_frames, *movie.shape],
            "dtype": str(movie.dtype),
            "pixel_size": movie.pixel_size,
            "n_frames": movie.n_frames,
            "compression": movie.metadata.get("compression"),
            "stats_frame0": {  # of the finite pixels (None: there are none)
                "min": float(finite.min()) if finite.size else None,
                "max": float(finite.max()) if finite.size else None,
                "mean": float(finite.mean()) if finite.size else None,
                "std": float(finite.std()) if finite.size else None,
            },
            "notes": list(movie.notes),
        }
        if n_bad := first.size - finite.size:  # the wording of io.mrc.mrc_summary's note
            out["notes"].append(f"{n_bad} NaN/Inf pixels (frame 0): draco commands refuse it")
        if isinstance(movie, EerMovie):
            out["n_raw_frames"] = movie.n_raw_frames
            out["dose_per_px"] = movie.metadata.get("totalDose")
            out["notes"].append("EER frames shown ungrouped; pick --eer-grouping when preparing")
        return out
