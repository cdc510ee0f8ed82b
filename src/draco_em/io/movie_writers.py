"""Movie writers: TIFF (LZW/deflate, 8/16-bit) and EER (Falcon 4 electron events).

MRC/MRCS movies are written with :func:`draco_em.io.mrc.write_mrc` (one MRC writer). The
writers here exist for the simulator's TIFF/EER output and for tests of the readers in
:mod:`draco_em.io.movies`; every file is written atomically.

EER bit stream (what ``imagecodecs.eer_decode`` reads; EER format documentation 3.0 §4):

* The bits of a frame's strip are read least-significant-bit first.
* A *code* starts with ``skipbits`` bits holding a run length ``r``: the number of pixels
  (row-major, physical pixel grid) skipped before the next event.
* ``r == 2**skipbits - 1`` (all ones) means "skip that many pixels, no event"; the next code
  follows after the ``skipbits`` bits. Otherwise an electron event lands on the pixel after the
  run, and ``horzbits`` then ``vertbits`` sub-pixel bits follow. The decoder XORs each field with
  the number of its bits (``pos = field ^ horzbits``), so the encoder stores ``pos ^ horzbits``.
* Each pixel takes at most one event per raw frame (the event advances the pixel index).
* A final run that reaches the last pixel ends the frame.

Compression 65000 = 8 skip bits, 65001 = 7 skip bits (both with 2 + 2 sub-pixel bits);
65002 reads the three widths from the TIFF tags 65007-65009. EER files are BigTIFF with the
acquisition metadata as XML in tag 65001 of the first page (tifffile's ``is_eer`` test).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from draco_em.io.atomic import atomic_path, check_not_input

#: EER compression code -> (skipbits, horzbits, vertbits); 65002's come from tags 65007-65009.
EER_SCHEMES = {65000: (8, 2, 2), 65001: (7, 2, 2), 65002: (7, 2, 2)}

_TIFF_COMPRESSION = {"lzw": "lzw", "deflate": "zlib", "zlib": "zlib", "none": None, None: None}


def write_tiff_movie(
    path: str | Path,
    frames: np.ndarray,
    *,
    compression: str | None = "lzw",
    pixel_size: float | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a movie as a multi-page TIFF, one frame per page, rows reversed (RELION's TIFF
    convention, docs/movies.md).

    Args:
        path: destination ``.tif``/``.tiff``.
        frames: [n_frames, ny, nx] counts, uint8 or uint16 (float32 is accepted too).
        compression: ``"lzw"`` (the usual for counting cameras), ``"deflate"`` or ``None``.
        pixel_size: Å per pixel, stored as X/YResolution in pixels per cm (ResolutionUnit 3),
            which :func:`draco_em.io.movies.open_movie` reads back.
        inputs: files this output must never overwrite.
    """
    import tifffile

    path = Path(path)
    check_not_input(path, inputs)
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [n, ny, nx], got shape {frames.shape}")
    if compression not in _TIFF_COMPRESSION:
        raise ValueError(f"compression must be lzw, deflate or None, got {compression!r}")
    kwargs: dict = {"compression": _TIFF_COMPRESSION[compression], "photometric": "minisblack"}
    if pixel_size:
        per_cm = 1e8 / float(pixel_size)  # 1 cm = 1e8 Å
        kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=frames.nbytes > 2**31) as tw:
        for frame in frames:  # one page per frame, as counting cameras write them
            # rows reversed, as RELION writes TIFF, so that open_movie reads the frames back
            tw.write(np.ascontiguousarray(frame[::-1]), contiguous=False, **kwargs)
    return path


