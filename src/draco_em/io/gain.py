"""Gain references (MRC or TIFF): rotate/flip as RELION and MotionCor2 do, defects, application.

Conventions (arrays are [ny, nx], row = y, as mrcfile and tifffile return them):

* The gain is **multiplicative**: ``corrected = raw_counts * gain`` (RELION, MotionCor2).
  Thermo Fisher's EER references other than EPU's ``.gain`` TIFFs are divisors; RELION inverts
  them (``gain = mean / gain``), which ``load_gain(..., invert=True)`` reproduces.
* ``rotate=N`` is RELION's ``--gain_rot N`` = MotionCor2's ``-RotGain N``: N × 90° clockwise as
  shown with row 0 at the top (relion_display), i.e. ``np.rot90(gain, -N)``; viewed with y up
  (IMOD's 3dmod, the MRC convention) the same rotation looks counter-clockwise.
* ``flip='y'`` is RELION ``--gain_flip 1`` / MotionCor2 ``-FlipGain 1`` (upside down, rows
  reversed); ``flip='x'`` is ``--gain_flip 2`` / ``-FlipGain 2`` (left-right). Rotation first,
  then flip, in RELION's order (``MotioncorrRunner::prepareGainReference``).
* Defects: gain pixels that are 0, negative, NaN or Inf, plus hot pixels (found in a movie sum
  or given). Defect pixels of a gain-corrected frame are replaced by a Poisson draw at the mean
  of their good neighbours (see :func:`replace_defects` for why).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.movie_base import Movie
from draco_em.io.mrc import read_mrc

FLIPS = (None, "x", "y")
#: Half-width in pixels of the window whose good pixels give a defect's replacement mean.
DEFECT_WINDOW = 2


@dataclass
class GainReference:
    """A gain reference oriented to the movie frames.

    Attributes:
        gain: float32 [ny, nx] multiplicative gain; 0 at defect pixels.
        defects: bool [ny, nx], True at pixels whose corrected value must be replaced.
        path: the file it came from (None for a unit gain).
        rotate, flip: the orientation applied, RELION's meaning (module docstring).
        notes: what was done (upsampling, defect counts, inversion).
    """

    gain: np.ndarray
    defects: np.ndarray
    path: Path | None = None
    rotate: int = 0
    flip: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.gain.shape[0]), int(self.gain.shape[1]))

    @cached_property
    def defect_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) of the defect pixels, found once per reference, not once per frame."""
        ys, xs = np.nonzero(self.defects)
        return ys, xs

    @classmethod
    def unit(cls, shape: tuple[int, int]) -> GainReference:
        """A gain of 1 everywhere (movies already gain-corrected), for hot-pixel handling."""
        return cls(np.ones(shape, np.float32), np.zeros(shape, bool))

    def with_defects(self, mask: np.ndarray, reason: str = "hot") -> GainReference:
        """A copy with ``mask`` (bool [ny, nx]) added to the defects."""
        mask = np.asarray(mask, bool)
        if mask.shape != self.shape:
            raise ValueError(f"defect mask shape {mask.shape} != gain shape {self.shape}")
        new = mask & ~self.defects
        gain = np.where(mask, 0.0, self.gain).astype(np.float32)
        notes = [*self.notes, f"{int(new.sum())} {reason} pixels added as defects"]
        return replace(self, gain=gain, defects=self.defects | mask, notes=notes)

    def fit_to(self, shape: tuple[int, int], movie_path: str | Path | None = None) -> GainReference:
        """Return the gain matched to frames of ``shape`` (ny, nx), or raise a clear error.

        A movie exactly 2× or 4× the gain on both axes (EER super-resolution with a physical
        gain) gets the gain replicated over each physical pixel's sub-pixels, as RELION does.

        Raises:
            DracoInputError: naming both files; it says when a 90° rotation would match.
        """
        shape = (int(shape[0]), int(shape[1]))
        if shape == self.shape:
            return self
        gy, gx = self.shape
        for k in (2, 4):
            if shape == (gy * k, gx * k):
                note = f"gain {self.shape} replicated {k}×{k} to the super-resolution frames"
                return replace(
                    self,
                    gain=_replicate(self.gain, k),
                    defects=_replicate(self.defects, k),
                    notes=[*self.notes, note],
                )
        hint = ""
        if shape == (gx, gy):
            other = "1 or 3" if self.rotate % 2 == 0 else "0 or 2"
            hint = f"; the transposed gain would match: try rotate={other} (--gain-rotate)"
        what = f"movie {movie_path}" if movie_path else "the movie"
        raise DracoInputError(
            f"gain reference has shape {self.shape} (rotate={self.rotate}, flip={self.flip}) "
            f"but {what} has frames of shape {shape}{hint}",
            self.path,
        )


