"""One input → one training triplet (full, even, odd sums) on disk and its manifest row.

Odd and even follow MotionCor2's ``_ODD``/``_EVN`` (and ``draco simulate``): counting frames
from 1, the odd sum holds frames 1, 3, 5, … (0-based 0, 2, 4, …) and the even sum frames
2, 4, … (0-based 1, 3, …). The full sum is ``odd + even`` exactly (float32), unless the full
sum is dose-weighted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale
from draco_em.imaging.normalize import clip_stats
from draco_em.io import manifest
from draco_em.io.atomic import write_text_atomic
from draco_em.io.manifest import stats_columns
from draco_em.io.mrc import read_micrograph, write_mrc
from draco_em.io.pixel_size import require_pixel_size
from draco_em.io.validate import validate_image
from draco_em.prepare import motion
from draco_em.prepare.config import PrepareConfig, resolved_optics
from draco_em.prepare.frames import ReaderCache, load_movie_frames

ItemKind = Literal["movie", "pair", "single"]


@dataclass
class PrepareItem:
    """One unit of work: a movie, a micrograph with odd/even halves, or a lone micrograph.

    Attributes:
        name: output stem (``<name>.mrc``, ``<name>_EVN.mrc``, ``<name>_ODD.mrc``).
        kind: ``movie``, ``pair`` (motion-corrected halves given) or ``single`` (no halves).
        movie: the movie file (kind ``movie``).
        full, even, odd: micrograph files (``full`` may be None for a pair: odd + even).
        pixel_size: Å per pixel from a STAR file, used when the header has none.
        optics: voltage, spherical_aberration, amplitude_contrast from the STAR's optics
            group (:data:`~draco_em.io.star.OPTICS_COLUMNS`), where it gives them.
    """

    name: str
    kind: ItemKind
    movie: Path | None = None
    full: Path | None = None
    even: Path | None = None
    odd: Path | None = None
    pixel_size: float | None = None
    optics: dict[str, float] = field(default_factory=dict)

    @property
    def sources(self) -> list[Path]:
        return [p for p in (self.movie, self.full, self.even, self.odd) if p is not None]


def output_paths(outdir: Path, name: str) -> dict[str, Path]:
    """Where an item's files go (names relative to ``outdir`` go into the manifest)."""
    return {
        "full": outdir / f"{name}.mrc",
        "even": outdir / f"{name}_EVN.mrc",
        "odd": outdir / f"{name}_ODD.mrc",
        "motion": outdir / "motion" / f"{name}.csv",
    }


def _write(
    path: Path, image: np.ndarray, pixel_size: float, cfg: PrepareConfig, inputs: list[Path]
) -> None:
    write_mrc(path, image, pixel_size, float16=cfg.float16, inputs=inputs)


def _stats_columns(suffix: str, image: np.ndarray) -> dict[str, float]:
    """DRACO contrast-clipped mean/std (``imaging.normalize.clip_stats``) of one image."""
    return stats_columns(clip_stats(np.asarray(image, np.float32)), suffix)


def write_triplet(
    item: PrepareItem,
    cfg: PrepareConfig,
    full: np.ndarray,
    halves: tuple[np.ndarray, np.ndarray] | None,
    pixel_size: float,
) -> dict[str, object]:
    """Write ``full`` (and the odd/even halves) and return the manifest columns they give.

    Statistics are computed on what is written (float16 rounding included).

    Raises:
        DracoInputError: a sum with NaN/Inf pixels (float16 overflow) or constant (an all-zero
            movie), as every stage refuses a micrograph (``io.validate.validate_image``):
            checked before anything is written.
    """
    paths = output_paths(cfg.outdir, item.name)
    dtype = np.float16 if cfg.float16 else np.float32
    full = np.asarray(full).astype(dtype)
    validate_image(full, item.sources[0], "the full sum")
    row: dict[str, object] = {
        manifest.FULL: paths["full"].name,
        "dracoSizeX": int(full.shape[1]),
        "dracoSizeY": int(full.shape[0]),
        **_stats_columns("", full),
    }
    if halves is not None:
        odd, even = (np.asarray(h).astype(dtype) for h in halves)
        validate_image(odd, item.sources[0], "the odd half sum")
        validate_image(even, item.sources[0], "the even half sum")
        _write(paths["odd"], odd, pixel_size, cfg, item.sources)
        _write(paths["even"], even, pixel_size, cfg, item.sources)
        row.update({manifest.ODD: paths["odd"].name, manifest.EVEN: paths["even"].name})
        row.update(_stats_columns("Odd", odd) | _stats_columns("Even", even))
    _write(paths["full"], full, pixel_size, cfg, item.sources)
    row[manifest.HAS_PAIRS] = int(halves is not None)
    row["_pixel_size"] = pixel_size
    return row