def split_counts(
    frames: Iterable[np.ndarray], n_sub: int, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Split each count frame into ``n_sub`` binary raw frames that sum back to it exactly.

    An EER raw frame holds at most one event per pixel, so a movie of Poisson counts is written
    as ``n_sub`` raw frames per count frame; reading it back with ``eer_grouping=n_sub`` gives
    the original frames. The events of a pixel go to a uniformly random subset of the
    ``n_sub`` sub-frames (sequential sampling without replacement).

    Args:
        frames: count frames [ny, nx] (non-negative integers, each ``<= n_sub``).
        n_sub: raw frames per count frame.
        rng: random generator (default: seeded with 0, so the output is reproducible).

    Yields:
        bool [ny, nx] raw frames, ``n_sub`` per input frame.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    for counts in frames:
        remaining = np.asarray(counts).astype(np.float32)
        if remaining.min() < 0 or remaining.max() > n_sub:
            raise ValueError(f"counts must lie in [0, {n_sub}], got {remaining.max()}")
        for k in range(n_sub):
            # P(event in this sub-frame) = remaining events / remaining sub-frames
            # (a ratio, so that a pixel with as many events as sub-frames left always fires)
            event = rng.random(remaining.shape, dtype=np.float32) < remaining / (n_sub - k)
            remaining -= event
            yield event


def encode_eer_frame(
    events: np.ndarray,
    subpixel: tuple[np.ndarray, np.ndarray] | None = None,
    scheme: tuple[int, int, int] = EER_SCHEMES[65001],
) -> bytes:
    """Encode one raw EER frame as a bit stream (see the module docstring).

    Args:
        events: bool [ny, nx], True where an electron landed (one event per pixel at most).
        subpixel: (sx, sy) int [ny, nx] sub-pixel positions in ``[0, 2**horzbits)`` and
            ``[0, 2**vertbits)``; default: the centre-most sub-pixel (2, 2 for 2-bit fields).
        scheme: (skipbits, horzbits, vertbits).

    Returns:
        The strip bytes, zero-padded to an even length (the decoder reads 16-bit words).
    """
    skipbits, horzbits, vertbits = scheme
    skipmask = (1 << skipbits) - 1
    flat = np.asarray(events).ravel()
    idx = np.flatnonzero(flat)
    if subpixel is None:
        sx = np.full(idx.size, 1 << (horzbits - 1), np.int64)
        sy = np.full(idx.size, 1 << (vertbits - 1), np.int64)
    else:
        sx = np.asarray(subpixel[0]).ravel()[idx].astype(np.int64)
        sy = np.asarray(subpixel[1]).ravel()[idx].astype(np.int64)
    # Runs of empty pixels before each event, then the run to the end of the frame.
    runs = np.diff(np.concatenate([[-1], idx, [flat.size]])) - 1
    n_skip = runs // skipmask  # whole "skip 2**skipbits - 1, no event" codes
    rem = runs % skipmask
    event_codes = (
        rem[:-1]
        | (((sx ^ horzbits) & ((1 << horzbits) - 1)) << skipbits)
        | (((sy ^ vertbits) & ((1 << vertbits) - 1)) << (skipbits + horzbits))
    )
    last_codes = np.concatenate([event_codes, rem[-1:]])  # the frame ends with the final run
    last_bits = np.full(last_codes.size, skipbits + horzbits + vertbits)
    last_bits[-1] = skipbits
    # Each group is n_skip skip codes followed by its event (or end) code.
    group_sizes = n_skip + 1
    values = np.full(int(group_sizes.sum()), skipmask, np.int64)
    nbits = np.full(values.size, skipbits, np.int64)
    ends = np.cumsum(group_sizes) - 1
    values[ends] = last_codes
    nbits[ends] = last_bits
    return _pack_lsb_first(values, nbits)


def _pack_lsb_first(values: np.ndarray, nbits: np.ndarray) -> bytes:
    """Concatenate variable-width codes, least significant bit first, into padded bytes."""
    width = int(nbits.max(initial=1))
    shifts = np.arange(width, dtype=np.int64)
    # [n_codes, width] bit table; keeping the first nbits of each row, in row order, gives
    # the stream (one vectorised pass, no per-code Python loop).
    table = ((values[:, None] >> shifts) & 1).astype(np.uint8)
    bits = table[shifts[None, :] < nbits[:, None]]
    data = np.packbits(bits, bitorder="little").tobytes()
    # 2 zero bytes so the end code is read before the decoder's "one more code fits" limit,
    # and an even length because the decoder works on 16-bit words.
    data += b"\0\0" + b"\0" * (len(data) % 2)
    return data


def eer_xml(items: Mapping[str, tuple[object, str | None]]) -> bytes:
    """EER acquisition metadata XML: ``{name: (value, unit)}`` -> ``<metadata><item ...>``."""
    parts = []
    for name, (value, unit) in items.items():
        unit_attr = f' unit="{unit}"' if unit else ""
        parts.append(f'<item name="{name}"{unit_attr}>{value}</item>')
    return ("<metadata>" + "".join(parts) + "</metadata>").encode()


def write_eer(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    pixel_size: float | None = None,
    compression: int = 65001,
    subpixel_factor: int = 1,
    dose_per_pixel: float | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write raw electron-event frames as an EER file (BigTIFF, one page per raw frame).

    Args:
        path: destination ``.eer``.
        frames: iterable of raw frames, each [ny, nx] (``subpixel_factor`` 1) or
            [4 ny, 4 nx] (``subpixel_factor`` 4: super-resolution events, at most one per 4×4
            block, whose position in the block becomes the sub-pixel bits). Values 0/1; use
            :func:`split_counts` for count frames. Consumed one at a time (bounded memory).
        pixel_size: physical pixel size in Å, stored as ``sensorPixelSize`` (metres).
        compression: 65000, 65001 or 65002 (EER_V0/V1/V2).
        subpixel_factor: 1 or 4, see ``frames``.
        dose_per_pixel: total dose in e⁻/pixel for the metadata (default: the event count).
        inputs: files this output must never overwrite.
    """
    path = Path(path)
    check_not_input(path, inputs)
    if compression not in EER_SCHEMES:
        raise ValueError(f"EER compression must be one of {sorted(EER_SCHEMES)}")
    if subpixel_factor not in (1, 4):
        raise ValueError("subpixel_factor must be 1 or 4")
    scheme = EER_SCHEMES[compression]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        strips, shape, n_events = _write_strips(fh, frames, subpixel_factor, scheme)
        ny, nx = shape
        dose = dose_per_pixel if dose_per_pixel is not None else n_events / (ny * nx)
        meta = {
            "numberOfFrames": (len(strips), None),
            "sensorImageHeight": (ny, "pixel"),
            "sensorImageWidth": (nx, "pixel"),
            "totalDose": (dose, "e/pixel"),
        }
        if pixel_size:
            meta["sensorPixelSize.height"] = (float(pixel_size) * 1e-10, "m")
            meta["sensorPixelSize.width"] = (float(pixel_size) * 1e-10, "m")
        _write_ifds(fh, strips, shape, compression, scheme, eer_xml(meta))
    return path


def _write_strips(
    fh: BinaryIO, frames: Iterable[np.ndarray], factor: int, scheme: tuple[int, int, int]
) -> tuple[list[tuple[int, int]], tuple[int, int], int]:
    """Write the BigTIFF header and each frame's strip; one frame in memory at a time.

    Returns:
        ([(offset, byte count)] per strip, frame shape (ny, nx), number of events).
    """
    fh.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))  # first-IFD offset patched later
    strips: list[tuple[int, int]] = []
    shape, n_events = None, 0
    for raw in frames:
        events, sub = _events_and_subpixels(np.asarray(raw), factor)
        if shape is not None and events.shape != shape:
            raise ValueError(f"raw frame shape {events.shape} differs from {shape}")
        shape = events.shape
        n_events += int(events.sum())
        strip = encode_eer_frame(events, sub, scheme)
        strips.append((fh.tell(), len(strip)))
        fh.write(strip)
    if shape is None:
        raise ValueError("write_eer needs at least one frame")
    return strips, shape, n_events


def _events_and_subpixels(
    raw: np.ndarray, factor: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Physical-pixel events and their sub-pixel positions from one raw frame."""
    if raw.ndim != 2:
        raise ValueError(f"raw EER frames must be 2D, got shape {raw.shape}")
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 1:
        raise ValueError("raw EER frames hold 0/1 events; split counts with split_counts()")
    if factor == 1:
        return raw.astype(bool), None
    ny, nx = raw.shape[0] // factor, raw.shape[1] // factor
    if raw.shape != (ny * factor, nx * factor):
        raise ValueError(f"super-resolution frame shape {raw.shape} is not a multiple of 4")
    blocks = raw.reshape(ny, factor, nx, factor).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    if blocks.sum(-1).max(initial=0) > 1:
        raise ValueError("a physical pixel holds more than one super-resolution event")
    where = blocks.argmax(-1)  # index inside the 4×4 block = sy * 4 + sx
    return np.asarray(blocks.any(-1)), (where % factor, where // factor)


def _write_ifds(
    fh: BinaryIO,
    strips: list[tuple[int, int]],
    shape: tuple[int, int],
    compression: int,
    scheme: tuple[int, int, int],
    xml: bytes,
) -> None:
    """Append the metadata XML and one IFD per strip (Falcon 4 layout), then link them."""
    ny, nx = shape
    xml_offset = fh.tell()
    fh.write(xml + b"\0" * (len(xml) % 2))  # IFDs start on a word boundary
    fh.seek(8)
    fh.write(struct.pack("<Q", xml_offset + len(xml) + len(xml) % 2))  # the first IFD
    fh.seek(0, 2)
    for i, (offset, count) in enumerate(strips):
        tags = [
            (256, 4, 1, nx), (257, 4, 1, ny), (258, 3, 1, 1), (259, 3, 1, compression),
            (262, 3, 1, 1), (273, 16, 1, offset), (277, 3, 1, 1), (278, 4, 1, ny),
            (279, 16, 1, count),
        ]  # fmt: skip
        if i == 0:
            tags.append((65001, 7, len(xml), xml_offset))  # AcquisitionMetadata (XML)
        if compression == 65002:
            tags += [(65007 + k, 3, 1, bits) for k, bits in enumerate(scheme)]
        ifd = struct.pack("<Q", len(tags))
        for code, dtype, n, value in sorted(tags):
            ifd += struct.pack("<HHQQ", code, dtype, n, value)
        next_ifd = fh.tell() + len(ifd) + 8 if i + 1 < len(strips) else 0
        fh.write(ifd + struct.pack("<Q", next_ifd))
