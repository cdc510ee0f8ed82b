"""cryoSPARC particle ``.cs`` files: numpy structured arrays, one row per pick.

Fields follow cryosparc-tools (``uid``, ``location/*``, ``pick_stats/*``); positions are
fractions of the micrograph, ``x_px = location/center_x_frac · nx`` with
``location/micrograph_shape = [ny, nx]``. Written with numpy alone, so cryosparc-tools is only
needed to check the files (``tests/io/test_coords.py``). Use through
:func:`draco_em.io.coords.read_coords` / :func:`draco_em.io.coords.write_cs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path, check_not_input
from draco_em.io.coords import (
    make_coords,
    micrograph_paths,
    micrograph_stem,
    numeric_column,
    require_columns,
    tidy_coords,
)

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
        pixel_size: Å/px written to ``location/micrograph_psize_A`` (0 when unknown).

    Positions are fractions of the micrograph: ``center_x_frac = x / nx`` (cryoSPARC's
    ``x_px = frac · nx``).
    """
    require_columns(df, path)
    if micrograph_shape is not None:
        ny = np.full(len(df), int(micrograph_shape[0]))
        nx = np.full(len(df), int(micrograph_shape[1]))
    elif {"micrograph_ny", "micrograph_nx"} <= set(df.columns):
        ny, nx = df["micrograph_ny"].to_numpy(int), df["micrograph_nx"].to_numpy(int)
    else:
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
    arr["location/micrograph_psize_A"] = pixel_size or 0.0
    arr["location/center_x_frac"] = df["x"].to_numpy(np.float64) / nx
    arr["location/center_y_frac"] = df["y"].to_numpy(np.float64) / ny
    arr["pick_stats/ncc_score"] = numeric_column(df, "score", 0.0).astype(np.float32)
    check_not_input(path, inputs)
    # np.save(name) would append ".npy"; a file handle keeps the name (and the atomic rename).
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def read_cs(path: Path) -> pd.DataFrame:
    """Picks from a numpy-format particle ``.cs`` (x = center_x_frac · nx, y = frac · ny)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises many types on corrupt files; all are user errors
        raise DracoInputError(f"not a numpy-format cryoSPARC .cs file ({exc})", path) from None
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
    mic_paths = [bytes(p).decode(errors="replace") for p in arr["location/micrograph_path"]]
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
    return tidy_coords(df, path)
