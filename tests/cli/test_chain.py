"""The RELION project chain of issue 16: simulate → prepare → curate → pick → convert.

Run in a temporary project folder (the working directory, as RELION runs its jobs), not the
repository. Every STAR written must load in ``starfile``, name its files so they resolve from the
project folder (RELION's rule, docs/conventions.md "Paths in STAR files"), and the coordinate
index must name each micrograph exactly as the micrographs STAR it was picked from does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from draco_em.io.batch import expand_inputs
from draco_em.io.star import PATH_COLUMNS, project_path, read_micrographs_star
from tests.conftest import draco_in_process


def _names_resolve_from(project: Path, star: Path) -> None:
    """Every file a STAR names exists relative to ``project`` (RELION's only lookup)."""
    for block in starfile.read(star, always_dict=True).values():
        for column in block.columns:
            if column in PATH_COLUMNS or column == "rlnMicrographCoordinates":
                for name in block[column].astype(str):
                    if name not in ("", "nan"):
                        assert not Path(name).is_absolute(), (star, column, name)
                        assert (project / name).is_file(), (star, column, name)


def test_simulate_prepare_curate_pick_convert_chain(tmp_path, capsys, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)  # RELION runs jobs from the project folder; not the repo

    def draco(*argv: str) -> str:
        code, out, err = draco_in_process(capsys, *argv, "-q")
        assert code == 0, (argv, out, err)
        return out

    draco("simulate", "-o", "Simulate/job001", "--n-micrographs", "3", "--size", "256",
          "--pixel-size", "4", "--no-movies", "--seed", "3")  # fmt: skip
    # prepare takes simulate's manifest directly (its _dracoMicrographEven/Odd halves).
    draco("prepare", "Simulate/job001/micrographs.star", "-o", "Prepare/job002")
    draco("curate", "predict", "Prepare/job002/triplets.star", "-o", "Curate/job003",
          "--threshold", "0")  # fmt: skip
    accepted = Path("Curate/job003/micrographs_accepted.star")
    draco("pick", "predict", str(accepted), "-o", "Pick/job004", "--diameter", "150",
          "--format", "star,cs")  # fmt: skip
    draco("convert", "Pick/job004/coordinate_files.star", "-o", "Convert/job005", "--to",
          "star", "--micrographs", str(accepted))  # fmt: skip
    draco("convert", "Pick/job004/coordinate_files.star", "-o", "Convert/job006/picks.cs",
          "--to", "cs", "--micrograph-shape", "256x256", "--pixel-size", "4")  # fmt: skip

    stars = sorted(project.rglob("*.star"))
    assert len(stars) >= 3 + 3 + 3 + 1 + 3  # coordinates, manifests, lists, indexes
    for star in stars:
        starfile.read(star, always_dict=True)  # each loads in starfile
    for star in [
        Path("Simulate/job001/micrographs.star"),
        Path("Prepare/job002/triplets.star"),
        accepted,
        Path("Pick/job004/coordinate_files.star"),
        Path("Convert/job005/coordinate_files.star"),
    ]:
        _names_resolve_from(project, star)

    # The coordinate indexes name micrographs exactly as the micrographs STAR picked from.
    listed = list(starfile.read(accepted, always_dict=True)["micrographs"]["rlnMicrographName"])
    assert len(listed) == 3
    for index in ("Pick/job004/coordinate_files.star", "Convert/job005/coordinate_files.star"):
        names = list(
            starfile.read(index, always_dict=True)["coordinate_files"]["rlnMicrographName"]
        )
        assert names == listed, index
    assert listed == [
        project_path(p) for p in sorted(Path("Prepare/job002").glob("mic_*[0-9].mrc"))
    ]

    # The .cs files load as numpy structured arrays and in cryosparc-tools (declared in [test]).
    for cs in (Path("Pick/job004/picks.cs"), Path("Convert/job006/picks.cs")):
        with open(cs, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
        assert len(arr) > 0 and "location/center_x_frac" in arr.dtype.names
        dataset = pytest.importorskip("cryosparc.dataset").Dataset.load(str(cs))
        assert len(dataset) == len(arr)
    paths = {
        p.decode() for p in np.load(open("Pick/job004/picks.cs", "rb"))["location/micrograph_path"]
    }
    assert paths == set(listed)  # the same names as the index

    # Read back from another working directory: the STARs still resolve (the project folder is
    # above them), so a chain can go on from anywhere.
    monkeypatch.chdir(tmp_path)
    items = expand_inputs([project / accepted]).items
    assert len(items) == 3 and all(it.path.is_file() for it in items)
    assert os.path.samefile(items[0].path, project / listed[0])
    table = read_micrographs_star(project / "Prepare/job002/triplets.star")
    even = table.resolve(str(table.micrographs["dracoMicrographEven"].iloc[0]))
    assert even.is_file()
    picks = pd.read_csv(project / "Curate/job003/curation.csv")
    assert len(picks) == 3
