"""Growing a simulated set: a re-run with a larger ``--n-micrographs`` adds the missing
micrographs, each identical to the one a run of the larger count makes (until session 24 it
was refused as "other settings")."""

from __future__ import annotations

from pathlib import Path

import pytest

from draco_em.errors import DracoInputError
from draco_em.io.star import project_path, read_micrographs_star
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.run import run_simulation
from tests.conftest import draco_in_process
from tests.simulate.test_run import _cfg as small_set


def _cfg(outdir: Path, **kw) -> SimulateConfig:
    """test_run's small classic set, smaller still (128², 3 Å/px, 4 frames)."""
    return small_set(outdir, **{"size": 128, "pixel_size": 3.0, "frames": 4,
                                "particles_per_micrograph": 4, **kw})  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    """Every file but the settings, the manifest with its own folder's name taken out."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_file() and rel != "simulate_config.json" and not path.name.startswith("."):
            out[rel] = path.read_bytes()
    star = out["micrographs.star"].decode().replace(project_path(folder), "OUT")
    out["micrographs.star"] = star.encode()
    return out


def test_a_larger_count_adds_the_missing_micrographs_as_a_run_of_that_count_makes_them(tmp_path):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    run_simulation(_cfg(grown), progress=False)
    first = (grown / "micrographs" / "mic_00001.mrc").stat().st_mtime_ns
    summary = run_simulation(_cfg(grown, n_micrographs=3), progress=False)
    assert (summary.made, summary.skipped, summary.failed) == (1, 2, 0)
    assert (grown / "micrographs" / "mic_00001.mrc").stat().st_mtime_ns == first  # kept
    assert len(read_micrographs_star(grown / "micrographs.star").micrographs) == 3
    run_simulation(_cfg(fresh, n_micrographs=3), progress=False)
    assert _files(grown) == _files(fresh)  # movies, sums, truth, labels and manifest alike
    assert '"n_micrographs": 3' in (grown / "simulate_config.json").read_text()


def test_growing_is_refused_where_the_set_would_change(tmp_path):
    out = tmp_path / "r"
    run_simulation(_cfg(out, movies=False, bad_fraction=0.34), progress=False)  # 1 bad of 2
    before = _files(out)
    # round(0.34 × 3) = 1 bad again, but the draw over 3 picks another: mic_00001 would change
    with pytest.raises(DracoInputError, match=r"cannot grow this set from 2 to 3 micrographs: "
                                              r"with --bad-fraction 0\.34"):  # fmt: skip
        run_simulation(_cfg(out, movies=False, bad_fraction=0.34, n_micrographs=3), progress=False)
    with pytest.raises(DracoInputError, match=r"other settings \(dose 40\.0 → 20\.0\)"):
        run_simulation(_cfg(out, movies=False, bad_fraction=0.34, n_micrographs=3, dose=20.0),
                       progress=False)  # fmt: skip
    with pytest.raises(DracoInputError, match="holds a set of 2 micrographs; --n-micrographs 1"):
        run_simulation(_cfg(out, movies=False, bad_fraction=0.34, n_micrographs=1), progress=False)
    assert _files(out) == before  # nothing written by a refused run
    assert '"n_micrographs": 2' in (out / "simulate_config.json").read_text()


def test_cli_grows_a_set(tmp_path, capsys):
    args = ["--preset", "classic", "--size", "128", "--pixel-size", "3", "--frames", "4",
            "--no-movies", "-q", "--cache-dir", tmp_path / "c"]  # fmt: skip
    code, _, err = draco_in_process(capsys, "simulate", "-o", tmp_path / "s", "--n-micrographs",
                                    "1", *args)  # fmt: skip
    assert code == 0, err
    code, out, err = draco_in_process(capsys, "simulate", "-o", tmp_path / "s",
                                      "--n-micrographs", "2", *args)  # fmt: skip
    assert code == 0 and "1 made, 1 already there, 0 failed" in out, err
