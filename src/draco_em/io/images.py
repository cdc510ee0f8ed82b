"""Micrographs stored as ordinary pictures: 8/16-bit PNG, JPEG and single-image TIFF.

Many public data sets (EMPIAR renderings, MicAssess, CryoPPP) ship micrographs this way. They
are read here and nowhere else; :func:`draco_em.io.mrc.read_image` dispatches to
:func:`read_raster` by suffix, so every stage that reads a 2D micrograph reads these too.

- Output is ``[ny, nx]`` float32, rows = y, the stored grey levels unchanged: 16-bit values
  keep their precision. For PNG and JPEG the first row of the file is row 0 (as mrcfile gives
  an MRC); a TIFF is flipped along the slow axis, its last row first, as RELION, MotionCor2
  and IMOD read every TIFF (TIFF movies too: docs/movies.md, "TIFF orientation").
- RGB(A) pictures are converted to grey with the ITU-R 601 luma weights (a JPEG of a grey
  image saved as RGB differs between channels by its chroma compression, so exact channel
  equality cannot be required); a picture in colour (an overlay, a colour map) is refused.
  An alpha channel must be fully opaque: transparent pixels have no intensity. A PNG of 16
  bits per colour channel is refused: Pillow would keep only the high byte of each.
- A TIFF with several pages (a movie) where one image is expected is an error;
  :func:`read_raster_stack` reads a grey multi-page TIFF (a tomogram or tilt series, z first)
  for ``draco denoise``, which treats it section by section.
- These files carry no pixel size a cryo-EM tool can trust (DPI is a display setting), so the
  caller must pass one (``--pixel-size``); :func:`require_pixel_size` says so in one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError, first_line

#: Suffixes read by :func:`read_raster` (lower case).
PNG_JPEG_SUFFIXES = (".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = PNG_JPEG_SUFFIXES + TIFF_SUFFIXES
#: ITU-R BT.601 luma weights (what Pillow's ``convert("L")`` uses).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def is_raster(path: str | Path) -> bool:
    """True for a PNG, JPEG or TIFF file name (by suffix)."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def require_pixel_size(path: str | Path, pixel_size: float | None) -> float:
    """The pixel size for a picture file, or the one-line error asking for ``--pixel-size``."""
    if pixel_size is None:
        raise DracoInputError("PNG/JPEG/TIFF images carry no pixel size; pass --pixel-size", path)
    if not np.isfinite(pixel_size) or pixel_size <= 0:
        raise DracoInputError(f"pixel size override must be > 0 Å, got {pixel_size}", path)
    return float(pixel_size)


def read_raster(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG or single-image TIFF as a grey ``[ny, nx]`` float32 array.

    Raises:
        DracoInputError: missing or unreadable file, several frames, transparent pixels, or a
            shape that is not an image.
    """
    path = Path(path)
    if not path.exists():
        raise DracoInputError("file not found", path)
    if path.is_dir():
        raise DracoInputError("is a folder, expected an image file", path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        data = _read_tiff(path)
    else:
        data = _read_pillow(path)
    return _to_grey(data, path)


def read_raster_stack(path: str | Path) -> np.ndarray:
    """Read a picture file as ``[ny, nx]``, or a grey multi-page TIFF as ``[n, ny, nx]`` float32.

    The pages of a TIFF stack are sections in file order (z first, as ImageJ and tifffile write
    tomograms and tilt series).

    Raises:
        DracoInputError: as :func:`read_raster`, or pages that are not one grey shape.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return read_raster(path)
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) == 1:
                return read_raster(path)
            # tifffile reads only the first page series where sizes differ: say why instead.
            shapes = list(dict.fromkeys(tuple(page.shape) for page in tif.pages))
            if len(shapes) > 1:
                raise DracoInputError(
                    f"TIFF pages differ in size ({', '.join(map(str, shapes[:3]))}): the "
                    "sections of a stack need one shape",
                    path,
                )
            data = np.asarray(tif.asarray())
    except DracoInputError:
        raise
    except Exception as exc:
        raise DracoInputError(f"not a readable TIFF file ({first_line(exc)})", path) from exc
    if data.ndim != 3 or min(data.shape[1:]) < 2:
        raise DracoInputError(
            f"expected a grey TIFF stack [n, ny, nx], found shape {tuple(data.shape)}", path
        )
    return np.ascontiguousarray(data[:, ::-1], dtype=np.float32)  # rows as RELION reads TIFF


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            if n_pages != 1:
                raise DracoInputError(
                    f"TIFF holds {n_pages} frames; a single image was expected "
                    "(a movie: run `draco prepare` first)",
                    path,
                )
            page = tif.pages.first
            data = np.asarray(page.asarray())
            if data.ndim == 3 and page.planarconfig == 2 and data.shape[0] in (3, 4):
                data = np.moveaxis(data, 0, -1)  # RGB stored as separate planes
            # Rows reversed, as RELION, MotionCor2 and IMOD read every TIFF (TIFF movies
            # too: docs/movies.md, "TIFF orientation"), so that picks on a TIFF micrograph
            # and its MRC output line up with theirs.
            return data[::-1]
    except DracoInputError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, OSError, ...
        raise DracoInputError(f"not a readable TIFF file ({first_line(exc)})", path) from exc