def prepare_movie(
    item: PrepareItem, cfg: PrepareConfig, reader: ReaderCache, target: float | None
) -> dict[str, object]:
    """Align one movie, sum odd/even/full with the same trajectory, write them and the CSV."""
    assert item.movie is not None
    loaded = load_movie_frames(item.movie, cfg, reader, target, item.pixel_size)
    frames, px = loaded.frames, loaded.pixel_size
    shifts = motion.estimate_global_shifts(frames, px, bfactor=cfg.bfactor, max_size=cfg.align_size)
    to_undo: np.ndarray | None = shifts
    if cfg.patch_grid != (1, 1):  # local motion needs the globally aligned frames themselves
        motion.apply_global_shifts(frames, shifts)
        field = motion.estimate_local_motion(frames, cfg.patch_grid, px, cfg.patch_bfactor)
        frames, to_undo = motion.apply_local_motion(frames, field), None
    weights = None
    if cfg.dose_weighting and cfg.dose_per_frame is not None:  # the config checks both
        shape = (int(frames.shape[1]), int(frames.shape[2]))
        voltage = resolved_optics(cfg, item.optics)[0]
        weights = motion.dose_weights(len(frames), shape, px, cfg.dose_per_frame, voltage)
    # One trajectory for all frames, then split: the two halves differ only by their noise.
    odd, even, weighted = motion.parity_sums(frames, to_undo, weights)
    full = odd + even if weighted is None else weighted
    del frames
    row = write_triplet(item, cfg, full, (odd, even), px)
    movie_shifts = shifts * px / loaded.movie_pixel_size  # CSV: pixels of the movie
    _write_motion_csv(output_paths(cfg.outdir, item.name)["motion"], movie_shifts)
    stats = motion.motion_stats(movie_shifts, loaded.movie_pixel_size)
    n = len(shifts)
    row.update(
        rlnMicrographMovieName=os.path.abspath(str(item.movie)),  # written as draco names files
        dracoFrames=n,
        dracoTotalShift=stats.total_shift,
        rlnAccumMotionTotal=stats.total_shift,  # RELION's name: curate reads it
        dracoMaxFrameJump=stats.max_frame_jump,
        dracoMotionFile=f"motion/{item.name}.csv",
        _original_pixel_size=loaded.movie_pixel_size,
    )
    if cfg.dose_per_frame is not None:
        row.update(dracoDosePerFrame=cfg.dose_per_frame, dracoTotalDose=cfg.dose_per_frame * n)
    row["_notes"] = loaded.notes
    return row


def _write_motion_csv(path: Path, shifts: np.ndarray) -> None:
    """``frame,shift_x,shift_y`` in movie pixels, the schema of ``draco simulate``'s truth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["frame,shift_x,shift_y"]
    lines += [f"{i},{x:.4f},{y:.4f}" for i, (x, y) in enumerate(np.asarray(shifts))]
    write_text_atomic(path, "\n".join(lines) + "\n")


def prepare_micrographs(
    item: PrepareItem, cfg: PrepareConfig, target: float | None
) -> dict[str, object]:
    """Fourier-crop motion-corrected micrographs (with or without halves) and write them.

    Raises:
        DracoInputError: one half without the other, unreadable files, shapes that differ.
    """
    if item.kind == "pair" and (item.even is None) != (item.odd is None):
        have = "even" if item.even is not None else "odd"
        raise DracoInputError(f"found the {have} half but not the other one", item.sources[0])
    images: dict[str, np.ndarray] = {}
    header_px: float | None = None
    for key in ("full", "even", "odd"):
        path = getattr(item, key)
        if path is not None:
            images[key], px = read_micrograph(path, pixel_size=cfg.pixel_size)
            header_px = header_px or px
    px = require_pixel_size("prepare", item.sources[0], cfg.pixel_size, item.pixel_size, header_px)
    shapes = {k: v.shape for k, v in images.items()}
    if len(set(shapes.values())) > 1:
        raise DracoInputError(f"full/even/odd shapes differ: {shapes}", item.sources[0])
    if "full" not in images:
        images["full"] = images["odd"] + images["even"]
    out_px = px
    if target is not None and target > px:
        for key, image in images.items():
            images[key], out_px = fourier_rescale(image, px, target)
    halves = (images["odd"], images["even"]) if item.kind == "pair" else None
    row = write_triplet(item, cfg, images["full"], halves, out_px)
    row.update(_original_pixel_size=px, _notes=[])
    if item.kind == "pair":
        row["dracoSourceEven"] = os.path.abspath(str(item.even))
        row["dracoSourceOdd"] = os.path.abspath(str(item.odd))
    return row


def prepare_item(
    item: PrepareItem, cfg: PrepareConfig, reader: ReaderCache, target: float | None
) -> dict[str, object]:
    """Dispatch one item; returns its manifest row (private keys start with ``_``)."""
    with torch.no_grad():
        if item.kind == "movie":
            return prepare_movie(item, cfg, reader, target)
        return prepare_micrographs(item, cfg, target)
