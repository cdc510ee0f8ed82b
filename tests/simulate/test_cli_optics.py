"""``draco simulate --defocus-range/--ice-thickness-range/--voltage/--cs``: on the command line
since session 24 (they were SimulateConfig fields only), each replacing the preset's value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from draco_em.io.coords import read_coords
from draco_em.io.star import read_micrographs_star
from tests.conftest import draco_in_process

SMALL = ["--size", "128", "--frames", "4", "--no-movies", "-q", "--n-micrographs", "2"]


def _simulate(capsys, out: Path, *args: str) -> tuple[np.ndarray, dict, list[dict]]:
    """(micrograph rows' defocus and ice, the optics row, each micrograph's meta record)."""
    code, _, err = draco_in_process(capsys, "simulate", "-o", out, *SMALL,
                                    "--cache-dir", out.parent / "cache", *args)  # fmt: skip
    assert code == 0, err
    table = read_micrographs_star(out / "micrographs.star")
    rows = table.micrographs
    assert table.optics is not None
    values = rows[["rlnDefocusU", "rlnDefocusV", "dracoIceThickness"]].to_numpy(float)
    metas = [json.loads(p.read_text()) for p in sorted((out / "meta").glob("*.json"))]
    return values, table.optics.iloc[0].to_dict(), metas


def test_classic_takes_the_given_optics_and_ice(tmp_path, capsys):
    values, optics, _ = _simulate(
        capsys, tmp_path / "c", "--preset", "classic", "--pixel-size", "3",
        "--defocus-range", "3", "3", "--ice-thickness-range", "400", "400",
        "--voltage", "200", "--cs", "0.01",
    )  # fmt: skip
    mean_defocus = (values[:, 0] + values[:, 1]) / 2  # Å; astigmatism is ± around it
    np.testing.assert_allclose(mean_defocus, 30000.0, rtol=1e-6)
    assert np.all(np.abs(values[:, 2] - 400) < 60)  # the field's mean: ±10 % texture, gradient
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"]) == (200.0, 0.01)


def test_realistic_draws_within_the_given_ranges_and_nothing_else_moves(tmp_path, capsys):
    base = ["--no-library", "--pixel-size", "4"]
    _, optics, plain = _simulate(capsys, tmp_path / "plain", *base)
    values, given_optics, given = _simulate(
        capsys, tmp_path / "given", *base, "--defocus-range", "1", "1",
        "--ice-thickness-range", "300", "300", "--voltage", "120", "--cs", "1.4",
    )  # fmt: skip
    np.testing.assert_allclose((values[:, 0] + values[:, 1]) / 2, 10000.0, rtol=1e-6)
    for meta in given:
        assert meta["imaging"]["defocus"] == 1.0
        assert meta["imaging"]["ice_thickness_range"] == [270.0, 330.0]  # ± 10 % of 300 Å
    assert (given_optics["rlnVoltage"], given_optics["rlnSphericalAberration"]) == (120.0, 1.4)
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"]) == (300.0, 2.7)
    # Each range is still one draw: the micrograph's other draws are those of the plain run.
    moved = {"defocus", "ice_thickness_range"}
    for a, b in zip(plain, given, strict=True):
        assert {k: v for k, v in a["imaging"].items() if k not in moved} == {
            k: v for k, v in b["imaging"].items() if k not in moved
        }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--defocus-range", "2", "1"], "invalid --defocus-range: must satisfy 0 < min <= max"),
        (["--preset", "classic", "--defocus-range", "0", "1"], "invalid --defocus-range: "),
        (["--ice-thickness-range", "300", "inf"], "invalid --ice-thickness-range: "),
        (["--preset", "classic", "--ice-thickness-range", "-5", "9"],
         "invalid --ice-thickness-range: "),
        (["--voltage", "5"], "invalid --voltage: "),
        (["--cs", "-1"], "invalid --cs: "),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_and_makes_nothing(tmp_path, capsys, args, message):
    code, _, err = draco_in_process(capsys, "simulate", "-o", tmp_path / "s", *args)
    assert code == 2 and err.startswith(f"draco: error: {message}") and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_library_dir_points_an_installed_package_at_the_library(
    tmp_path, capsys, monkeypatch, shared_data
):
    """An installed package has no shared/data beside it, and only $DRACO_STRUCTURES told it
    where the library was; `--library-dir` does so on the command line (session 24)."""
    library = shared_data / "structures"
    if not (library / "structures.csv").is_file():
        pytest.skip("no structure library in shared/data")
    monkeypatch.setenv("DRACO_STRUCTURES", str(tmp_path / "absent"))  # as if installed
    out = tmp_path / "lib"
    code, _, err = draco_in_process(
        capsys, "simulate", "-o", out, "--size", "256", "--no-movies", "-q",
        "--n-micrographs", "1", "--cache-dir", tmp_path / "cache",
        "--library-dir", library, "--particle-size-range", "60", "70",
    )  # fmt: skip
    assert code == 0 and "structure library not found" not in err, err
    coords = read_coords(out / "coordinates" / "mic_00001.star")
    assert len(coords) and (coords["dracoStructure"] == "4hhb").all()  # the one of 60–70 Å


@pytest.mark.parametrize("extra", [["--preset", "classic"], ["--no-library"], []])
def test_library_dir_refusals(tmp_path, capsys, extra):
    """A folder without structures.csv, or a preset that reads no library: one line, exit 2."""
    folder = tmp_path / "empty"
    folder.mkdir()
    code, _, err = draco_in_process(capsys, "simulate", "-o", tmp_path / "o", *SMALL,
                                    "--library-dir", folder, *extra)  # fmt: skip
    assert code == 2 and "--library-dir" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
