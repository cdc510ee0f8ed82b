"""The lists ``draco curate predict`` hands to other programs: RELION micrograph STARs with an
optics block, and plain text lists of names, one per line (as Miffi's list output).

A STAR input's lists keep its optics block as it is. Plain-file inputs (MRC, TIFF, PNG, ...) have
none, and RELION 4/5 reads a micrograph's pixel size, voltage, Cs and amplitude contrast from its
optics group, not from the file: :func:`with_optics` writes one group per pixel size, with
``--voltage``/``--cs``/``--amplitude-contrast`` where given, else the defaults of RELION's
Import job (:data:`draco_em.io.star.OPTICS_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.curate.config import CuratePredictConfig
from draco_em.io.atomic import write_text_atomic
from draco_em.io.manifest import optics_group
from draco_em.io.star import OPTICS_COLUMNS, OPTICS_DEFAULTS, MicrographTable

#: Config field → its option.
OPTICS_OPTIONS = {
    "voltage": "--voltage",
    "spherical_aberration": "--cs",
    "amplitude_contrast": "--amplitude-contrast",
}


def plain_optics(cfg: CuratePredictConfig) -> dict[str, float]:
    """Optics column → value for plain-file inputs: the option where given, else the default."""
    return {
        column: OPTICS_DEFAULTS[name] if (value := getattr(cfg, name)) is None else value
        for name, column in OPTICS_COLUMNS.items()
    }


def known_pixel_sizes(result: pd.DataFrame) -> np.ndarray | None:
    """``[N]`` pixel sizes (Å) of the curation table's rows, or None when one is unknown."""
    px = pd.to_numeric(result["pixel_size"], errors="coerce").to_numpy(float)
    return px if bool(np.all(px > 0)) else None  # NaN > 0 is False


def with_optics(
    table: MicrographTable, pixel_sizes: np.ndarray, optics: dict[str, float]
) -> MicrographTable:
    """A copy of a plain-file list with an optics block: one group per pixel size and each
    micrograph's ``rlnOpticsGroup`` after its name.

    Pixel sizes are kept to 6 significant digits, so that a header's float32 1.06 (read as
    1.0600000024) is one group with 1.06. ``rlnMicrographOriginalPixelSize`` (the movies') is
    not known for plain micrographs: it is set to theirs, as ``relion_convert_star`` does for
    micrograph lists.

    Args:
        table: the micrographs, ``[N]`` rows.
        pixel_sizes: ``[N]`` Å, each row's.
        optics: :func:`plain_optics`.
    """
    px = [float(f"{p:.6g}") for p in pixel_sizes]
    sizes = sorted(set(px))
    groups = [
        optics_group(number, size, size, optics["rlnVoltage"],
                     optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"])
        for number, size in enumerate(sizes, 1)
    ]  # fmt: skip
    micrographs = table.micrographs.copy()
    micrographs.insert(1, "rlnOpticsGroup", [sizes.index(p) + 1 for p in px])
    return dataclasses.replace(table, optics=pd.DataFrame(groups), micrographs=micrographs)


def optics_warning(cfg: CuratePredictConfig, star_input: bool, result: pd.DataFrame) -> str | None:
    """One line when the lists' optics are not what the options suggest: optics options given
    with a STAR input (its own block is kept), or plain files without a pixel size (no block)."""
    if star_input:
        options = OPTICS_OPTIONS.items()
        given = [flag for name, flag in options if getattr(cfg, name) is not None]
        if not given:
            return None
        return f"{', '.join(given)} ignored: the lists of a STAR input keep its optics block"
    if known_pixel_sizes(result) is not None:
        return None
    unknown = int((~(pd.to_numeric(result["pixel_size"], errors="coerce") > 0)).sum())
    return (
        f"{unknown} of {len(result)} micrographs have no pixel size, so micrographs_accepted.star "
        "and micrographs_rejected.star have no optics block, which RELION 4/5 needs; pass "
        "--pixel-size"
    )


def _file_safe(name: str) -> str:
    """A class name as part of a file name: runs of other characters than letters, digits,
    ``.``, ``-`` and ``_`` become ``_`` (a head of your own may name a class ``bad/ice``)."""
    return re.sub(r"[^\w.-]+", "_", name)


def write_name_lists(out_dir: Path, result: pd.DataFrame) -> dict[str, Path]:
    """``accepted.txt``, ``rejected.txt`` and ``rejected_<reason>.txt`` in ``out_dir``.

    Each holds the ``micrograph`` names of the curation table (the STAR's
    ``rlnMicrographName``, or the file as given), one per line, in its order. Per-reason lists
    of an earlier run into the same folder that this run has no micrograph for are deleted:
    another threshold must not leave a stale list beside the new ones.

    Returns:
        File name → path.
    """
    names = result["micrograph"].astype(str).to_numpy()
    rejected = (result["decision"] == "reject").to_numpy()
    reasons = result["reason"].astype(str).to_numpy()
    lists = {"accepted": names[~rejected], "rejected": names[rejected]}
    for reason in sorted(set(reasons[rejected])):
        key = f"rejected_{_file_safe(reason)}"
        while key in lists:  # two class names alike once made file-safe
            key += "_"
        lists[key] = names[rejected & (reasons == reason)]
    for stale in out_dir.glob("rejected_*.txt"):
        if stale.stem not in lists:
            stale.unlink(missing_ok=True)
    paths = {f"{key}.txt": out_dir / f"{key}.txt" for key in lists}
    for key, rows in lists.items():
        write_text_atomic(paths[f"{key}.txt"], "".join(f"{name}\n" for name in rows))
    return paths