def _replicate(image: np.ndarray, k: int) -> np.ndarray:
    """Each pixel repeated k×k times: [ny, nx] -> [k ny, k nx]."""
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def orient(image: np.ndarray, rotate: int = 0, flip: str | None = None) -> np.ndarray:
    """Apply RELION's ``--gain_rot`` then ``--gain_flip`` to a [ny, nx] array (module docstring)."""
    if rotate not in (0, 1, 2, 3):
        raise ValueError(f"rotate must be 0, 1, 2 or 3 (× 90°), got {rotate!r}")
    if flip not in FLIPS:
        raise ValueError(f"flip must be None, 'x' or 'y', got {flip!r}")
    out = np.rot90(image, -rotate)  # RELION ImageOp::rotate90: dest[x, ny-1-y] = src[y, x]
    if flip == "y":
        out = out[::-1, :]
    elif flip == "x":
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _read_gain_array(path: Path) -> np.ndarray:
    """The first 2D image of an MRC or TIFF (``.tif``, ``.tiff``, EPU's ``.gain``) file.

    A ``.tif``/``.tiff`` gain is flipped along the slow axis, as TIFF movies are (RELION reads
    every TIFF so: docs/movies.md); EPU's ``.gain``, the
    reference of EER movies, is not, as EER frames are not (RELION undoes its TIFF flip there).
    """
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff", ".gain"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                data = tif.pages.first.asarray()
        except Exception as exc:
            raise DracoInputError(f"not a readable TIFF gain reference ({exc})", path) from exc
        if data.ndim != 2:
            raise DracoInputError(f"gain reference must be 2D, found shape {data.shape}", path)
        return data if suffix == ".gain" else data[::-1]
    return read_mrc(path, ndim=(2,)).data


def load_gain(
    path: str | Path,
    rotate: int = 0,
    flip: str | None = None,
    shape: tuple[int, int] | None = None,
    *,
    invert: bool = False,
    movie_path: str | Path | None = None,
) -> GainReference:
    """Read a gain reference, orient it and mark its defects.

    Args:
        path: MRC, TIFF or EPU ``.gain`` file holding one 2D image.
        rotate: N × 90°, RELION ``--gain_rot`` / MotionCor2 ``-RotGain`` (module docstring).
        flip: None, ``'y'`` (``--gain_flip 1``) or ``'x'`` (``--gain_flip 2``).
        shape: the movie's frame shape (ny, nx); checked with :meth:`GainReference.fit_to`.
        invert: the file is a divisor (old-style EER references): use ``mean / gain``.
        movie_path: named in the shape-mismatch message.

    Raises:
        DracoInputError: missing/corrupt file, not 2D, no usable pixel, shape mismatch.
    """
    path = Path(path)
    if not path.exists():
        raise DracoInputError("gain reference not found", path)
    if rotate not in (0, 1, 2, 3) or flip not in FLIPS:
        raise DracoInputError(f"invalid gain orientation rotate={rotate!r} flip={flip!r}", path)
    raw = np.asarray(_read_gain_array(path), dtype=np.float64)
    defects = ~np.isfinite(raw) | (raw <= 0)
    if defects.all():
        raise DracoInputError("gain reference has no positive finite pixel", path)
    gain = np.where(defects, 0.0, raw)
    notes = []
    if invert:
        gain = np.where(defects, 0.0, gain[~defects].mean() / np.where(defects, 1.0, gain))
        notes.append("gain inverted (mean / gain): the file is a divisor")
    if defects.any():
        notes.append(f"{int(defects.sum())} gain pixels are 0, negative, NaN or Inf: defects")
    ref = GainReference(
        gain=orient(gain.astype(np.float32), rotate, flip),
        defects=orient(defects, rotate, flip),
        path=path,
        rotate=rotate,
        flip=flip,
        notes=notes,
    )
    return ref if shape is None else ref.fit_to(shape, movie_path)


def find_hot_pixels(total: np.ndarray, n_mad: float = 20.0) -> np.ndarray:
    """Hot pixels of a movie sum: above ``median + n_mad × scale``.

    ``scale`` is the MAD (scaled by 1.4826 to a Gaussian σ), floored at the Poisson σ
    ``sqrt(median)`` and at 1 count, so a low-dose sum whose MAD is 0 flags nothing but outliers.

    Args:
        total: float [ny, nx] sum of (gain-corrected) frames in counts.
        n_mad: threshold in robust standard deviations.

    Returns:
        bool [ny, nx], True at hot pixels.
    """
    total = np.asarray(total, np.float64)
    finite = np.isfinite(total)
    median = float(np.median(total[finite]))
    mad = float(np.median(np.abs(total[finite] - median))) * 1.4826
    scale = max(mad, np.sqrt(max(median, 0.0)), 1.0)
    return finite & (total > median + n_mad * scale) | ~finite


