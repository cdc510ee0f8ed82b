"""``OUTDIR/triplets.star``: the dataset manifest that ``draco pretrain`` reads.

Schema (shared with ``draco simulate``): an optics block (``rlnOpticsGroupName``,
``rlnOpticsGroup``, ``rlnMicrographOriginalPixelSize``, ``rlnVoltage``,
``rlnSphericalAberration``, ``rlnAmplitudeContrast``, ``rlnMicrographPixelSize``) and a
micrographs block with ``rlnMicrographName`` (full sum), ``rlnOpticsGroup``,
``dracoMicrographEven``/``dracoMicrographOdd`` (empty without pairs), ``dracoHasPairs`` and
``dracoMean``/``dracoStd`` (contrast-clipped statistics of the full sum). ``draco prepare`` adds:

* ``dracoMeanOdd``/``dracoStdOdd``/``dracoMeanEven``/``dracoStdEven``: the halves' statistics;
* ``dracoSizeX``/``dracoSizeY``: image shape in pixels;
* ``rlnMicrographMovieName``: the source movie; ``dracoFrames``: its frame count;
* ``dracoDosePerFrame``/``dracoTotalDose``: exposure in e⁻/Å² (when ``--dose-per-frame``);
* ``dracoTotalShift``/``dracoMaxFrameJump``: trajectory length and largest frame-to-frame step,
  in **Å** (so one threshold works across pixel sizes); ``dracoMotionFile``: the CSV.

Paths are relative to the STAR file's folder (OUTDIR).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from draco_em.io.star import MicrographTable, write_micrographs_star
from draco_em.prepare.config import PrepareConfig

MANIFEST_NAME = "triplets.star"


def _optics_key(row: dict) -> tuple[float, float]:
    return (round(float(row["_original_pixel_size"]), 6), round(float(row["_pixel_size"]), 6))


def write_manifest(cfg: PrepareConfig, rows: list[dict]) -> Path:
    """Write ``OUTDIR/triplets.star`` from the items' rows; one optics group per pixel size pair.

    Args:
        cfg: gives the folder and the optics constants (voltage, Cs, amplitude contrast).
        rows: manifest rows from :func:`draco_em.prepare.triplets.prepare_item` (keys starting
            with ``_`` are private: pixel sizes used here for the optics groups).
    """
    groups: dict[tuple[float, float], int] = {}
    for row in rows:
        groups.setdefault(_optics_key(row), len(groups) + 1)
    optics = pd.DataFrame(
        [
            {
                "rlnOpticsGroupName": f"opticsGroup{number}",
                "rlnOpticsGroup": number,
                "rlnMicrographOriginalPixelSize": original,
                "rlnVoltage": cfg.voltage,
                "rlnSphericalAberration": cfg.spherical_aberration,
                "rlnAmplitudeContrast": cfg.amplitude_contrast,
                "rlnMicrographPixelSize": pixel_size,
            }
            for (original, pixel_size), number in groups.items()
        ]
    )
    table_rows = []
    for row in rows:
        public = {k: v for k, v in row.items() if not k.startswith("_")}
        public["rlnOpticsGroup"] = groups[_optics_key(row)]
        table_rows.append(public)
    micrographs = pd.DataFrame(table_rows)
    for column in ("dracoMicrographEven", "dracoMicrographOdd"):
        if column not in micrographs:
            micrographs[column] = ""
        micrographs[column] = micrographs[column].fillna("")
    star = cfg.outdir / MANIFEST_NAME
    write_micrographs_star(star, MicrographTable(star, optics, _order(micrographs)))
    return star


def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Contract columns first, then the rest in a stable order."""
    first = ["rlnMicrographName", "rlnOpticsGroup", "dracoMicrographEven", "dracoMicrographOdd",
             "dracoHasPairs", "dracoMean", "dracoStd"]  # fmt: skip
    rest = [c for c in table.columns if c not in first]
    return table[[c for c in first if c in table.columns] + rest]
