"""Particle coordinates: the package's one convention and the RELION, EMAN, Topaz, cryoSPARC files.

Inside the package, picks are a :class:`pandas.DataFrame` with columns

* ``micrograph`` (str): the micrograph's file stem (``mic_0001`` for ``.../mic_0001.mrc``);
* ``x``, ``y`` (float, pixels of the micrograph *as stored*): x = column (fast axis), y = row,
  so a pick sits on ``data[round(y), round(x)]``; (0, 0) is the centre of ``data[0, 0]``;
* optional ``score``, ``class_number`` (RELION counts from 1), ``psi`` (degrees), and free
  extra columns (``micrograph_path``, ``box_size``, ``micrograph_ny``/``_nx``, ``rln*``...).

Binning by a factor N (Fourier cropping keeps sample 0 in place) maps x to x / N:
``scale_coords(df, 1 / N)``. Every convention is listed, with its test, in
``docs/conventions.md``. The cryoSPARC ``.cs`` files (numpy structured arrays) are read and
written here too (:func:`read_cs`, :func:`write_cs`).

Example:
    >>> picks = read_coords("AutoPick/job010/autopick.star")  # RELION 4/5 index
    >>> write_topaz("picks_bin4.txt", scale_coords(picks, 0.25))
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path, check_not_input, visible_files
from draco_em.io.star import read_star, resolve_star_path, write_star

FORMATS = ("star", "box", "topaz", "cs")
IMAGE_SUFFIXES = (".mrc", ".mrcs", ".tif", ".tiff", ".eer", ".png", ".jpg", ".jpeg", ".map")
# Suffixes RELION and our writers append to a micrograph stem to name its coordinate file.
#: Name endings RELION adds to a micrograph's stem in its per-micrograph coordinate files.
PICK_NAME_SUFFIXES = ("_autopick", "_manualpick")
#: Coordinate file extensions and their formats (the one list; :func:`guess_format`).
COORD_FILE_FORMATS = {".star": "star", ".box": "box", ".cs": "cs", ".txt": "topaz",
                      ".csv": "topaz", ".tsv": "topaz", ".coord": "topaz"}  # fmt: skip
#: The coordinate index a RELION 4/5 AutoPick or ManualPick job folder holds.
RELION_INDEXES = ("autopick.star", "manualpick.star", "coordinate_files.star")
UNKNOWN = -999.0  # RELION's value for an unknown figure of merit or psi angle

_STAR_TO_OURS = {
    "rlnCoordinateX": "x",
    "rlnCoordinateY": "y",
    "rlnAutopickFigureOfMerit": "score",
    "rlnParticleScore": "score",  # pre-3.0 name, mapped as Topaz does
    "rlnClassNumber": "class_number",
    "rlnAnglePsi": "psi",
}


# --------------------------------------------------------------------------- the convention


def micrograph_stem(name: str | Path) -> str:
    """The file stem naming a micrograph: folder and image extension removed."""
    base = Path(str(name)).name
    return base[: -len(Path(base).suffix)] if base.lower().endswith(IMAGE_SUFFIXES) else base


T = TypeVar("T")

#: cryoSPARC writes the micrographs it makes as ``<uid>_<name><suffix>``: its 21-digit uid
#: before the original name and, from Patch Motion Correction, ``_patch_aligned`` (and
#: ``_doseweighted``) after it. Picks exported from it name those; the user's micrographs,
#: from RELION or MotionCor2, the plain name (peers.md: pyem, CryoSegNet strip them).
CRYOSPARC_NAME = re.compile(r"^(?:\d{21}_)?(?P<name>.+?)(?:_patch_aligned(?:_doseweighted)?)?$")


def plain_micrograph_name(stem: str) -> str:
    """``stem`` without cryoSPARC's uid prefix and Patch Motion suffix (:data:`CRYOSPARC_NAME`)."""
    match = CRYOSPARC_NAME.match(stem)
    return match["name"] if match else stem


