"""``draco info``: describe any file the package reads, by its extension.

Each format module owns its summary function; this module only dispatches. Model files are
described by :func:`draco_em.model.weights.describe_weights`, which ``draco info`` passes in
(``io`` imports no stage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from draco_em.errors import DracoInputError
from draco_em.io.coords import coords_summary, read_coords
from draco_em.io.images import raster_summary
from draco_em.io.motion import is_motion_csv, motion_summary
from draco_em.io.mrc import mrc_summary
from draco_em.io.star import star_summary
from draco_em.io.tiff_movies import movie_summary

#: A file describer: path → JSON-able summary.
Describer = Callable[[Path], dict]


def _star_summary(path: Path) -> dict:
    """A STAR's summary; coordinates must also pass the one coordinate reader's checks."""
    summary = star_summary(path)
    if summary["kind"] == "coordinates":
        read_coords(path, "star")  # raises on a missing Y column or NaN/text values
    return summary


def _csv_summary(path: Path) -> dict:
    """A CSV's summary: a motion trace (``motion/<name>.csv`` of ``draco simulate`` and
    ``draco prepare``) or a Topaz coordinate table."""
    return motion_summary(path) if is_motion_csv(path) else coords_summary(path)


def _describers(extra: Mapping[str, Describer] | None) -> dict[str, Describer]:
    table: dict[str, Describer] = {}
    for ext in (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec"):
        table[ext] = mrc_summary
    table[".star"] = _star_summary
    for ext in (".box", ".txt", ".cs"):
        table[ext] = coords_summary
    table[".csv"] = _csv_summary
    for ext in (".tif", ".tiff", ".eer"):
        table[ext] = movie_summary
    for ext in (".png", ".jpg", ".jpeg"):
        table[ext] = raster_summary
    return {**table, **dict(extra or {})}


def describe(path: str | Path, extra: Mapping[str, Describer] | None = None) -> dict:
    """Return a JSON-able summary of ``path`` (shape, dtype, pixel size, frames, stats, ...).

    Args:
        path: the file.
        extra: describers of further suffixes (``draco info`` adds the model files', which
            live in ``model/``, a layer above ``io/``).
    """
    path = Path(path)
    if not path.exists():
        raise DracoInputError("file not found", path)
    if path.is_dir():
        raise DracoInputError("is a folder: give the files in it (e.g. 'folder/*.mrc')", path)
    table = _describers(extra)
    suffixes = "".join(path.suffixes[-2:]).lower()
    fn = table.get(suffixes) or table.get(path.suffix.lower())
    if fn is None:
        known = ", ".join(sorted(table))
        raise DracoInputError(f"unknown file type {path.suffix!r} (known: {known})", path)
    summary = fn(path)
    summary = {"path": str(path), **summary}
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable multi-line text for one summary."""
    lines = [summary["path"]]
    for key, value in summary.items():
        if key in ("path", "notes") or value is None:
            continue
        if isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        elif isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"  {key:<14} {value}")
    for note in summary.get("notes") or []:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
