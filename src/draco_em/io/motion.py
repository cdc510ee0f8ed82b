"""Beam-induced motion trajectories on disk: the ``frame,shift_x,shift_y`` CSV and its summaries
(:func:`motion_stats` in Å for the pipeline, :func:`motion_summary` in pixels for ``draco info``).

One schema for the truth ``draco simulate`` writes (``motion/<name>.csv``) and the estimate
``draco prepare`` writes: shifts in pixels of the movie, frame 0 at (0, 0). The summary is in
Å, so that one threshold works across pixel sizes; ``total_shift`` is RELION's
``rlnAccumMotionTotal`` (the accumulated global motion over the whole movie).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError


@dataclass
class MotionStats:
    """Trajectory summary, in Å (physical, comparable across pixel sizes).

    Attributes:
        total_shift: length of the whole trajectory path, sum of frame-to-frame steps (Å);
            RELION's ``rlnAccumMotionTotal``.
        max_frame_jump: largest frame-to-frame step (Å).
    """

    total_shift: float
    max_frame_jump: float


def motion_stats(shifts: np.ndarray, pixel_size: float) -> MotionStats:
    """Trajectory statistics from ``shifts`` [t, 2] (x, y) in pixels of ``pixel_size`` Å."""
    steps = np.linalg.norm(np.diff(np.asarray(shifts, np.float64), axis=0), axis=1)
    if steps.size == 0:
        return MotionStats(0.0, 0.0)
    return MotionStats(float(steps.sum() * pixel_size), float(steps.max() * pixel_size))


def read_motion_csv(path: str | Path) -> np.ndarray:
    """[t, 2] (x, y) shifts in pixels from a ``frame,shift_x,shift_y`` CSV.

    Raises:
        DracoInputError: unreadable file or missing columns.
    """
    try:
        table = pd.read_csv(path).sort_values("frame")
        return table[["shift_x", "shift_y"]].to_numpy(np.float64)
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as exc:
        raise DracoInputError(f"not a frame,shift_x,shift_y motion CSV: {exc}", path) from exc


#: The columns of a motion CSV (what tells it from a Topaz coordinate table for ``draco info``).
MOTION_COLUMNS = ("frame", "shift_x", "shift_y")


def is_motion_csv(path: str | Path) -> bool:
    """Whether the CSV's header names the motion columns (:data:`MOTION_COLUMNS`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return set(MOTION_COLUMNS) <= set(header.strip().split(","))  # as read_motion_csv reads


def motion_summary(path: str | Path) -> dict:
    """Frames and total shift of a motion CSV, for ``draco info``.

    In pixels of the movie, as the file stores them: the CSV carries no pixel size (the
    movie's, in ``triplets.star`` or ``micrographs.star``, gives Å).

    Raises:
        DracoInputError: unreadable file, missing columns, or a shift that is not a number.
    """
    shifts = read_motion_csv(path)
    if not np.isfinite(shifts).all():
        raise DracoInputError("motion CSV holds a missing or non-finite shift", path)
    stats = motion_stats(shifts, 1.0)  # 1 px "per Å": the summary stays in pixels
    return {
        "format": "motion CSV (frame,shift_x,shift_y)",
        "kind": "motion trace",
        "frames": len(shifts),
        "total_shift_px": round(stats.total_shift, 4),
        "max_jump_px": round(stats.max_frame_jump, 4),  # the largest frame-to-frame step
        "final_shift_px": [round(float(v), 4) for v in shifts[-1]] if len(shifts) else None,
        "notes": ["shifts in the movie's pixels, frame 0 at (0, 0); total_shift: the length "
                  "of the path (RELION's rlnAccumMotionTotal, which is in Å)"],
    }  # fmt: skip