def match_plain_names(
    frames: Mapping[str, T], targets: Iterable[str]
) -> tuple[dict[str, T], dict[str, str]]:
    """``frames`` (picks by micrograph name) with each name that is not a target, but is one
    once both lose cryoSPARC's naming (:func:`plain_micrograph_name`), renamed to it; and the
    renames made. Ambiguous plain names, and targets ``frames`` holds already, are left alone.
    """
    targets = set(targets)
    by_plain: dict[str, list[str]] = {}
    for target in targets:
        by_plain.setdefault(plain_micrograph_name(target), []).append(target)
    renamed = {}
    for name in set(frames) - targets:
        found = by_plain.get(plain_micrograph_name(name), [])
        if len(found) == 1 and found[0] not in frames:
            renamed[name] = found[0]
    return {renamed.get(k, k): v for k, v in frames.items()}, renamed


def make_coords(
    micrograph: str, x: Iterable[float], y: Iterable[float], **extra: object
) -> pd.DataFrame:
    """Picks of one micrograph in the package convention (``extra``: score, class_number, ...)."""
    x, y = np.asarray(list(x), dtype=np.float64), np.asarray(list(y), dtype=np.float64)
    df = pd.DataFrame({"micrograph": [micrograph_stem(micrograph)] * len(x), "x": x, "y": y})
    if str(micrograph) != micrograph_stem(micrograph):  # keep the full name for index files
        df["micrograph_path"] = str(micrograph)
    for key, values in extra.items():
        df[key] = values
    return df


def strip_pick_suffix(stem: str) -> str:
    """The micrograph stem in a per-micrograph coordinate file's stem (``mic_0001_autopick`` →
    ``mic_0001``)."""
    for suffix in PICK_NAME_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return stem


def micrograph_paths(df: pd.DataFrame) -> pd.Series:
    """Each pick's micrograph file name: ``micrograph_path`` where known, else ``<stem>.mrc``."""
    default = df["micrograph"].astype(str) + ".mrc"
    if "micrograph_path" not in df.columns:
        return default
    return df["micrograph_path"].where(df["micrograph_path"].notna(), default).astype(str)


def scale_coords(df: pd.DataFrame, factor: float | tuple[float, float]) -> pd.DataFrame:
    """Multiply x, y (and box and micrograph sizes) by ``factor``; 1/N goes to N× binned.

    With (0, 0) at the centre of the first pixel, binning by N (Fourier crop) puts original
    pixel k at binned pixel k / N, so no half-pixel shift is involved. ``factor`` may be
    ``(fx, fy)`` for a box rescaled by slightly different factors along x and y
    (:func:`draco_em.imaging.fourier.rescaled_shape`); the box size then scales by their mean.
    """
    fx, fy = (float(factor[0]), float(factor[1])) if isinstance(factor, tuple) else (factor,) * 2
    for f in (fx, fy):
        if not np.isfinite(f) or f <= 0:
            raise DracoInputError(f"scale factor must be a positive number, got {factor}")
    out = df.copy()
    out["x"] = out["x"].astype(np.float64) * fx
    out["y"] = out["y"].astype(np.float64) * fy
    sizes = {"box_size": (fx + fy) / 2, "micrograph_ny": fy, "micrograph_nx": fx}
    for column, f in sizes.items():  # sizes in px scale too
        if column in out.columns:  # NaN where picks read from other formats were merged
            scaled = np.maximum(1, np.round(pd.to_numeric(out[column], errors="coerce") * f))
            out[column] = scaled.astype(int) if scaled.notna().all() else scaled.astype("Int64")
    if "pixel_size" in out.columns:  # Å/px (read from a .cs): pixels 1/f times as large
        out["pixel_size"] = pd.to_numeric(out["pixel_size"], errors="coerce") * 2 / (fx + fy)
    return out


