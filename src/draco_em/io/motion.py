"""Beam-induced motion trajectories on disk: the ``frame,shift_x,shift_y`` CSV and its summary.

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