def _png_16bit_colour(path: Path) -> bool:
    """Whether ``path`` is a PNG of 16 bits per channel in colour or with alpha (colour types
    2, 4, 6), which Pillow reads as 8 bits per channel, keeping the high byte alone: 1000-1300
    would come back as 3-5. A 16-bit grey PNG (type 0) Pillow reads whole."""
    with path.open("rb") as fh:
        head = fh.read(26)  # signature, IHDR length and tag, width, height, depth, colour type
    png = len(head) == 26 and head.startswith(b"\x89PNG\r\n\x1a\n")
    return png and head[24] == 16 and head[25] in (2, 4, 6)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        if _png_16bit_colour(path):
            raise DracoInputError(
                "a PNG of 16 bits per channel in colour or with alpha, which Pillow reads as "
                "8 bits (the low byte lost): save it as a 16-bit grey PNG or a TIFF",
                path,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: micrographs are large
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as opened:
                n_frames = int(getattr(opened, "n_frames", 1))
                if n_frames != 1:
                    raise DracoInputError(
                        f"image holds {n_frames} frames; a single image was expected", path
                    )
                im: Image.Image = opened
                if im.mode == "P":  # palette: look the colours up
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB" if im.mode != "1" else "L")
                return np.asarray(im)
    except DracoInputError:
        raise
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), ...
        raise DracoInputError(f"not a readable image ({first_line(exc)})", path) from exc


#: A picture is in colour when more than this fraction of its pixels have channels apart by
#: more than COLOUR_SPREAD of the value range. A grey micrograph saved as RGB has none (its
#: JPEG chroma is near zero); a picks overlay (draco's previews: 4 % of pixels) or a
#: colour-mapped rendering has many.
COLOUR_FRACTION = 0.001
COLOUR_SPREAD = 0.19


def _refuse_colour(rgb: np.ndarray, path: Path) -> None:
    """Refuse a colour picture: its luma is not the micrograph's intensity (an overlay's
    circles, a colour map), so every stage would read something else than the specimen."""
    full = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else float(np.ptp(rgb)) or 1.0
    spread = rgb.max(axis=-1).astype(np.float64) - rgb.min(axis=-1)
    coloured = float(np.mean(spread > COLOUR_SPREAD * full))
    if coloured > COLOUR_FRACTION:
        raise DracoInputError(
            f"a colour picture ({coloured:.1%} of its pixels in colour: an overlay or a colour "
            "map?), not a grey micrograph: give the micrograph itself",
            path,
        )


def _to_grey(data: np.ndarray, path: Path) -> np.ndarray:
    """``[ny, nx]`` or ``[ny, nx, C]`` (C = 2 grey+alpha, 3 RGB, 4 RGBA) → ``[ny, nx]`` float32."""
    if data.ndim == 3 and data.shape[-1] in (2, 4):
        alpha = data[..., -1]
        opaque = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
        if np.any(alpha != opaque):
            raise DracoInputError(
                "image has transparent pixels (alpha channel); micrographs must be opaque", path
            )
        data = data[..., :-1]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] == 3:
        _refuse_colour(data, path)
        data = np.tensordot(data.astype(np.float64), LUMA, axes=([-1], [0]))
    if data.ndim != 2:
        raise DracoInputError(
            f"expected a grey or RGB image, found an array of shape {tuple(data.shape)}", path
        )
    if data.dtype.kind == "c" or data.dtype == bool:
        data = data.real if data.dtype.kind == "c" else data.astype(np.uint8)
    if min(data.shape) < 2:
        raise DracoInputError(f"image is {data.shape[1]}×{data.shape[0]} px", path)
    return np.ascontiguousarray(data, dtype=np.float32)


def raster_summary(path: str | Path) -> dict:
    """``draco info`` facts of a PNG/JPEG/TIFF micrograph (no pixel size: it carries none)."""
    path = Path(path)
    image = read_raster(path)
    stored = _stored_format(path)
    return {
        "format": stored,
        "shape": list(image.shape),
        "pixel_size": None,
        "stats": {
            "min": float(image.min()),
            "max": float(image.max()),
            "mean": float(image.mean(dtype=np.float64)),
            "std": float(image.std(dtype=np.float64)),
        },
        "notes": ["no pixel size stored: pass --pixel-size to every command"],
    }


def _stored_format(path: Path) -> str:
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return f"TIFF {page.dtype} {'x'.join(map(str, page.shape))}"
    from PIL import Image

    with Image.open(path) as im:
        return f"{im.format} mode {im.mode}"
