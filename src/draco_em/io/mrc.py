"""MRC/MRCS reading and writing (the one MRC implementation of the package).

Arrays follow mrcfile's C order: a 2D image is ``[ny, nx]`` (row = y, column = x), a stack or
volume is ``[nz, ny, nx]``. Pixel sizes are in Å.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE
from mrcfile.utils import mode_from_dtype

from draco_em.errors import DracoInputError, first_line
from draco_em.io import images  # imports Pillow/tifffile only when a picture is read
from draco_em.io.atomic import atomic_path, check_not_input, reserve_disk
from draco_em.io.validate import expect_ndim, validate_image

#: Header pixel sizes that mean "not set": 0 (mrcfile's default) and 1.0 (a common placeholder).
PLACEHOLDER_PIXEL_SIZES = (0.0, 1.0)
#: Suffixes of MRC image stacks: RELION's ``.mrcs``, IMOD's tilt series ``.st`` (raw) and
#: ``.ali`` (aligned), which IMOD and AreTomo find by name beside their tilt angles.
STACK_SUFFIXES = (".mrcs", ".st", ".ali")


@dataclass
class MrcData:
    """An opened MRC file.

    Attributes:
        path: the file.
        data: [ny, nx] or [nz, ny, nx] array; a read-only memory map when opened with ``mmap``.
        voxel_size: (x, y, z) in Å from the header (0 where unset).
        pixel_size: the pixel size to use, in Å: the override if given, else the header's x
            value, else ``None`` when the header says 0.
        origin: (x, y, z) origin from the header, in Å.
        nstart: (nxstart, nystart, nzstart), the index of the first voxel (EMDB maps use it).
        is_stack: True for image stacks (.mrcs, ispg 0 with nz > 1), False for volumes.
        mode: the MRC mode number (2 = float32, 12 = float16, ...).
    """

    path: Path
    data: np.ndarray
    voxel_size: tuple[float, float, float]
    pixel_size: float | None
    origin: tuple[float, float, float]
    nstart: tuple[int, int, int]
    is_stack: bool
    mode: int
    notes: list[str] = field(default_factory=list)

    @property
    def pixel_size_is_placeholder(self) -> bool:
        """True if the header pixel size is 0 or the 1.0 placeholder (worth overriding)."""
        return float(self.voxel_size[0]) in PLACEHOLDER_PIXEL_SIZES


def _open(path: Path, mmap: bool) -> mrcfile.mrcfile.MrcFile:
    if not path.exists():
        raise DracoInputError("file not found", path)
    if path.is_dir():
        raise DracoInputError("is a folder, expected an MRC file", path)
    try:
        _check_declared_sizes(path)
    except OSError as exc:  # no read permission, an I/O error: the user's to fix
        reason = exc.strerror or first_line(exc)
        raise DracoInputError(f"cannot read the file ({reason})", path) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opener = mrcfile.mmap if mmap else mrcfile.open
            return opener(path, mode="r", permissive=False)
    except Exception as exc:  # mrcfile raises ValueError, OSError, struct errors, ...
        raise DracoInputError(f"not a readable MRC file ({first_line(exc)})", path) from exc


#: Label 0 of every MRC file ``draco simulate`` writes (instead of mrcfile's time stamp): its
#: pixel size is the one simulated, never a placeholder.
SIMULATE_LABEL = b"draco-em simulate".ljust(80)


def header_says_placeholder(path: str | Path) -> bool:
    """Whether an MRC header states the 1.0 Å placeholder pixel size (read without the data).

    False for an unreadable file (the stage that reads it reports it), for other values (0
    reads as "unknown" everywhere, :mod:`draco_em.io.pixel_size`) and for ``draco simulate``'s
    files, whose 1.0 Å is what was simulated.
    """
    return header_pixel_size_state(path) == "placeholder"


def header_pixel_size_state(path: str | Path) -> str | None:
    """What an MRC header says of the pixel size, read without the data: ``"placeholder"``
    (1.0 Å, not ``draco simulate``'s), ``"unknown"`` (0 or another non-positive value), or
    None (a real value, or an unreadable file: the stage that reads it reports it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(Path(path), mode="r", header_only=True, permissive=True) as mrc:
                if bytes(mrc.header.map) != b"MAP " or int(mrc.header.nx) <= 0:
                    return None  # not an MRC header: its reader says why
                size = float(mrc.voxel_size.x)
                if not size > 0:
                    return "unknown"
                if size != 1.0:
                    return None
                simulated = any(
                    bytes(lab).startswith(SIMULATE_LABEL.rstrip()) for lab in mrc.header.label
                )
                return None if simulated else "placeholder"
    except Exception:
        return None


#: MRC modes of complex data (Fourier transforms): 3 = int16 pairs, 4 = float32 pairs.
COMPLEX_MODES = (3, 4)
#: IMOD's header stamp ("IMOD"), after which ``imodFlags`` says how mode 0 bytes are stored.
IMOD_STAMP = 1146047817
#: ``imodFlags`` bit: mode 0 bytes are signed; IMOD (and cisTEM, and mrcfile's author) read
#: them as unsigned without it (https://bio3d.colorado.edu/imod/doc/mrc_format.txt).
IMOD_SIGNED_BYTES = 0x1


def _imod_unsigned(header: np.recarray) -> bool:
    """Whether a mode 0 header is IMOD's and stores unsigned bytes (its flag bit 0 unset).

    The MRC2014 standard makes mode 0 signed, and mrcfile reads it so; IMOD writes 8-bit
    images as unsigned bytes unless that bit is set, so mrcfile turns their 128-255 into
    -128..-1 without a word. Headers without IMOD's stamp follow the standard.
    """
    flags = imod_flags(header)
    return flags is not None and not flags & IMOD_SIGNED_BYTES


def imod_flags(header: np.recarray) -> int | None:
    """IMOD's ``imodFlags`` of an MRC header, or None without IMOD's stamp (header bytes
    152-159: the stamp, then the flags, in the header's byte order)."""
    stamp, flags = np.frombuffer(bytes(header.extra2)[40:48], dtype=header.dtype["nx"])
    return int(flags) if int(stamp) == IMOD_STAMP else None


def _check_declared_sizes(path: Path) -> None:
    """Compare the sizes the header declares with the file size, before mrcfile reads.

    mrcfile allocates a buffer as large as the header's extended-header size (``nsymbt``)
    before it notices the file is shorter, so a corrupt 1 KB file could make it allocate
    2 GB. This also turns a truncated file into a message a user can act on. The header is
    parsed with mrcfile's own dtype; anything else odd is left for mrcfile to report.
    """
    size = path.stat().st_size
    if size < HEADER_DTYPE.itemsize:
        raise DracoInputError(
            f"not an MRC file: {size} bytes, shorter than the 1024-byte MRC header", path
        )
    with path.open("rb") as fh:
        raw = fh.read(HEADER_DTYPE.itemsize)
    try:
        stamp = np.frombuffer(raw, dtype=HEADER_DTYPE)[0]["machst"]
        order = mrcfile.utils.byte_order_from_machine_stamp(stamp)
        header = np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(order))[0]
        dtype = mrcfile.utils.dtype_from_mode(header["mode"])
    except ValueError:
        return  # unknown machine stamp or mode: mrcfile's own message says which
    nsymbt = int(header["nsymbt"])
    if nsymbt < 0 or 1024 + nsymbt > size:
        raise DracoInputError(
            f"corrupt MRC header: extended header of {nsymbt} bytes, file of {size} bytes", path
        )
    nx, ny, nz = (int(header[k]) for k in ("nx", "ny", "nz"))
    if min(nx, ny, nz) < 0:
        raise DracoInputError(f"corrupt MRC header: dimensions {nx}x{ny}x{nz}", path)
    expected = 1024 + nsymbt + nx * ny * nz * dtype.itemsize  # Python ints: no overflow
    if expected > size:
        raise DracoInputError(
            f"truncated MRC file: header says {nx}x{ny}x{nz} {dtype.name} ({expected} bytes) "
            f"but the file ends after {size} bytes",
            path,
        )


def read_mrc(
    path: str | Path,
    *,
    pixel_size: float | None = None,
    mmap: bool = False,
    ndim: tuple[int, ...] = (2, 3),
    complex_ok: bool = False,
) -> MrcData:
    """Read an MRC/MRCS file.

    Args:
        path: the file.
        pixel_size: override for the header pixel size, in Å (for headers that say 0 or 1.0).
        mmap: memory-map the data instead of reading it (large movies and stacks).
        ndim: allowed numbers of dimensions; anything else is a user error.
        complex_ok: accept complex data (modes 3 and 4, Fourier transforms); only ``draco info``
            does, every stage needs an image.

    Returns:
        The data (float16/float32/int as stored; cast before arithmetic) and its header facts.
        Mode 0 bytes are unsigned (uint8) where IMOD's header flags say so (:func:`_imod_unsigned`).

    Raises:
        DracoInputError: missing, unreadable, truncated or corrupt file, complex data, or a
            wrong number of dimensions.
    """
    path = Path(path)
    mrc = _open(path, mmap)
    try:
        data = mrc.data
        if data is None or data.size == 0:
            shape = None if data is None else tuple(data.shape)
            raise DracoInputError(f"MRC file holds no pixels (shape {shape})", path)
        if not mmap:
            data = np.asarray(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cella / 0 when the header's mx, my, mz are 0
            vs = mrc.voxel_size
        # A corrupt header gives inf/NaN voxel sizes: treat them as "not set", like 0.
        vx, vy, vz = (float(v) if np.isfinite(v) and v > 0 else 0.0 for v in (vs.x, vs.y, vs.z))
        voxel = (vx, vy, vz)
        org = mrc.header.origin
        origin = (float(org.x), float(org.y), float(org.z))
        hdr = mrc.header
        nstart = (int(hdr.nxstart), int(hdr.nystart), int(hdr.nzstart))
        # By name too: RELION's .mrcs, IMOD's tilt series .st/.ali (IMOD's headers may read
        # as a volume)
        is_stack = bool(mrc.is_image_stack()) or path.suffix.lower() in STACK_SUFFIXES
        mode = int(mrc.header.mode)
        if mode in COMPLEX_MODES and not complex_ok:
            raise DracoInputError(
                f"holds complex values (MRC mode {mode}: a Fourier transform?), not an image", path
            )
        if mode == 0 and _imod_unsigned(mrc.header):
            data = data.view(np.uint8)  # IMOD's unsigned bytes: 200 is 200, not -56
    except DracoInputError:
        mrc.close()
        raise
    except Exception as exc:
        mrc.close()
        raise DracoInputError(f"corrupt MRC data ({first_line(exc)})", path) from exc
    if not mmap:
        mrc.close()
    # A squeezed single-section file ([1, ny, nx]) counts as 2D: many tools write micrographs so.
    if data.ndim == 3 and data.shape[0] == 1 and 2 in ndim:
        data = data[0]
    if data.ndim == 2 and 2 not in ndim:  # mrcfile gives a one-section stack as [ny, nx]
        raise DracoInputError(
            f"expected a 3D stack or volume, found a single {data.shape[1]}x{data.shape[0]} "
            "image (a movie needs at least 2 frames)",
            path,
        )
    expect_ndim(data.shape, ndim, path)
    notes = []
    if len({round(v, 4) for v in voxel if v > 0}) > 1:
        notes.append(f"anisotropic voxels {voxel}; using x = {voxel[0]:g} Å as the pixel size")
    if pixel_size is not None:
        if not np.isfinite(pixel_size) or pixel_size <= 0:
            raise DracoInputError(f"pixel size override must be > 0 Å, got {pixel_size}", path)
        px: float | None = float(pixel_size)
    else:
        px = voxel[0] if voxel[0] > 0 else None
    return MrcData(path, data, voxel, px, origin, nstart, is_stack, mode, notes)


def read_image(
    path: str | Path, pixel_size: float | None = None
) -> tuple[np.ndarray, float | None]:
    """Read a 2D micrograph as float32: MRC, or PNG/JPEG/single-image TIFF.

    The one entry point for 2D micrographs: picture files (by suffix,
    :data:`draco_em.io.images.RASTER_SUFFIXES`) go to :func:`draco_em.io.images.read_raster`
    and need ``pixel_size``, since they carry none.

    Returns:
        (image [ny, nx] float32, pixel size in Å or None when the header has none).

    Raises:
        DracoInputError: unreadable file, or a picture file without ``pixel_size``.
    """
    if images.is_raster(path):
        px = images.require_pixel_size(path, pixel_size)
        return images.read_raster(path), px
    mrc = read_mrc(path, pixel_size=pixel_size, ndim=(2,))
    return np.asarray(mrc.data, dtype=np.float32), mrc.pixel_size


#: Smallest micrograph side (px) any stage accepts: below it tiling and spectra have no room.
MIN_MICROGRAPH_SIDE = 16


def read_micrograph(
    path: str | Path, pixel_size: float | None = None
) -> tuple[np.ndarray, float | None]:
    """:func:`read_image` plus the one check of pixel data every stage applies to micrographs.

    Masks and label images (constant is fine there) use :func:`read_image`.

    Raises:
        DracoInputError: unreadable file, NaN/Inf pixels, a constant image or a side below
            :data:`MIN_MICROGRAPH_SIDE` px, naming the file.
    """
    image, px = read_image(path, pixel_size)
    check_micrograph_pixels(image, path)
    return image, px


def check_micrograph_pixels(data: np.ndarray, path: str | Path, noun: str = "micrograph") -> None:
    """The one check of pixel data every stage applies to micrographs: each side at least
    :data:`MIN_MICROGRAPH_SIDE` px, no NaN/Inf, not constant; ``data`` [ny, nx], or the
    [n, ny, nx] sections of a stack or tilt series, each checked.

    Raises:
        DracoInputError: naming the file (and the section).
    """
    if min(data.shape[-2:]) < MIN_MICROGRAPH_SIDE:
        raise DracoInputError(
            f"{noun} of shape {tuple(data.shape[-2:])} is too small "
            f"(each side needs at least {MIN_MICROGRAPH_SIDE} px)",
            path,
        )
    for k, section in enumerate(data if data.ndim == 3 else [data]):
        validate_image(section, path, f"section {k}" if data.ndim == 3 else "image")


def write_mrc(
    path: str | Path,
    data: np.ndarray,
    pixel_size: float,
    *,
    float16: bool = False,
    stack: bool | None = None,
    inputs: Iterable[str | Path] = (),
    origin: tuple[float, float, float] | None = None,
) -> Path:
    """Write an image, stack or volume atomically, with the pixel size in the header.

    Args:
        path: destination (``.mrc`` or ``.mrcs``). Written to a temp file, then renamed.
        data: [ny, nx], [nz, ny, nx] array.
        pixel_size: voxel size in Å (always written; never left at 0).
        float16: write mode 12 (half precision) instead of mode 2 (float32). Integer data is
            written in its own mode (int8 → 0, int16 → 1, uint16 → 6).
        stack: mark a 3D array as an image stack; default: True for ``.mrcs`` names.
        inputs: files this output must never overwrite.
        origin: header origin in Å, if any.
    """
    path = Path(path)
    check_not_input(path, inputs)
    if pixel_size is None or not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ValueError(f"write_mrc needs a pixel size > 0, got {pixel_size!r}")
    arr = np.asarray(data)
    if arr.ndim not in (2, 3):
        raise ValueError(f"write_mrc takes [ny, nx] or [nz, ny, nx] data, got shape {arr.shape}")
    if arr.dtype.kind in "fc":
        dtype = np.dtype(np.float16 if float16 else np.float32)
    elif arr.dtype in (np.int8, np.int16, np.uint16):
        dtype = arr.dtype
    elif arr.dtype == np.uint8:
        dtype = np.dtype(np.uint16)  # MRC has no unsigned 8-bit mode (mrcfile writes mode 6)
    else:
        dtype = np.dtype(np.float32)
    if stack is None:
        stack = path.suffix.lower() == ".mrcs"
    # Written through a memory map, a slab at a time, with the header statistics accumulated
    # on the way: peak memory stays near one slab instead of 2-6 copies of the data (dtype
    # conversion, then mrcfile's float32 temporaries for the mean and std of the whole array).
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(tmp, arr.shape, mrc_mode=mode_from_dtype(dtype),
                              overwrite=True) as mrc:  # fmt: skip
            # A full disk is an OSError here, not a SIGBUS in the loop below (a sparse map).
            reserve_disk(tmp, path)
            stats = _SlabStats()
            rows = max(1, _SLAB_BYTES // max(1, arr[0].nbytes if len(arr) else 1))  # rows/frames
            for start in range(0, arr.shape[0], rows):
                slab = arr[start : start + rows]
                slab = (slab.real if slab.dtype.kind == "c" else slab).astype(dtype, copy=False)
                mrc.data[start : start + rows] = slab
                stats.add(slab)
            if arr.ndim == 3 and stack:
                mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size)
            if origin is not None:
                mrc.header.origin = origin
            stats.write(mrc.header)
    return path


_SLAB_BYTES = 4 * 2**20  # input bytes converted and summed at a time (float64 temporaries: 8×)


class _SlabStats:
    """Min, max, mean and population std (MRC's dmin/dmax/dmean/rms) over slabs, in float64
    with Chan et al.'s pairwise update of the sum of squared deviations (min/max skip NaN;
    mean and rms become NaN, as mrcfile's own statistics do)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, slab: np.ndarray) -> None:
        if not slab.size:
            return
        x = slab.astype(np.float64, copy=False) if slab.dtype.itemsize < 8 else slab
        n, mean = slab.size, float(x.mean(dtype=np.float64))
        m2 = float(np.square(x - mean, dtype=np.float64).sum())
        delta, total = mean - self.mean, self.n + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        with warnings.catch_warnings():  # an all-NaN slab: no min, the others still count
            warnings.simplefilter("ignore", RuntimeWarning)
            self.lo = float(np.fmin(self.lo, np.nanmin(x)))
            self.hi = float(np.fmax(self.hi, np.nanmax(x)))

    def write(self, header) -> None:
        if not self.n:
            return
        header.dmin, header.dmax = np.float32(self.lo), np.float32(self.hi)
        header.dmean = np.float32(self.mean)
        header.rms = np.float32(np.sqrt(self.m2 / self.n))


def _pixel_stats(sample: np.ndarray, step: int) -> dict[str, Any]:
    """min, max, mean, std of the finite pixels (no numpy warning on NaN/Inf: issue 16)."""
    finite = np.isfinite(sample)
    values = sample[finite]
    stats: dict[str, float | None] = {"min": None, "max": None, "mean": None, "std": None}
    if values.size:
        stats = {"min": float(values.min()), "max": float(values.max()),
                 "mean": float(values.mean()), "std": float(values.std())}  # fmt: skip
    return {**stats, "finite": bool(finite.all()), "nonfinite": int(finite.size - values.size),
            "sampled_every": step}  # fmt: skip


def mrc_summary(path: str | Path) -> dict:
    """Header facts and pixel statistics of an MRC file, for ``draco info``."""
    mrc = read_mrc(path, mmap=True, complex_ok=True)
    data = mrc.data
    # Statistics on at most ~16 M pixels (a strided sample) so info stays fast on big stacks.
    step = max(1, int(np.ceil((data.size / 16e6) ** (1 / data.ndim))))
    sample = np.asarray(data[(slice(None, None, step),) * data.ndim])
    sample = np.abs(sample) if sample.dtype.kind == "c" else sample  # a transform: its modulus
    sample = sample.astype(np.float64, copy=False)
    kind = "image" if data.ndim == 2 else ("stack" if mrc.is_stack else "volume")
    out: dict[str, Any] = {
        "format": "mrc",
        "kind": kind,
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "mode": mrc.mode,
        "voxel_size": list(mrc.voxel_size),
        "pixel_size": mrc.pixel_size,
        "origin": list(mrc.origin),
        "nstart": list(mrc.nstart),
        "n_frames": int(data.shape[0]) if data.ndim == 3 and mrc.is_stack else None,
        "stats": _pixel_stats(sample, step),
        "notes": list(mrc.notes),
    }
    if out["stats"]["nonfinite"]:  # the one check every command applies (io.validate)
        out["notes"].append(
            f"{out['stats']['nonfinite']} NaN/Inf pixels (sampled): draco commands refuse it"
        )
    elif out["stats"]["std"] == 0 and step == 1:  # io.validate's other check
        out["notes"].append("every pixel has one value (zero variance): draco commands refuse it")
    if mrc.mode in COMPLEX_MODES:
        out["notes"].append("complex values (a Fourier transform; stats of the modulus): "
                            "draco commands refuse it")  # fmt: skip
    # draco simulate's 1.0 Å is what was simulated: no command flags it, nor does info
    if mrc.pixel_size_is_placeholder and header_pixel_size_state(path) is not None:
        out["notes"].append(
            f"header pixel size is {mrc.voxel_size[0]:g}, which is often a placeholder; "
            "commands that read it take --pixel-size to override it"
        )
    del data, mrc
    return out
