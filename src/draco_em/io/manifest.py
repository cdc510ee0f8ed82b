"""The dataset manifest (``triplets.star`` from ``draco prepare``, ``micrographs.star`` from
``draco simulate``) that ``draco pretrain`` reads: one schema, one writer.

A RELION micrographs STAR: an optics block (:data:`OPTICS_COLUMNS`, one group per pixel-size
pair) and a micrographs block whose contract columns come first (:data:`CONTRACT`):

* ``rlnMicrographName`` (:data:`FULL`): the full sum;
* ``dracoMicrographEven``/``dracoMicrographOdd`` (:data:`EVEN`, :data:`ODD`): the halves, empty
  without pairs, and ``dracoHasPairs`` (:data:`HAS_PAIRS`);
* ``dracoMean``/``dracoStd`` (:data:`MEAN`, :data:`STD`), with suffixes ``Odd``/``Even`` for the
  halves: the DRACO **contrast-clipped** statistics of the image
  (``imaging.normalize.clip_stats``, paper §1.4), the ones training normalises with, whoever
  writes the manifest (:func:`stats_columns`);
* ``dracoClean`` (:data:`CLEAN`): the noise-free image (simulated data only).

Other columns (motion, dose, simulation ground truth) follow in the writer's order. Writers
give file names relative to the STAR file's folder; they are written as every draco STAR names
files (:func:`draco_em.io.star.project_path`: relative to the current directory, the RELION
project folder, or absolute outside it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from draco_em.io.star import PATH_COLUMNS, MicrographTable, project_path, write_micrographs_star

FULL = "rlnMicrographName"
EVEN = "dracoMicrographEven"
ODD = "dracoMicrographOdd"
HAS_PAIRS = "dracoHasPairs"
MEAN = "dracoMean"
STD = "dracoStd"
CLEAN = "dracoClean"
#: Columns every manifest has, first and in this order.
CONTRACT = (FULL, "rlnOpticsGroup", EVEN, ODD, HAS_PAIRS, MEAN, STD)
OPTICS_COLUMNS = ("rlnOpticsGroupName", "rlnOpticsGroup", "rlnMicrographOriginalPixelSize",
                  "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                  "rlnMicrographPixelSize")  # fmt: skip


def stats_columns(stats: tuple[float, float], suffix: str = "") -> dict[str, float]:
    """``{dracoMean<suffix>: mean, dracoStd<suffix>: std}`` from ``clip_stats(image)``."""
    mean, std = stats
    return {f"{MEAN}{suffix}": float(mean), f"{STD}{suffix}": float(std)}


def optics_group(
    number: int, original_pixel_size: float, pixel_size: float, voltage: float,
    spherical_aberration: float, amplitude_contrast: float,
) -> dict[str, object]:  # fmt: skip
    """One row of the optics block."""
    values = (f"opticsGroup{number}", number, original_pixel_size, voltage,
              spherical_aberration, amplitude_contrast, pixel_size)  # fmt: skip
    return dict(zip(OPTICS_COLUMNS, values, strict=True))


def write_manifest(
    path: Path, optics: Sequence[Mapping[str, object]], rows: Sequence[Mapping[str, object]]
) -> Path:
    """Write a manifest atomically: optics rows, micrograph rows (contract columns first,
    empty half names where there are no pairs)."""
    micrographs = pd.DataFrame([dict(r) for r in rows])
    for column in (EVEN, ODD):
        if column not in micrographs:
            micrographs[column] = ""
        micrographs[column] = micrographs[column].fillna("")
    for column in PATH_COLUMNS:
        if column in micrographs.columns:
            micrographs[column] = [
                project_path(Path(path).parent / str(v)) if str(v) not in ("", "nan") else ""
                for v in micrographs[column]
            ]
    first = [c for c in CONTRACT if c in micrographs.columns]
    micrographs = micrographs[first + [c for c in micrographs.columns if c not in first]]
    table = MicrographTable(path, pd.DataFrame([dict(o) for o in optics]), micrographs)
    write_micrographs_star(path, table)
    return path
