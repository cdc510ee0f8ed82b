"""RELION STAR files: generic blocks and micrograph lists (the dataset manifest).

Reading goes through ``starfile`` with ``always_dict=True``; every parser failure becomes a
:class:`~draco_em.errors.DracoInputError` naming the file. Column names keep the ``rln`` /
``draco`` prefix without the leading underscore, as ``starfile`` returns them
(``rlnMicrographName``, ``dracoMicrographOdd``). Conventions: ``docs/conventions.md``.

Example:
    >>> table = read_micrographs_star("CtfFind/job003/micrographs_ctf.star")
    >>> keep = table.micrographs["rlnCtfMaxResolution"] < 5.0
    >>> write_micrographs_star("micrographs_selected.star", table.filtered(keep))
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path, check_not_input

#: The micrograph a denoised one was made from, on the same pixel grid (``draco denoise``'s
#: output STAR; ``draco pick predict`` names its picks after it, as RELION's Extract needs).
SOURCE_COLUMN = "dracoMicrographSource"

# Columns that hold names or paths: parsed as text even when they look like numbers
# (cryoDRGN's example STAR names its micrographs "1", "2", ...).
STRING_COLUMNS = [
    "rlnMicrographName",
    "rlnMicrographCoordinates",
    "rlnMicrographMetadata",
    "rlnMicrographMovieName",
    "rlnImageName",
    "rlnOpticsGroupName",
    "rlnCtfImage",
    "rlnMtfFileName",
    "dracoMicrographEven",
    "dracoMicrographOdd",
    "dracoClean",
    SOURCE_COLUMN,
]

#: Columns of a micrograph list that name files (rewritten by :meth:`MicrographTable.rebased`).
PATH_COLUMNS = [c for c in STRING_COLUMNS if c != "rlnOpticsGroupName"] + [
    "dracoRegions",
    "dracoCoordinates",
    "dracoMotion",
    "dracoMotionFile",
    "dracoSourceEven",
    "dracoSourceOdd",
]


def project_path(path: str | Path) -> str:
    """How every STAR file draco-em writes names a file (docs/conventions.md, "Paths in STAR
    files"): relative to the current directory when the file lies under it, else absolute.

    RELION runs every job from the project folder and resolves the names in its STAR files from
    there; users run draco from that folder too. Symbolic links inside the project
    (``Movies -> /data/...``) are kept as they are, as RELION keeps them.
    """
    absolute = Path(os.path.abspath(path))
    cwd = Path.cwd()
    for candidate in (absolute, absolute.resolve()):
        if candidate.is_relative_to(cwd):
            return candidate.relative_to(cwd).as_posix() or "."
    return absolute.as_posix()


def resolve_star_path(star: str | Path, value: str) -> Path:
    """The file that ``value``, a name in the STAR file ``star``, refers to.

    Relative names resolve against the STAR file's folder first, then the current directory
    (the RELION project folder), then each folder above the STAR file's (the project folder of
    a STAR inside it, read from elsewhere). Where none exists, the STAR-folder path is
    returned, so errors name it.
    """
    candidate = Path(str(value))
    if candidate.is_absolute():
        return candidate
    folder = Path(star).parent
    beside = folder / candidate
    if beside.exists():
        return beside
    if candidate.exists():
        return candidate
    for above in Path(os.path.abspath(folder)).parents:
        if (above / candidate).exists():
            return above / candidate
    return beside


#: The microscope's optics where neither an option nor an input STAR gives them (kV, mm, a
#: fraction), by the config field (``--voltage``, ``--cs``, ``--amplitude-contrast``): the
#: defaults of RELION's Import job, which CtfFind and Extract read from the optics block.
OPTICS_DEFAULTS = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1}
#: The RELION optics column of each.
OPTICS_COLUMNS = {
    "voltage": "rlnVoltage",
    "spherical_aberration": "rlnSphericalAberration",
    "amplitude_contrast": "rlnAmplitudeContrast",
}

# RELION writes this line before the first block; RELION 3.1+ uses it to expect optics blocks.
STAR_HEADER = "\n# version 30001\n"


def read_star(path: str | Path) -> dict[str, pd.DataFrame]:
    """Read every data block of a STAR file.

    Args:
        path: the ``.star`` file.

    Returns:
        Block name without ``data_`` (``""`` for a bare ``data_``) → table. Key-value blocks
        (no ``loop_``) become one-row tables.

    Raises:
        DracoInputError: missing file, unparseable text, no data block, duplicate columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DracoInputError("file not found" if not path.exists() else "not a file", path)
    try:
        raw = starfile.read(path, always_dict=True, parse_as_string=STRING_COLUMNS)
    except (
        Exception
    ) as exc:  # starfile/pandas raise many types on corrupt text; all are user errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DracoInputError(f"not a readable STAR file ({first})", path) from None
    if not raw:
        raise DracoInputError(f"not a STAR file: {_why_no_block(path)}", path)
    if (ragged := _ragged_row(path)) is not None:
        raise DracoInputError(f"not a valid STAR table: {ragged}", path)
    blocks: dict[str, pd.DataFrame] = {}
    for name, block in raw.items():
        table = pd.DataFrame([block]) if isinstance(block, dict) else block
        if not isinstance(table, pd.DataFrame):
            raise DracoInputError(f"block data_{name} could not be read as a table", path)
        if table.columns.duplicated().any():
            dup = sorted(set(table.columns[table.columns.duplicated()]))
            raise DracoInputError(f"block data_{name} repeats the columns {dup}", path)
        blocks[str(name)] = table.reset_index(drop=True)
    return blocks