def replace_defects(
    frame: np.ndarray,
    defects: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    index: tuple[np.ndarray, np.ndarray] | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Replace defect pixels by a Poisson draw at the mean of their good neighbours.

    Why a Poisson draw rather than the neighbours' median or an interpolation:
    DRACO trains on odd/even frame sums as a Noise2Noise pair (paper Eq. 5-7), which needs the
    noise of every pixel to be independent between the two sums and across neighbours. A copied
    or median value repeats a neighbour's noise (spatially correlated, and a denoiser learns to
    copy it); an independent draw at the local mean keeps the shot-noise statistics of a real
    pixel. Where the local mean is negative (non-count data) the mean itself is used.

    Args:
        frame: float32 [ny, nx] gain-corrected frame.
        defects: bool [ny, nx].
        rng: random generator; default: seeded from the frame's bytes, so the result is
            reproducible yet differs between frames (independent odd/even noise).
        index: ``np.nonzero(defects)`` when the caller has it already
            (:attr:`GainReference.defect_index`: a movie's frames share one).
        copy: False to replace in place when ``frame`` is already a float32 array the caller
            owns (no 4k² copy per frame).

    Returns:
        float32 [ny, nx]: a modified copy, or ``frame`` itself with ``copy=False``.
    """
    out = np.array(frame, dtype=np.float32, copy=copy or None)
    ys, xs = np.nonzero(defects) if index is None else index
    if ys.size == 0:
        return out
    if rng is None:  # hash the bytes where they are: no copy of the frame
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(out).data.cast("B")))
    ny, nx = out.shape
    total = np.zeros(ys.size)
    count = np.zeros(ys.size)
    for dy in range(-DEFECT_WINDOW, DEFECT_WINDOW + 1):
        for dx in range(-DEFECT_WINDOW, DEFECT_WINDOW + 1):
            yy, xx = ys + dy, xs + dx
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            yy, xx = np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)
            good = inside & ~defects[yy, xx]
            total += np.where(good, out[yy, xx], 0.0)
            count += good
    lam = total / np.maximum(count, 1)
    if (count == 0).any():  # the frame's mean over good pixels, only where a window has none
        good_all = ~defects
        lam[count == 0] = float(out[good_all].mean()) if good_all.any() else 0.0
    out[ys, xs] = np.where(lam >= 0, rng.poisson(np.maximum(lam, 0.0)), lam)
    return out


def apply_gain(
    frame: np.ndarray,
    gain: GainReference,
    rng: np.random.Generator | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gain-correct one frame: ``frame * gain``, then replace the defect pixels.

    Args:
        frame: [ny, nx] raw counts (any numeric dtype).
        gain: a :class:`GainReference` of the same shape (see :meth:`GainReference.fit_to`).
        rng: passed to :func:`replace_defects`.
        out: float32 [ny, nx] to write into (e.g. a slot of the movie's frame stack); a fresh
            4k² array per frame costs more in page faults than the multiplication itself.

    Returns:
        float32 [ny, nx] (``out`` when given).
    """
    frame = np.asarray(frame)
    if frame.shape != gain.shape:
        raise DracoInputError(
            f"gain reference shape {gain.shape} does not match frame shape {frame.shape}",
            gain.path,
        )
    corrected = np.multiply(frame, gain.gain, out=out, dtype=np.float32)
    return replace_defects(corrected, gain.defects, rng, index=gain.defect_index, copy=False)


def gain_for_movie(
    movie: Movie,
    path: str | Path | None = None,
    rotate: int = 0,
    flip: str | None = None,
    *,
    invert: bool = False,
    hot_pixels: bool = True,
    n_mad: float = 20.0,
) -> GainReference:
    """The gain for one movie: load and fit it (or a unit gain), then add its hot pixels.

    Hot-pixel detection reads every frame once more (one frame in memory at a time).
    """
    if path is None:
        ref = GainReference.unit(movie.shape)
    else:
        ref = load_gain(path, rotate, flip, movie.shape, invert=invert, movie_path=movie.path)
    if hot_pixels:
        total = movie.sum() * ref.gain
        ref = ref.with_defects(find_hot_pixels(np.where(ref.defects, np.nan, total), n_mad))
    return ref
