"""The one pixel-size resolver: which value counts, what each stage does without one, one error.

A pixel size comes, in order of precedence, from the user's ``--pixel-size`` (applied once,
when the file is read: ``io/mrc.read_mrc(pixel_size=...)``, the movie readers), then the input
table the file came from (a RELION STAR's optics, a manifest row: what RELION itself reads;
``io.batch.pixel_sizes`` gives each input's), then the file's header. Headers often say 0 or
1.0 as a placeholder; 0 and other non-positive values count as unknown (a 1.0 header gets a
warning, ``io.batch.placeholder_pixel_size_warning``).

What a stage does when none is known, stated once (:data:`POLICY`):

=========  ==========  ==================================================================
stage      policy      why
=========  ==========  ==================================================================
denoise    optional    runs at the input's own sampling (no rescale to the model's)
curate     optional    same: tiles at the input sampling; spectrum features take 1 Å
pick       required    the particle diameter is in Å: the working sampling needs it
prepare    required    dose weighting, binning and the manifest are in Å
train      required    crops are chosen in Å and the model records its pixel size
=========  ==========  ==================================================================
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from draco_em.errors import DracoInputError
from draco_em.io.images import is_raster

Stage = Literal["denoise", "curate", "pick", "prepare", "train"]
#: Whether a stage needs a known pixel size (see the module doc).
POLICY: dict[str, bool] = {
    "denoise": False,
    "curate": False,
    "pick": True,
    "prepare": True,
    "train": True,
}
#: The one wording of the error (an MRC file's header says 0 or less) ...
UNKNOWN = "pixel size unknown (the header says 0 and no other source has one): pass --pixel-size Å"
#: ... and for a PNG/JPEG/TIFF picture, which has no such header (``io.images``).
UNKNOWN_PICTURE = (
    "pixel size unknown (PNG/JPEG/TIFF pictures carry none and no other source has one): "
    "pass --pixel-size Å"
)


def resolve_pixel_size(
    stage: Stage, where: str | Path | None, *candidates: float | None
) -> float | None:
    """The first known (finite, positive) pixel size of ``candidates``, in Å.

    Args:
        stage: the stage asking; its :data:`POLICY` says whether None is allowed.
        where: the file (or name) the pixel size is for, named in the error.
        candidates: values in order of precedence (override, header, table).

    Raises:
        DracoInputError: none is known and the stage needs one (:data:`UNKNOWN`, or
            :data:`UNKNOWN_PICTURE` where ``where`` is a picture file).
    """
    for value in candidates:
        if value is not None and math.isfinite(value) and value > 0:
            return float(value)
    if POLICY[stage]:
        picture = where is not None and is_raster(where)
        raise DracoInputError(UNKNOWN_PICTURE if picture else UNKNOWN, where)
    return None


def require_pixel_size(stage: Stage, where: str | Path | None, *candidates: float | None) -> float:
    """:func:`resolve_pixel_size` for a stage that needs one (typed as a float)."""
    if not POLICY[stage]:
        raise ValueError(f"stage {stage} does not require a pixel size")
    value = resolve_pixel_size(stage, where, *candidates)
    assert value is not None  # resolve_pixel_size raised otherwise
    return value
