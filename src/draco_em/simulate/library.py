"""The structure library: real assemblies that ``realistic`` simulations draw particles from.

By default the 34 whole assemblies of ``shared/data/structures`` (PDB/mmCIF files listed in
``structures.csv`` with their maximum dimension), found next to the repository (the layout the
test suite uses) or at ``$DRACO_STRUCTURES``. Where neither exists the simulator falls back to
the built-in phantoms and says so in the log.

Ribosomes are held out for evaluation: the default library path refuses any entry whose file
name, PDB id or name says 4V5D, 70S or ribosome, so no library set contains one; one given by
``--structures`` (how the evaluation sets are made) is warned about.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from draco_em.errors import DracoInputError

log = logging.getLogger(__name__)

#: Environment variable naming the library folder (overrides the repository-relative default).
ENV_VAR = "DRACO_STRUCTURES"
#: Held-out evaluation structures: never in a training library.
HELD_OUT = re.compile(r"4v5d|70s|ribosom", re.IGNORECASE)


@dataclass(frozen=True)
class LibraryEntry:
    """One structure of the library."""

    path: Path
    name: str
    max_dim: float  # Å (largest CA/P distance, from structures.csv)


def default_library_dir() -> Path | None:
    """``$DRACO_STRUCTURES``, else ``<repo>/../shared/data/structures``; None when absent.

    The second is where a checkout of this project sits beside its shared data (the same place
    ``tests/conftest.py`` looks); an installed package has no such folder and gets None.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env) if Path(env).is_dir() else None
    shared = os.environ.get("DRACO_SHARED_DATA")
    repo = Path(__file__).resolve().parents[3]
    base = Path(shared) if shared else repo.parent / "shared" / "data"
    folder = base / "structures"
    return folder if (folder / "structures.csv").is_file() else None


def read_library(
    folder: Path, size_range: tuple[float, float] = (0.0, float("inf"))
) -> list[LibraryEntry]:
    """The entries of ``folder/structures.csv`` whose max dimension lies in ``size_range`` (Å).

    Raises:
        DracoInputError: no readable ``structures.csv``, a listed file missing, a held-out
            (ribosome) entry, or no entry in the size range.
    """
    table_path = Path(folder) / "structures.csv"
    try:
        table = pd.read_csv(table_path)
    except (OSError, ValueError) as exc:
        raise DracoInputError(f"not a readable structure table ({exc})", table_path) from None
    missing = {"file", "max_dim_A"} - set(table.columns)
    if missing:
        raise DracoInputError(f"structures.csv lacks columns {sorted(missing)}", table_path)
    entries = []
    for row in table.itertuples(index=False):
        label = f"{row.file} {getattr(row, 'pdb_id', '')} {getattr(row, 'name', '')}"
        if HELD_OUT.search(label):
            raise DracoInputError(
                f"lists {row.file}, a ribosome: ribosomes are held out for evaluation and must "
                "not be in a training library",
                table_path,
            )
        path = Path(folder) / str(row.file)
        if not path.is_file():
            raise DracoInputError("structure file listed in structures.csv not found", path)
        max_dim = float(row.max_dim_A)
        if size_range[0] <= max_dim <= size_range[1]:
            entries.append(LibraryEntry(path, str(row.file), max_dim))
    if not entries:
        raise DracoInputError(
            f"no structure with a max dimension in {size_range[0]:g}–{size_range[1]:g} Å",
            table_path,
        )
    return entries