def _why_no_block(path: Path) -> str:
    """Why starfile found no block: none in the file, or text that is not UTF-8 (starfile reads
    lines through :mod:`linecache`, which gives every line of such a file as empty)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if b"data_" in data and b"\0" not in data:  # STAR text in another encoding
            return (
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, e.g. a "
                "name in Latin-1): save it as UTF-8"
            )
    return "no data_ block found"


def _ragged_row(path: Path) -> str | None:
    """The first ``loop_`` row whose field count differs from its columns' (None: all fit).

    starfile fills a short row with NaN, so a truncated line would pass as data. Rows with
    quotes (names with spaces) are not counted.
    """
    n_cols, in_header = -1, False  # -1: outside a loop
    with open(path, errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("data_"):
                n_cols = -1
            elif text == "loop_":
                n_cols, in_header = 0, True
            elif n_cols >= 0 and in_header and text.startswith("_"):
                n_cols += 1
            elif n_cols > 0:
                in_header = False
                if '"' in text or "'" in text:
                    continue
                if (n := len(text.split())) != n_cols:
                    return f"line {lineno} has {n} fields, the table has {n_cols} columns"
    return None


def write_star(
    path: str | Path, blocks: dict[str, pd.DataFrame], inputs: Iterable[str | Path] = ()
) -> None:
    """Write blocks atomically with RELION's ``# version 30001`` header.

    Args:
        path: destination ``.star``.
        blocks: block name (without ``data_``) → table; column names without the leading ``_``.
        inputs: files that must not be overwritten.
    """
    check_not_input(path, inputs)
    with atomic_path(path) as tmp:
        # Values as read: starfile's %.6f writes 1.5e-08 as 0.000000 and NaN as <NA>, which
        # RELION cannot parse; %.10g keeps 10 significant digits (defocus 15234.56789 Å too).
        starfile.write(dict(blocks), tmp, float_format="%.10g", na_rep="nan")
        text = tmp.read_text()
        # Replace starfile's "# Created by ..." banner with the line RELION writes.
        text = re.sub(r"\A# Created by the starfile[^\n]*\n", STAR_HEADER, text)
        tmp.write_text(text)


@dataclasses.dataclass
class MicrographTable:
    """A RELION micrograph list: optional optics block and the micrographs block.

    Attributes:
        path: the STAR file it was read from (relative paths inside resolve against its folder).
        optics: the ``data_optics`` table, or None for the pre-3.1 single-block form.
        micrographs: one row per micrograph; always has ``rlnMicrographName`` (str).
        block_name: name of the micrographs block, kept when written back (``micrographs``
            for RELION 3.1+; older files use ``""`` or ``images``).
    """

    path: Path
    optics: pd.DataFrame | None
    micrographs: pd.DataFrame
    block_name: str = "micrographs"

    def resolve(self, value: str) -> Path:
        """Path of a file named in the table.

        See :func:`resolve_star_path`: the STAR's folder, the current directory (the RELION
        project folder), then the folders above the STAR's.
        """
        return resolve_star_path(self.path, value)

    def rebased(self) -> MicrographTable:
        """A copy whose file names (:data:`PATH_COLUMNS`) follow :func:`project_path`.

        What a command writes into its own folder must resolve there: names relative to the
        input STAR's folder would not (the curate -> pick chain of issue 16). Empty names stay
        empty, and so do names of files that exist nowhere (a RELION STAR's
        ``rlnMicrographMetadata`` copied without its files): no folder can be chosen for them,
        and RELION reads such a name from the project folder, as written.
        """
        rows = self.micrographs.copy()
        for column in PATH_COLUMNS:
            if column in rows.columns:
                rows[column] = [self._rebased_name(str(v)) for v in rows[column]]
        optics = None if self.optics is None else self.optics.copy()
        return dataclasses.replace(self, optics=optics, micrographs=rows)

    def _rebased_name(self, value: str) -> str:
        if value in ("", "nan"):
            return value
        name, colon, kind = value.rpartition(":")  # RELION's "power.ctf:mrc": a file type
        if not colon or "/" in kind or not kind.isalnum():
            name, kind = value, ""
        path = self.resolve(name)
        if not (path.exists() or Path(name).is_absolute()):
            return value
        return project_path(path) + (f":{kind}" if kind else "")

    def pixel_size(self, row_index: int) -> float | None:
        """Pixel size (Å/px) of the micrograph at *position* ``row_index`` (``iloc``), or None.

        Looks in order at the micrographs block's own ``rlnMicrographPixelSize``, the optics
        group's ``rlnMicrographPixelSize`` then ``rlnImagePixelSize`` (via ``rlnOpticsGroup``),
        the block's ``rlnImagePixelSize``, and finally the pre-3.1
        ``rlnDetectorPixelSize`` (µm) × 10⁴ / ``rlnMagnification``.
        """
        row = self.micrographs.iloc[row_index]
        if (value := _positive(row.get("rlnMicrographPixelSize"))) is not None:
            return value
        group = self.optics_row(row)
        if group is not None:
            for column in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
                if (value := _positive(group.get(column))) is not None:
                    return value
        if (value := _positive(row.get("rlnImagePixelSize"))) is not None:
            return value
        detector, mag = (
            _positive(row.get("rlnDetectorPixelSize")),
            _positive(row.get("rlnMagnification")),
        )
        return detector * 1e4 / mag if detector and mag else None

    def positive_value(self, row_index: int, column: str, zero: bool = False) -> float | None:
        """``column`` of the micrograph at position ``row_index`` as a number > 0 (≥ 0 with
        ``zero``: a Cs-corrected microscope's Cs): its own cell, else its optics group's; None
        when neither holds one."""
        keep = _non_negative if zero else _positive
        row = self.micrographs.iloc[row_index]
        if (value := keep(row.get(column))) is not None:
            return value
        group = self.optics_row(row)
        return None if group is None else keep(group.get(column))

    def optics_row(self, row: pd.Series) -> pd.Series | None:
        """The optics group of a micrographs-block row (by ``rlnOpticsGroup``; the only group
        when the row names none), or None."""
        if self.optics is None or len(self.optics) == 0:
            return None
        if "rlnOpticsGroup" in row.index and "rlnOpticsGroup" in self.optics.columns:
            match = self.optics[self.optics["rlnOpticsGroup"] == row["rlnOpticsGroup"]]
            return match.iloc[0] if len(match) else None
        return self.optics.iloc[0] if len(self.optics) == 1 else None

    def filtered(self, keep: pd.Series | np.ndarray) -> MicrographTable:
        """A copy keeping the rows where ``keep`` is True (every column and the optics kept)."""
        rows = self.micrographs[np.asarray(keep, dtype=bool)].reset_index(drop=True)
        optics = None if self.optics is None else self.optics.copy()
        return dataclasses.replace(self, optics=optics, micrographs=rows)


def finite_number(value: object) -> float | None:
    """``value`` (a STAR cell) as a float when it is a finite number, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _positive(value: object) -> float | None:
    """``value`` as a float when it is a finite number > 0, else None."""
    number = finite_number(value)
    return number if number is not None and number > 0 else None


def _non_negative(value: object) -> float | None:
    """``value`` as a float when it is a finite number ≥ 0, else None."""
    number = finite_number(value)
    return number if number is not None and number >= 0 else None


def read_micrographs_star(path: str | Path) -> MicrographTable:
    """Read a RELION micrograph list (3.1+ optics + micrographs, or the older single block).

    Raises:
        DracoInputError: unreadable file, no block with ``rlnMicrographName``, or a particle
            / coordinate STAR given where a micrograph list is expected.
    """
    path = Path(path)
    blocks = read_star(path)
    if "micrographs" in blocks and "rlnMicrographName" in blocks["micrographs"].columns:
        name = "micrographs"
    else:
        names = [n for n, t in blocks.items() if n != "optics" and "rlnMicrographName" in t]
        if not names:
            raise DracoInputError(_not_a_micrograph_list(blocks), path)
        name = names[0]
    table = blocks[name].copy()
    if "rlnCoordinateX" in table.columns:
        raise DracoInputError(
            f"block data_{name} holds particle coordinates (rlnCoordinateX), "
            "not a micrograph list; pass a micrographs STAR",
            path,
        )
    table["rlnMicrographName"] = table["rlnMicrographName"].astype(str)
    out = MicrographTable(
        path=path, optics=blocks.get("optics"), micrographs=table, block_name=name
    )
    refuse_unnamed(out, "rlnMicrographName")
    return out


#: Cell values that name no file (an empty cell, quoted or not).
_NO_NAME = ("", '""', "''", "nan", "<NA>", "None")


def names_a_file(value: object) -> bool:
    """Whether a STAR cell names a file (not empty, quoted empty or a missing value)."""
    return value is not None and str(value).strip() not in _NO_NAME


def refuse_unnamed(table: MicrographTable, column: str) -> None:
    """One line for rows whose ``column`` names no file: such a row would resolve to the
    STAR's own folder (a micrographs STAR's rlnMicrographName, a movies STAR's
    rlnMicrographMovieName).

    Raises:
        DracoInputError: the first such row and how many there are.
    """
    unnamed = [i for i, value in enumerate(table.micrographs[column]) if not names_a_file(value)]
    if unnamed:
        raise DracoInputError(
            f"row {unnamed[0] + 1} of data_{table.block_name} has an empty {column} "
            f"({len(unnamed)} such rows): give each one's file",
            table.path,
        )


def _not_a_micrograph_list(blocks: dict[str, pd.DataFrame]) -> str:
    """Why no block of a STAR is a micrograph list, and what the STAR seems to be instead."""
    columns = {c for n, t in blocks.items() if n != "optics" for c in t.columns}
    if "rlnCoordinateX" in columns:
        return "no block has rlnMicrographName: it holds particle coordinates, not micrographs"
    if "rlnMicrographMovieName" in columns:  # RELION's Import of movies
        return "no block has rlnMicrographName: a movies STAR (run `draco prepare` on it first)"
    found = {n or "(unnamed)": list(t.columns)[:8] for n, t in blocks.items()}
    return f"unknown STAR columns: no block has rlnMicrographName (found {found})"


def write_micrographs_star(
    path: str | Path, table: MicrographTable, inputs: Iterable[str | Path] = ()
) -> None:
    """Write a micrograph list atomically: the optics block unchanged, then every column.

    Paths in the table are written as they are (not re-based onto the new folder).
    """
    blocks: dict[str, pd.DataFrame] = {}
    if table.optics is not None:
        blocks["optics"] = table.optics
    blocks[table.block_name] = table.micrographs
    write_star(path, blocks, inputs=inputs)


def star_summary(path: str | Path) -> dict:
    """Blocks, row counts, columns, micrograph and particle counts, for ``draco info``."""
    blocks = read_star(path)
    out: dict = {"format": "star", "kind": "other"}
    coords = [t for t in blocks.values() if "rlnCoordinateX" in t.columns]
    if coords:
        out["kind"] = "coordinates"
        out["n_particles"] = int(sum(len(t) for t in coords))
        mics = [t["rlnMicrographName"] for t in coords if "rlnMicrographName" in t.columns]
        # A per-micrograph coordinate file (no rlnMicrographName) describes one micrograph.
        out["n_micrographs"] = int(pd.concat(mics).nunique()) if mics else len(coords)
    elif images := [t for t in blocks.values() if "rlnImageName" in t.columns]:
        out["kind"] = "particles"
        out["n_particles"] = int(sum(len(t) for t in images))
    elif "coordinate_files" in blocks:
        out["kind"] = "coordinate index"
        out["n_micrographs"] = len(blocks["coordinate_files"])
    else:
        try:
            table = read_micrographs_star(path)
        except DracoInputError:
            pass
        else:
            out["kind"] = "micrographs"
            out["n_micrographs"] = len(table.micrographs)
            out["pixel_size"] = table.pixel_size(0) if len(table.micrographs) else None
    out["blocks"] = {(n or "(unnamed)"): len(t) for n, t in blocks.items()}
    out["columns"] = {(n or "(unnamed)"): list(t.columns) for n, t in blocks.items()}
    return out
