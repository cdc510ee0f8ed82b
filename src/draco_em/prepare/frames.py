"""Read one movie into memory as gain-corrected, Fourier-cropped frames.

Memory is bounded by one movie: the raw frames (in their stored dtype) while the hot-pixel sum
is formed, then the corrected frames at the working pixel size as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale, rescaled_shape
from draco_em.io.gain import GainReference, apply_gain, find_hot_pixels, load_gain
from draco_em.io.movie_base import check_frame_shape
from draco_em.io.movies import open_movie
from draco_em.io.pixel_size import require_pixel_size
from draco_em.prepare.config import PrepareConfig


@dataclass
class MovieFrames:
    """A movie's corrected frames and what is known about them.

    Attributes:
        frames: float32 [t, H, W] gain-corrected frames at ``pixel_size``.
        movie_pixel_size: Å per pixel of the movie as stored (after EER upsampling).
        pixel_size: Å per pixel of ``frames`` (after the Fourier crop; exact, see
            :func:`draco_em.imaging.fourier.fourier_rescale`).
        notes: things worth telling the user (from the reader, the gain, the crop).
    """

    frames: torch.Tensor
    movie_pixel_size: float
    pixel_size: float
    notes: list[str] = field(default_factory=list)


def gain_is_divisor(gain: Path | None, eer: bool) -> bool:
    """Whether ``--gain`` divides an EER movie's counts, as RELION reads it.

    RELION (``EERRenderer::loadEERGain``: "The gain reference for EER is not multiplicative!")
    inverts every EER gain reference except EPU's ``.gain`` files (Falcon 4i), as
    ``mean / gain``; a gain for MRC or TIFF movies is multiplicative (docs/movies.md).
    """
    return eer and gain is not None and gain.suffix.lower() != ".gain"


class ReaderCache:
    """What one worker process keeps from movie to movie.

    * The gain reference: loaded once (as a factor, and inverted for EER movies where RELION
      inverts it: :func:`gain_is_divisor`), fitted to each frame shape.
    * The memory of the last frame stack, handed to the next movie of the same size or
      smaller. A fresh stack (0.67 GB for 40 frames of 2048², 3.8 GB for 40 uncropped K3 frames) is
      page-faulted in by the kernel on first touch, ~15 % of a 2048² movie's time on 2 cores
      (docs/prepare.md). A movie's frames live only while it is prepared (``prepare_movie``),
      so the next one may overwrite them.
    """

    def __init__(self, config: PrepareConfig) -> None:
        self.config = config
        self._refs: dict[bool, GainReference] = {}  # divisor? → the loaded reference
        self._stack: torch.Tensor | None = None

    def gain_for_shape(
        self, shape: tuple[int, int], movie_path: Path, divisor: bool = False
    ) -> GainReference:
        """The gain for frames of ``shape``; ``divisor``: invert it first (EER, as RELION)."""
        cfg = self.config
        if cfg.gain is None:
            return GainReference.unit(shape)
        if divisor not in self._refs:
            self._refs[divisor] = load_gain(
                cfg.gain, cfg.gain_rotate, cfg.gain_flip, invert=divisor
            )
        return self._refs[divisor].fit_to(shape, movie_path)

    def frame_stack(self, n: int, shape: tuple[int, int]) -> torch.Tensor:
        """float32 [n, H, W] on the CPU, uninitialised, in the reused memory where it fits."""
        need = n * shape[0] * shape[1]
        if self._stack is None or self._stack.numel() < need:
            self._stack = None  # release the old one before the new one is allocated
            self._stack = torch.empty(need, dtype=torch.float32)
        return self._stack[:need].view(n, *shape)


def _resolve_pixel_size(
    override: float | None, star: float | None, header: float | None, path: Path
) -> float:
    return require_pixel_size("prepare", path, override, star, header)  # io.pixel_size order


def load_movie_frames(
    path: Path,
    config: PrepareConfig,
    reader: ReaderCache,
    target_pixel_size: float | None,
    star_pixel_size: float | None = None,
) -> MovieFrames:
    """Read, gain-correct (with hot-pixel replacement) and Fourier-crop every frame.

    Args:
        path: the movie.
        config: gain orientation, EER options, pixel-size override, device.
        reader: the process's reader cache (gain reference, reused frame memory).
        target_pixel_size: Å; frames are Fourier-cropped when it is coarser than the movie's.
        star_pixel_size: pixel size given by a movies STAR (of the movie as rendered, as
            RELION reads it), used ahead of the header when there is no ``--pixel-size``.

    Raises:
        DracoInputError: unreadable movie, fewer than 2 frames, no pixel size, gain mismatch.
    """
    with open_movie(
        path,
        eer_grouping=config.eer_grouping,
        eer_upsampling=config.eer_upsampling,
        pixel_size=config.pixel_size,
        decode_threads=torch.get_num_threads(),  # this worker's share of the cores
    ) as movie:
        if movie.n_frames < 2:
            raise DracoInputError(f"a movie needs >= 2 frames, found {movie.n_frames}", path)
        # The reader applied --pixel-size (for EER the physical pixel, divided by the
        # upsampling): movie.pixel_size is then the override on the rendered grid.
        given = movie.pixel_size if config.pixel_size is not None else None
        movie_px = _resolve_pixel_size(given, star_pixel_size, movie.pixel_size, path)
        notes = list(movie.notes)
        divisor = gain_is_divisor(config.gain, movie.is_eer)
        if divisor:  # kept in meta/<name>.json
            notes.append("EER: the gain reference divides the counts (mean / gain), as RELION "
                         "reads any but EPU's .gain")  # fmt: skip
        raw = [movie.frame(i, as_stored=True) for i in range(movie.n_frames)]
    gain = reader.gain_for_shape(raw[0].shape, path, divisor)
    if config.hot_pixels:
        total = np.zeros(raw[0].shape, np.float64)
        for frame in raw:  # in place: np.sum of the list would stack a copy of the movie
            total += frame
        total *= gain.gain
        gain = gain.with_defects(find_hot_pixels(np.where(gain.defects, np.nan, total)))
    out_shape, px = raw[0].shape, movie_px
    if target_pixel_size is not None and target_pixel_size > movie_px:
        out_shape = rescaled_shape(raw[0].shape, movie_px, target_pixel_size)
        where = f" at the target pixel size {target_pixel_size:g} Å (the movie's: {movie_px:g} Å)"
        check_frame_shape(out_shape, path, where)  # motion estimation runs on these
    elif target_pixel_size is not None and target_pixel_size < movie_px:
        notes.append(
            f"target pixel size {target_pixel_size:g} Å is finer than the movie's "
            f"{movie_px:g} Å: not upsampled"
        )
    frames = reader.frame_stack(len(raw), out_shape)
    stack = frames.numpy()  # the same memory: frames at full size are corrected in place
    crop_to = target_pixel_size if out_shape != raw[0].shape else None
    scratch = np.empty(raw[0].shape, np.float32) if crop_to is not None else None
    for i in range(len(raw)):
        if crop_to is None:
            apply_gain(raw[i], gain, out=stack[i])
        else:
            corrected = apply_gain(raw[i], gain, out=scratch)
            stack[i], px = fourier_rescale(corrected, movie_px, crop_to)
        raw[i] = None  # type: ignore[call-overload]  # release the raw frame as we go
    return MovieFrames(frames.to(config.device), movie_px, px, notes + gain.notes)