def require_columns(
    df: pd.DataFrame, path: str | Path | None, needs: tuple[str, ...] = ("micrograph", "x", "y")
) -> None:
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise DracoInputError(f"coordinates lack the columns {missing}", path)


def tidy_coords(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Common checks and dtypes for every reader's output."""
    require_columns(df, path)
    df = df.reset_index(drop=True)
    df["micrograph"] = df["micrograph"].astype(str)
    for column in ("x", "y"):
        values = pd.to_numeric(df[column], errors="coerce").astype(np.float64)
        if not np.isfinite(values).all():
            raise DracoInputError(f"non-numeric or non-finite {column} coordinates", path)
        df[column] = values
    front = ["micrograph", "x", "y"]
    return df[front + [c for c in df.columns if c not in front]]


# --------------------------------------------------------------------------- RELION STAR


def coord_star_name(micrograph: str, suffix: str = "_autopick") -> str:
    """RELION's per-micrograph coordinate file name: ``<stem><suffix>.star``."""
    return f"{micrograph_stem(micrograph)}{suffix}.star"


def write_relion_coords(path: str | Path, df: pd.DataFrame, inputs: Iterable = ()) -> None:
    """Per-micrograph coordinate STAR as RELION's autopicker writes it (one ``data_`` block).

    Unknown figure of merit and psi are written as -999, an unknown class as 1; extra columns
    whose names start with ``rln`` or ``draco`` are written too.
    """
    require_columns(df, path, ("x", "y"))
    out = pd.DataFrame(
        {
            "rlnCoordinateX": df["x"].astype(np.float64).to_numpy(),
            "rlnCoordinateY": df["y"].astype(np.float64).to_numpy(),
            "rlnAutopickFigureOfMerit": numeric_column(df, "score", UNKNOWN),
            "rlnClassNumber": numeric_column(df, "class_number", 1).astype(int),
            "rlnAnglePsi": numeric_column(df, "psi", UNKNOWN),
        }
    )
    for column in df.columns:
        if column.startswith(("rln", "draco")) and column not in out.columns:
            out[column] = df[column].to_numpy()
    write_star(path, {"": out}, inputs=inputs)


def numeric_column(df: pd.DataFrame, name: str, fill: float) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), fill, dtype=np.float64)
    return pd.to_numeric(df[name], errors="coerce").fillna(fill).to_numpy(np.float64)


def write_coordinate_index(
    path: str | Path, files: Mapping[str, str | Path], inputs: Iterable = ()
) -> None:
    """The ``coordinate_files`` STAR (micrograph → coordinate file) that RELION 4/5 imports."""
    table = pd.DataFrame(
        {
            "rlnMicrographName": [str(k) for k in files],
            "rlnMicrographCoordinates": [str(v) for v in files.values()],
        }
    )
    write_star(path, {"coordinate_files": table}, inputs=inputs)


def _read_star_coords(path: Path, nested: bool = False) -> pd.DataFrame:
    blocks = read_star(path)
    if "coordinate_files" in blocks:
        if nested:  # an index listing an index (maybe itself) would never end
            raise DracoInputError("a coordinate file listed in an index is an index itself", path)
        return _read_coordinate_index(path, blocks["coordinate_files"])
    tables = [t for t in blocks.values() if "rlnCoordinateX" in t.columns]
    if not tables:
        found = sorted({c for t in blocks.values() for c in t.columns})[:10]
        raise DracoInputError(
            f"unknown STAR columns: no rlnCoordinateX/Y and no coordinate_files block "
            f"(found {found})",
            path,
        )
    df = pd.concat(tables, ignore_index=True).rename(columns=_STAR_TO_OURS)
    df = df.loc[:, ~df.columns.duplicated()]
    if "rlnMicrographName" in df.columns:  # a particles STAR: one micrograph per row
        df["micrograph_path"] = df.pop("rlnMicrographName").astype(str)
        df["micrograph"] = df["micrograph_path"].map(micrograph_stem)
    elif "rlnImageName" in df.columns:  # particle images of many micrographs, unnamed
        raise DracoInputError(
            "a particles STAR without rlnMicrographName: its picks cannot be matched to "
            "micrographs (add the column, or give one coordinate file per micrograph)",
            path,
        )
    else:  # a per-micrograph file: RELION names it <stem>_autopick.star
        df["micrograph"] = strip_pick_suffix(path.stem)
    for column in ("score", "psi"):
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").replace(UNKNOWN, np.nan)
    return tidy_coords(df, path)


