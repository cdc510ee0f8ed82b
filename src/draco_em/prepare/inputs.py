"""Turn ``draco prepare``'s inputs into work items: movies, micrograph pairs, lone micrographs.

* Movies: ``.tif``/``.tiff``/``.eer``, ``.mrcs``, and ``.mrc``/``.st`` holding a 3D stack.
* Motion-corrected micrographs in MotionCor2/RELION naming: ``<name>.mrc`` with
  ``<name>_EVN.mrc`` and ``<name>_ODD.mrc`` (given, or found beside it); halves without the full
  sum are accepted (full = odd + even). ``<name>_DW.mrc`` (MotionCor2's dose-weighted sum) is
  skipped when ``<name>.mrc`` is there too.
* A RELION movies STAR (``rlnMicrographMovieName``) or micrographs STAR (``rlnMicrographName``,
  with RELION 5's ``rlnMicrographNameEven``/``rlnMicrographNameOdd`` when present).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.batch import PREPARE_SUFFIXES, expand_inputs
from draco_em.io.movie_base import MOVIE_SUFFIXES
from draco_em.io.movies import is_packed_4bit_mrc
from draco_em.io.mrc import read_mrc
from draco_em.io.star import (
    OPTICS_COLUMNS,
    MicrographTable,
    names_a_file,
    read_micrographs_star,
    read_star,
    refuse_unnamed,
)
from draco_em.prepare.config import PrepareConfig
from draco_em.prepare.triplets import PrepareItem

_HALF = re.compile(r"^(?P<base>.+)_(?P<half>EVN|ODD)$", re.IGNORECASE)
_EVEN_COLUMNS = ("rlnMicrographNameEven", "dracoMicrographEven")
_ODD_COLUMNS = ("rlnMicrographNameOdd", "dracoMicrographOdd")


def is_movie(path: Path) -> bool:
    """True for movie formats, and for ``.mrc``/``.st`` files holding more than one section."""
    suffix = path.suffix.lower()
    if suffix in MOVIE_SUFFIXES:
        return True
    if suffix not in (".mrc", ".st"):
        return False
    if is_packed_4bit_mrc(path):  # SerialEM names its 4-bit movies .mrc; mrcfile cannot read them
        return True
    return read_mrc(path, mmap=True, ndim=(2, 3)).data.ndim == 3


def plan_items(cfg: PrepareConfig) -> list[PrepareItem]:
    """Every input as a :class:`PrepareItem`, in input order, names unique.

    Raises:
        DracoInputError: nothing to do, an input matching nothing, or two items with one name.
    """
    stars = [s for s in cfg.inputs if s.lower().endswith(".star")]
    others = [s for s in cfg.inputs if not s.lower().endswith(".star")]
    items: list[PrepareItem] = []
    for star in stars:
        items += _items_from_star(Path(star))
    if others:
        paths = [it.path for it in expand_inputs(others, suffixes=PREPARE_SUFFIXES).items]
        items += _items_from_paths(paths)
    seen: dict[str, PrepareItem] = {}
    for item in items:
        if item.name in seen:
            raise DracoInputError(
                f"two inputs give the output name {item.name!r} "
                f"({seen[item.name].sources[0]} and {item.sources[0]})",
                item.sources[0],
            )
        seen[item.name] = item
    if not items:
        raise DracoInputError("no movies or micrographs among the inputs")
    return items


def _items_from_paths(paths: list[Path]) -> list[PrepareItem]:
    movies = [p for p in paths if is_movie(p)]
    items = [PrepareItem(name=p.stem, kind="movie", movie=p) for p in movies]
    groups: dict[Path, dict[str, Path]] = {}  # base path (no suffix) -> {full, even, odd}
    for path in paths:
        if path in movies:
            continue
        match = _HALF.match(path.stem)
        base, key = (match["base"], match["half"].upper()) if match else (path.stem, "full")
        role = {"EVN": "even", "ODD": "odd"}.get(key, "full")
        groups.setdefault(path.parent / base, {})[role] = path
    for base, files in groups.items():
        if base.name.endswith("_DW") and (base.parent / base.name[:-3]) in groups:
            continue  # MotionCor2's dose-weighted copy of a sum we already have
        if "full" in files and "even" not in files and "odd" not in files:
            files.update(_siblings(files["full"]))  # halves beside a sum given alone
        items.append(_micrograph_item(base.name, files, None))
    return items


def _micrograph_item(name: str, files: dict[str, Path], pixel_size: float | None) -> PrepareItem:
    even, odd, full = files.get("even"), files.get("odd"), files.get("full")
    # A half without the other (one still being copied) is a "pair" that fails on its own
    # (prepare_micrographs), not a refusal of the batch: the other items go on, and a re-run
    # (a watch's next one) prepares it once its other half is there.
    kind: Literal["pair", "single"] = "pair" if even is not None or odd is not None else "single"
    return PrepareItem(name, kind, full=full, even=even, odd=odd, pixel_size=pixel_size)


def _items_from_star(path: Path) -> list[PrepareItem]:
    """Items from a RELION movies STAR or micrographs STAR (paths resolved as RELION does)."""
    blocks = read_star(path)
    # A column of empty movie names (draco simulate --no-movies) is not a movies STAR.
    movies = [
        n
        for n, t in blocks.items()
        if n != "optics"
        and "rlnMicrographMovieName" in t
        and any(names_a_file(v) for v in t["rlnMicrographMovieName"])
    ]
    mics = [t for n, t in blocks.items() if n != "optics" and "rlnMicrographName" in t]
    if not movies and not mics:
        raise DracoInputError("no rlnMicrographMovieName or rlnMicrographName column", path)
    if movies:
        table = MicrographTable(path, blocks.get("optics"), blocks[movies[0]], movies[0])
        refuse_unnamed(table, "rlnMicrographMovieName")
    else:  # refuses an empty rlnMicrographName as every command does
        table = read_micrographs_star(path)
    items = []
    for i, row in table.micrographs.reset_index(drop=True).iterrows():
        px = table.pixel_size(int(i)) or _original_pixel_size(table, row)
        optics = _star_optics(table, int(i))
        if movies:
            movie = table.resolve(str(row["rlnMicrographMovieName"]))
            items.append(PrepareItem(movie.stem, "movie", movie=movie, pixel_size=px,
                                     optics=optics))  # fmt: skip
            continue
        full = table.resolve(str(row["rlnMicrographName"]))
        files = {"full": full}
        for role, columns in (("even", _EVEN_COLUMNS), ("odd", _ODD_COLUMNS)):
            value = next((row[c] for c in columns if c in row.index and names_a_file(row[c])), None)
            if value is not None:
                files[role] = table.resolve(str(value))
        if "even" not in files:  # no columns: MotionCor2 siblings beside the sum
            files.update(_siblings(full))
        item = _micrograph_item(full.stem, files, px)
        item.optics = optics
        items.append(item)
    return items


def _star_optics(table: MicrographTable, row_index: int) -> dict[str, float]:
    """Voltage, Cs and amplitude contrast of a STAR row (its own cell, else its optics
    group's), as :class:`PrepareItem` carries them; absent ones are left out."""
    found = {}
    for name, column in OPTICS_COLUMNS.items():
        # Cs may be 0 (a corrected microscope), the voltage may not
        value = table.positive_value(row_index, column, zero=name != "voltage")
        if value is not None:
            found[name] = value
    return found


def _siblings(full: Path) -> dict[str, Path]:
    found = {}
    for role, tag in (("even", "EVN"), ("odd", "ODD")):
        sibling = full.with_name(f"{full.stem}_{tag}{full.suffix}")
        if sibling.exists():
            found[role] = sibling
    return found


def _original_pixel_size(table: MicrographTable, row: pd.Series) -> float | None:
    """A movies STAR's ``rlnMicrographOriginalPixelSize`` (optics group), if any."""
    optics = table.optics
    if optics is None or "rlnMicrographOriginalPixelSize" not in optics:
        return None
    if "rlnOpticsGroup" in row.index and "rlnOpticsGroup" in optics:
        match = optics[optics["rlnOpticsGroup"] == row["rlnOpticsGroup"]]
        optics = match if len(match) else optics
    value = float(optics["rlnMicrographOriginalPixelSize"].iloc[0])
    return value if value > 0 else None
