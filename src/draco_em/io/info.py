"""``draco info``: describe any file the package reads, by its extension.

Each format module owns its summary function; this module only dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from draco_em.errors import DracoInputError


def _summarizers() -> dict[str, Callable[[Path], dict]]:
    # Imported lazily so `draco info x.mrc` does not import torch or pandas.
    from draco_em.io import mrc

    def describe_weights(path: Path) -> dict:  # torch is only imported for weight files
        from draco_em.model.weights import describe_weights as describe

        return describe(path)

    table: dict[str, Callable[[Path], dict]] = {}
    for ext in (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec"):
        table[ext] = mrc.mrc_summary
    table[".star"] = _star_summary
    for ext in (".box", ".txt", ".cs", ".csv"):
        table[ext] = _coords_summary
    for ext in (".safetensors", ".pth", ".pt", ".ckpt"):
        table[ext] = describe_weights
    for ext in (".tif", ".tiff", ".eer"):
        table[ext] = _movie_summary
    for ext in (".png", ".jpg", ".jpeg"):
        table[ext] = _picture_summary
    return table


def _star_summary(path: Path) -> dict:  # pandas/starfile only imported for these files
    from draco_em.io.star import star_summary

    return star_summary(path)


def _movie_summary(path: Path) -> dict:  # tifffile/imagecodecs only imported for these files
    from draco_em.io.movies import movie_summary

    return movie_summary(path)


def _picture_summary(path: Path) -> dict:  # Pillow only imported for these files
    from draco_em.io.images import raster_summary

    return raster_summary(path)


def _coords_summary(path: Path) -> dict:
    from draco_em.io.coords import coords_summary

    return coords_summary(path)


def describe(path: str | Path) -> dict:
    """Return a JSON-able summary of ``path`` (shape, dtype, pixel size, frames, stats, ...)."""
    path = Path(path)
    if not path.exists():
        raise DracoInputError("file not found", path)
    table = _summarizers()
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