def _read_coordinate_index(path: Path, index: pd.DataFrame) -> pd.DataFrame:
    needs = {"rlnMicrographName", "rlnMicrographCoordinates"}
    if not needs <= set(index.columns):
        raise DracoInputError(f"coordinate_files block lacks {sorted(needs)}", path)
    frames = [_empty()]
    for mic, coord_file in zip(
        index["rlnMicrographName"], index["rlnMicrographCoordinates"], strict=True
    ):
        # RELION writes paths relative to the project folder; try the index's folder first.
        coord_path = resolve_star_path(path, str(coord_file))
        if not coord_path.exists():
            raise DracoInputError(f"coordinate file {coord_file} listed in it is missing", path)
        df = _read_star_coords(coord_path, nested=True)
        df["micrograph"] = micrograph_stem(mic)
        df["micrograph_path"] = str(mic)
        frames.append(df)
    return tidy_coords(pd.concat(frames, ignore_index=True), path)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"micrograph": pd.Series([], dtype=str), "x": [], "y": []})


# --------------------------------------------------------------------------- EMAN .box


def write_box(
    path: str | Path,
    df: pd.DataFrame,
    box_size: int,
    invert_y: bool = False,
    image_height: int | None = None,
    inputs: Iterable = (),
) -> None:
    """EMAN ``.box``: tab-separated ``x y w h`` with (x, y) the box's lower-left corner.

    Corner = centre − ``box_size // 2`` (integer half box), rounded to whole pixels as EMAN
    and Topaz write them. ``invert_y`` flips rows first (y → H − 1 − y), which needs
    ``image_height`` (H, px); the default keeps rows as stored, like Topaz.
    """
    if box_size is None or int(box_size) <= 0:
        raise DracoInputError("the .box format needs a positive box size (--box-size PX)", path)
    half = int(box_size) // 2
    y = _flip_y(df["y"].to_numpy(np.float64), invert_y, image_height, path)
    corners = np.stack([df["x"].to_numpy(np.float64) - half, y - half], axis=1)
    lines = [f"{cx:.0f}\t{cy:.0f}\t{int(box_size)}\t{int(box_size)}" for cx, cy in corners]
    check_not_input(path, inputs)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))


def _flip_y(y: np.ndarray, invert: bool, height: int | None, path: str | Path) -> np.ndarray:
    if not invert:
        return y
    if height is None:
        raise DracoInputError("inverting y needs the micrograph height (--micrograph-shape)", path)
    return (int(height) - 1) - y


