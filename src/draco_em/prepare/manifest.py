"""``OUTDIR/triplets.star``: the dataset manifest that ``draco pretrain`` reads.

Schema and writer shared with ``draco simulate``: :mod:`draco_em.io.manifest` (optics block,
contract columns, ``dracoMean``/``dracoStd`` = contrast-clipped statistics). ``draco prepare``
adds:

* ``dracoMeanOdd``/``dracoStdOdd``/``dracoMeanEven``/``dracoStdEven``: the halves' statistics;
* ``dracoSizeX``/``dracoSizeY``: image shape in pixels;
* ``rlnMicrographMovieName``: the source movie; ``dracoFrames``: its frame count;
* ``dracoDosePerFrame``/``dracoTotalDose``: exposure in e⁻/Å² (when ``--dose-per-frame``);
* ``dracoTotalShift``/``dracoMaxFrameJump``: trajectory length and largest frame-to-frame step,
  in **Å** (so one threshold works across pixel sizes); ``dracoMotionFile``: the CSV;
* ``rlnAccumMotionTotal``: the same total in Å under RELION's name (``draco curate predict``
  and RELION's own tools read it).

Rows name files relative to OUTDIR; :func:`draco_em.io.manifest.write_manifest` writes them as
every draco STAR names files (relative to the working directory, as RELION's project paths).
"""

from __future__ import annotations

from pathlib import Path

from draco_em.io import manifest
from draco_em.io.manifest import optics_group
from draco_em.prepare.config import PrepareConfig

MANIFEST_NAME = "triplets.star"


def _optics_key(row: dict) -> tuple[float, ...]:
    pixels = (round(float(row["_original_pixel_size"]), 6), round(float(row["_pixel_size"]), 6))
    return pixels + tuple(row["_optics"])


def write_manifest(cfg: PrepareConfig, rows: list[dict]) -> Path:
    """Write ``OUTDIR/triplets.star`` from the items' rows; one optics group per pixel size pair
    and optics (voltage, Cs, amplitude contrast).

    Args:
        cfg: gives the folder.
        rows: manifest rows from :func:`draco_em.prepare.triplets.prepare_item` (keys starting
            with ``_`` are private: pixel sizes and ``_optics``, the (kV, Cs, amplitude
            contrast) of :func:`~draco_em.prepare.config.resolved_optics`, used here for the
            optics groups).
    """
    groups: dict[tuple[float, ...], int] = {}
    for row in rows:
        groups.setdefault(_optics_key(row), len(groups) + 1)
    optics = [
        optics_group(number, original, pixel_size, voltage, cs, amplitude_contrast)
        for (original, pixel_size, voltage, cs, amplitude_contrast), number in groups.items()
    ]
    public = [
        {k: v for k, v in row.items() if not k.startswith("_")}
        | {"rlnOpticsGroup": groups[_optics_key(row)]}
        for row in rows
    ]
    return manifest.write_manifest(cfg.outdir / MANIFEST_NAME, optics, public)