def _read_box(path: Path, invert_y: bool = False, image_height: int | None = None) -> pd.DataFrame:
    try:
        text = path.read_text()
        table = np.loadtxt(io.StringIO(text), ndmin=2) if text.strip() else np.zeros((0, 4))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DracoInputError(f"not an EMAN .box file ({exc})", path) from None
    if table.shape[1] not in (4, 5):
        raise DracoInputError(f"a .box file has 4 or 5 columns, found {table.shape[1]}", path)
    w, h = table[:, 2].astype(int), table[:, 3].astype(int)
    y = _flip_y(table[:, 1] + h // 2, invert_y, image_height, path)
    df = make_coords(path.stem, table[:, 0] + w // 2, y, box_size=w)
    return tidy_coords(df, path)


# --------------------------------------------------------------------------- Topaz text


def write_topaz(path: str | Path, df: pd.DataFrame, inputs: Iterable = ()) -> None:
    """Topaz text: tab-separated ``image_name x_coord y_coord [score]``, many micrographs.

    ``image_name`` is the stem without extension (Topaz strips it and warns otherwise); the
    score column is written when the picks have scores.
    """
    require_columns(df, path)
    out = pd.DataFrame({"image_name": df["micrograph"].map(micrograph_stem)})
    for ours, theirs in (("x", "x_coord"), ("y", "y_coord"), ("score", "score")):
        if ours in df.columns and np.isfinite(pd.to_numeric(df[ours], errors="coerce")).any():
            out[theirs] = _compact(df[ours])
    check_not_input(path, inputs)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False)


def _compact(values: pd.Series) -> pd.Series:
    """Whole numbers as integers (as Topaz writes them), anything else with 3 decimals."""
    v = pd.to_numeric(values, errors="coerce").astype(np.float64)
    if np.all(np.isfinite(v)) and np.all(v == np.round(v)):
        return v.astype(np.int64)
    return v.round(3)


def _read_topaz(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text()
        sep = "\t" if "\t" in text.split("\n", 1)[0] else ","
        header = pd.read_csv(io.StringIO(text), sep=sep, nrows=0).columns
        names = {c: str for c in header if str(c).strip().lower() in _TEXT_COLUMNS["micrograph"]}
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=names)  # "0001" stays a name
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DracoInputError(f"not a Topaz coordinate file ({exc})", path) from None
    found = {str(c).strip().lower(): c for c in table.columns}
    chosen = {ours: next((found[a] for a in names if a in found), None)
              for ours, names in _TEXT_COLUMNS.items()}  # fmt: skip
    if None in chosen.values():
        raise DracoInputError(
            "a coordinate table needs the Topaz header image_name, x_coord, y_coord (or "
            f"micrograph, x, y), found {list(table.columns)}",
            path,
        )
    table = table.rename(columns={chosen["x"]: "x", chosen["y"]: "y"})
    table["micrograph"] = table.pop(chosen["micrograph"]).astype(str).map(micrograph_stem)
    return tidy_coords(table, path)


#: Column names of a coordinate table (Topaz's first), matched without case.
_TEXT_COLUMNS = {
    "micrograph": ("image_name", "micrograph", "micrograph_name", "rlnmicrographname", "image"),
    "x": ("x_coord", "x", "rlncoordinatex"),
    "y": ("y_coord", "y", "rlncoordinatey"),
}


# --------------------------------------------------------------------------- cryoSPARC .cs
# cryoSPARC particle ``.cs`` files: numpy structured arrays, one row per pick.
#
# Fields follow cryosparc-tools (``uid``, ``location/*``, ``pick_stats/*``); positions are
# fractions of the micrograph, ``x_px = location/center_x_frac · nx`` with
# ``location/micrograph_shape = [ny, nx]``. Written with numpy alone, so cryosparc-tools is only
# needed to check the files (``tests/io/test_coords.py``). Read through :func:`read_coords`.

_CS_DTYPE = [
    ("uid", "<u8"),
    ("location/micrograph_uid", "<u8"),
    ("location/exp_group_id", "<u4"),
    ("location/micrograph_path", "S"),  # width set per file
    ("location/micrograph_shape", "<u4", (2,)),  # [ny, nx]
    ("location/micrograph_psize_A", "<f4"),
    ("location/center_x_frac", "<f4"),
    ("location/center_y_frac", "<f4"),
    ("pick_stats/ncc_score", "<f4"),
    ("pick_stats/power", "<f4"),
]


def write_cs(
    path: str | Path,
    df: pd.DataFrame,
    micrograph_shape: tuple[int, int] | None = None,
    pixel_size: float | None = None,
    inputs: Iterable = (),
) -> None:
    """cryoSPARC particle ``.cs``: a numpy structured array, readable by cryosparc-tools.

    Args:
        path: destination ``.cs``.
        df: picks; ``micrograph_path`` names each micrograph (default ``<stem>.mrc``).
        micrograph_shape: (ny, nx) in px, for every micrograph; defaults to the picks'
            ``micrograph_ny``/``micrograph_nx`` columns (kept when a ``.cs`` was read).
        pixel_size: Å/px written to ``location/micrograph_psize_A``; defaults to the picks'
            ``pixel_size`` column (kept when a ``.cs`` was read), 0 where unknown.

    Positions are fractions of the micrograph: ``center_x_frac = x / nx`` (cryoSPARC's
    ``x_px = frac · nx``).
    """
    require_columns(df, path)
    if micrograph_shape is not None:
        ny = np.full(len(df), int(micrograph_shape[0]))
        nx = np.full(len(df), int(micrograph_shape[1]))
    elif {"micrograph_ny", "micrograph_nx"} <= set(df.columns) and (
        df[["micrograph_ny", "micrograph_nx"]].notna().all(axis=None)
    ):
        ny, nx = df["micrograph_ny"].to_numpy(int), df["micrograph_nx"].to_numpy(int)
    else:  # no .cs read, or picks from other formats merged with one
        raise DracoInputError(
            "a .cs file stores positions as fractions of the micrograph size: "
            "pass --micrograph-shape NYxNX",
            path,
        )
    paths = micrograph_paths(df).tolist()
    encoded = [p.encode() for p in paths]
    dtype = [
        (n, f"S{max([1, *map(len, encoded)])}", *r) if t == "S" else (n, t, *r)
        for n, t, *r in _CS_DTYPE
    ]
    rng = np.random.default_rng()  # cryoSPARC uids are random 64-bit integers
    mic_uids = {name: rng.integers(1, 2**63, dtype=np.uint64) for name in set(paths)}
    arr = np.zeros(len(df), dtype=dtype)
    arr["uid"] = rng.integers(1, 2**63, size=len(df), dtype=np.uint64)
    arr["location/micrograph_uid"] = [mic_uids[p] for p in paths]
    arr["location/exp_group_id"] = 1
    arr["location/micrograph_path"] = encoded
    arr["location/micrograph_shape"] = np.stack([ny, nx], axis=1) if len(df) else 0
    arr["location/micrograph_psize_A"] = (
        numeric_column(df, "pixel_size", 0.0) if pixel_size is None else pixel_size
    )
    arr["location/center_x_frac"] = df["x"].to_numpy(np.float64) / nx
    arr["location/center_y_frac"] = df["y"].to_numpy(np.float64) / ny
    arr["pick_stats/ncc_score"] = numeric_column(df, "score", 0.0).astype(np.float32)
    check_not_input(path, inputs)
    # np.save(name) would append ".npy"; a file handle keeps the name (and the atomic rename).
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def read_cs(path: Path) -> pd.DataFrame:
    """Picks from a particle ``.cs`` (x = center_x_frac · nx, y = frac · ny): the numpy format,
    or cryoSPARC's compressed CSDAT format where cryosparc-tools is installed."""
    with open(path, "rb") as fh:
        magic = fh.read(len(CSDAT_MAGIC))
    if magic == CSDAT_MAGIC:
        arr = _read_csdat(path)
    else:
        # np.load takes any other bytes for a pickle: refused, it said "holds Python objects"
        if magic != NUMPY_MAGIC:
            raise DracoInputError(
                "not a cryoSPARC .cs file: it starts with neither numpy's nor CSDAT's magic bytes",
                path,
            )
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises many types on corrupt files; all user errors
            why = str(exc)  # never pass on numpy's advice to load pickles
            if "pickle" in why:
                why = "it holds Python objects (pickled data), which are never loaded"
            raise DracoInputError(f"not a numpy-format cryoSPARC .cs file ({why})", path) from None
    names = set(arr.dtype.names or ())
    needs = {
        "location/micrograph_path",
        "location/micrograph_shape",
        "location/center_x_frac",
        "location/center_y_frac",
    }
    if arr.ndim != 1 or not needs <= names:
        raise DracoInputError(f"a particle .cs needs the fields {sorted(needs)}", path)
    shape = np.asarray(arr["location/micrograph_shape"], dtype=np.int64).reshape(-1, 2)
    if len(arr) and (shape <= 0).any():
        raise DracoInputError("location/micrograph_shape is zero; positions cannot be read", path)
    mic_paths = [p.decode(errors="replace") if isinstance(p, bytes) else str(p)
                 for p in arr["location/micrograph_path"]]  # fmt: skip
    df = make_coords(
        "",
        arr["location/center_x_frac"].astype(np.float64) * shape[:, 1],
        arr["location/center_y_frac"].astype(np.float64) * shape[:, 0],
        micrograph_path=mic_paths,
        micrograph_ny=shape[:, 0],
        micrograph_nx=shape[:, 1],
    )
    df["micrograph"] = [micrograph_stem(p) for p in mic_paths]
    if "pick_stats/ncc_score" in names:
        df["score"] = arr["pick_stats/ncc_score"].astype(np.float64)
    if "location/micrograph_psize_A" in names:  # 0 = unknown
        psize = arr["location/micrograph_psize_A"].astype(np.float64)
        df["pixel_size"] = np.where(psize > 0, psize, np.nan)
    return tidy_coords(df, path)


CSDAT_MAGIC = b"\x95CSDAT"  # cryoSPARC's compressed dataset format
NUMPY_MAGIC = b"\x93NUMPY"  # numpy's .npy format, cryoSPARC's default


def _read_csdat(path: Path) -> np.ndarray:
    """A CSDAT ``.cs`` as a numpy structured array, through cryosparc-tools (optional)."""
    try:
        from cryosparc.dataset import Dataset
    except ImportError:
        raise DracoInputError(
            "a compressed (CSDAT) cryoSPARC .cs: pip install cryosparc-tools to read it, or "
            "export the particles in the numpy format",
            path,
        ) from None
    try:
        return np.asarray(Dataset.load(path).to_records())
    except Exception as exc:  # a damaged file: cryosparc-tools raises many types
        raise DracoInputError(f"cannot read this CSDAT .cs ({exc})", path) from None


# --------------------------------------------------------------------------- dispatch


def guess_format(path: str | Path) -> str:
    """``star``, ``box``, ``topaz`` or ``cs`` from the extension, else from the first bytes."""
    path = Path(path)
    if path.suffix.lower() in COORD_FILE_FORMATS:
        return COORD_FILE_FORMATS[path.suffix.lower()]
    head = path.read_bytes()[:4096] if path.is_file() else b""
    if head.startswith((NUMPY_MAGIC, CSDAT_MAGIC)):
        return "cs"
    if b"data_" in head:
        return "star"
    if b"x_coord" in head:
        return "topaz"
    if head.strip() and all(len(line.split()) in (4, 5) for line in head.splitlines()[:5]):
        return "box"
    raise DracoInputError(
        f"cannot tell the coordinate format; pass --from {'|'.join(FORMATS)}", path
    )


def read_coords(path: str | Path, fmt: str | None = None, **options) -> pd.DataFrame:
    """Read picks from any supported file into the package convention.

    Args:
        path: a RELION coordinate / particle / ``coordinate_files`` STAR, ``.box``, Topaz text
            or cryoSPARC ``.cs``.
        fmt: one of :data:`FORMATS`; guessed from the file when None.
        options: for ``box``: ``invert_y`` and ``image_height``.

    Returns:
        DataFrame with ``micrograph``, ``x``, ``y`` (px, x = column, y = row) and optional
        ``score``, ``class_number``, ``psi``, extra columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DracoInputError("file not found" if not path.exists() else "not a file", path)
    fmt = fmt or guess_format(path)
    readers: dict[str, Callable[..., pd.DataFrame]] = {
        "star": _read_star_coords, "box": _read_box, "topaz": _read_topaz, "cs": read_cs
    }  # fmt: skip
    if fmt not in readers:
        raise DracoInputError(f"unknown coordinate format {fmt!r} (known: {FORMATS})", path)
    return readers[fmt](path, **options)


def coords_summary(path: str | Path) -> dict:
    """Particle and micrograph counts and coordinate ranges, for ``draco info``."""
    path = Path(path)
    fmt = guess_format(path)
    df = read_coords(path, fmt)
    out: dict = {
        "format": fmt,
        "kind": "coordinates",
        "n_particles": len(df),
        "n_micrographs": int(df["micrograph"].nunique()),
    }
    if len(df):
        out["x_range"] = [float(df["x"].min()), float(df["x"].max())]
        out["y_range"] = [float(df["y"].min()), float(df["y"].max())]
        if "score" in df.columns and df["score"].notna().any():
            out["score_range"] = [float(df["score"].min()), float(df["score"].max())]
    return out


#: The files in which ``draco pick predict`` writes every micrograph's picks again, beside its
#: ``coordinate_files.star`` index (pick/run.py).
PICKS_CS, PICKS_TOPAZ = "picks.cs", "picks_topaz.txt"
COLLECTIVE_FILES = (PICKS_CS, PICKS_TOPAZ)


def coord_folder_files(folder: Path) -> list[Path]:
    """The coordinate files a folder's picks are read from: one rule for every command.

    A RELION job folder (it holds ``job.star``) gives its index (:data:`RELION_INDEXES`), not
    its job and pipeline files; another folder gives every file with a coordinate extension
    (:data:`COORD_FILE_FORMATS`), except a ``coordinate_files.star`` index beside other files:
    it lists the same picks (``draco convert --to star`` writes both), which read both ways
    would count twice. ``draco pick predict``'s own folder (the index beside
    :data:`COLLECTIVE_FILES`, copies of the same picks) gives its index alone.
    """
    if (folder / "job.star").is_file():
        files = [folder / n for n in RELION_INDEXES if (folder / n).is_file()]
        if not files:
            raise DracoInputError(
                f"a RELION job folder without {', '.join(RELION_INDEXES)}: give its coordinate "
                "files or their index",
                folder,
            )
    else:
        files = visible_files(folder, COORD_FILE_FORMATS)
    names = {f.name for f in files}
    if "coordinate_files.star" in names and names <= {"coordinate_files.star", *COLLECTIVE_FILES}:
        # draco pick predict's folder: three copies of the same picks; the index, once
        return [folder / "coordinate_files.star"]
    return [f for f in files if f.name != "coordinate_files.star"] or files


def read_coord_folder(path: str | Path) -> dict[str, pd.DataFrame]:
    """Picks per micrograph stem from a folder of coordinate files (or one file).

    The files of :func:`coord_folder_files` are read; an empty per-micrograph file counts as a
    micrograph with no picks.
    """
    path = Path(path)
    if path.is_dir():
        files = coord_folder_files(path)
    elif path.exists():
        files = [path]
    else:
        raise DracoInputError("no such coordinate file or folder", path)
    out: dict[str, pd.DataFrame] = {}
    for f in files:
        df = read_coords(f)
        if df.empty:
            out.setdefault(strip_pick_suffix(micrograph_stem(f.stem)), df)
        for stem, group in df.groupby("micrograph"):
            out[str(stem)] = pd.concat([out.get(str(stem)), group], ignore_index=True)
    if not out:
        raise DracoInputError("no coordinate files found", path)
    return out
