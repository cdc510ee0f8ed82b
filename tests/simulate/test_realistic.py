"""The ``realistic`` preset: ranges validate, same seed = same bytes, coloured noise, junk,
preferred orientation, contrast polarity and the structure library (with and without it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from pydantic import ValidationError

from draco_em.cli import main
from draco_em.errors import DracoInputError
from draco_em.io.coords import read_coords
from draco_em.io.star import read_micrographs_star, read_star
from draco_em.simulate import detector
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.library import default_library_dir, read_library
from draco_em.simulate.micrograph import simulate_micrograph
from draco_em.simulate.phantoms import make_phantoms
from draco_em.simulate.presets import RealismConfig, draw_imaging
from draco_em.simulate.projection import Projector, preferred_orientations, random_orientations
from draco_em.simulate.run import run_simulation


def _realism(**kw) -> RealismConfig:
    """Phantoms only (no library: fast and independent of ../shared), unless asked."""
    return RealismConfig(**{"library": False, **kw})


def _cfg(outdir: Path, realism: RealismConfig | None = None, **kw) -> SimulateConfig:
    base = {
        "outdir": outdir,
        "n_micrographs": 2,
        "size": 192,
        "pixel_size": 2.0,
        "frames": 6,
        "n_phantoms": 2,
        "movies": False,
        "cache_dir": outdir.parent / "cache",
        "realism": realism or _realism(),
    }
    return SimulateConfig(**{**base, **kw})


def test_presets_validate():
    cfg = SimulateConfig(outdir=Path("u"))
    assert cfg.preset == "realistic" and cfg.realism == RealismConfig()
    assert (cfg.pixel_size, cfg.size) == (2.0, 1024)  # the training-set defaults
    classic = SimulateConfig(outdir=Path("u"), preset="classic")
    assert classic.realism is None and (classic.pixel_size, classic.size) == (1.0, 2048)
    given = SimulateConfig(outdir=Path("u"), pixel_size=1.0, size=2048)
    assert (given.pixel_size, given.size) == (1.0, 2048)
    again = SimulateConfig(**json.loads(cfg.model_dump_json()))  # as a resume reads it back
    assert again == cfg
    with pytest.raises(ValidationError, match="classic preset has no ranges"):
        SimulateConfig(outdir=Path("u"), preset="classic", realism=RealismConfig())
    for bad in (
        {"coverage_range": (0.5, 0.1)},
        {"coverage_range": (0.1, 0.9)},
        {"dose_range": (-1.0, 10.0)},
        {"detector_pixel_range": (0.0, 1.0)},
        {"field_range": (10, 20)},
        {"cameras": ()},
        {"cameras": ("k9",)},
    ):
        with pytest.raises(ValidationError):
            RealismConfig(**bad)


def test_draws_stay_in_range_and_bin_down_only():
    realism = RealismConfig(field_range=(2048, 4096))
    draws = [draw_imaging(np.random.default_rng([3, i]), realism, 2.0, 512) for i in range(200)]
    assert all(0.5 <= d.detector_pixel_size <= 2.0 and d.binning >= 1 for d in draws)
    assert all(10 <= d.dose <= 80 and 0.5 <= d.defocus <= 4 for d in draws)
    assert all(64 <= d.size <= 4096 and d.size % 2 == 0 for d in draws)
    assert {d.camera for d in draws} == {"k2", "k3", "falcon4"}
    assert 0.05 < np.mean([d.inverted for d in draws]) < 0.35  # 0.2 of them
    assert 0.15 < np.mean([d.preferred_spread > 0 for d in draws]) < 0.45  # 0.3 of them


def test_realistic_is_deterministic_and_seeded(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_simulation(_cfg(a), progress=False)
    run_simulation(_cfg(b), progress=False)
    run_simulation(_cfg(c, seed=1), progress=False)
    for rel in ("micrographs/mic_00002.mrc", "clean/mic_00002.mrc", "coordinates/mic_00002.star"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "micrographs/mic_00002.mrc").read_bytes() != (
        c / "micrographs/mic_00002.mrc"
    ).read_bytes()
    stored = json.loads((a / "simulate_config.json").read_text())
    assert stored["preset"] == "realistic" and stored["realism"]["dose_range"] == [10.0, 80.0]
    table = read_micrographs_star(a / "micrographs.star").micrographs
    assert set(table["dracoPreset"]) == {"realistic"}
    assert table["dracoDose"].nunique() == 2  # drawn per micrograph


def _radial_power(img: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum in 16 bins from 0 to Nyquist."""
    p = np.abs(np.fft.rfft2(img - img.mean())) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    idx = np.minimum((np.hypot(fy, fx) / 0.5 * 16).astype(int), 16)
    return np.bincount(idx.ravel(), p.ravel(), 17)[:16] / np.bincount(idx.ravel(), None, 17)[:16]


@pytest.fixture(scope="module")
def projectors_2a() -> list[Projector]:
    return [Projector(p, 2.0) for p in make_phantoms(0, 2, 2.0)]


def _flat(preset: str, **realism) -> SimulateConfig:
    """An empty field (no particles, junk, carbon or contamination): only noise and ice."""
    flat = {"particles_per_micrograph": 0, "size": 256, "pixel_size": 2.0, "frames": 6}
    if preset == "classic":
        return SimulateConfig(
            outdir=Path("u"),
            preset="classic",
            carbon_probability=0,
            contamination_probability=0,
            movies=False,
            **flat,
        )
    ranges = {"carbon_probability": 0.0, "contamination_probability": 0.0, **realism}
    return SimulateConfig(outdir=Path("u"), realism=_realism(**ranges), movies=False, **flat)


def test_realistic_noise_is_not_white_classic_is(projectors_2a):
    """Noise (full - clean) power at 0.4–0.5 cycles/px over that at 0.03–0.12: ~1 for
    classic's independent Poisson counts, well below 1 for a K2-like camera whose frames were
    bilinearly resampled by motion correction and not binned."""
    ratios = {}
    for preset in ("classic", "realistic"):
        cfg = _flat(
            preset,
            cameras=("k2",),
            interpolations=("bilinear",),
            detector_pixel_range=(2.0, 2.0),
            inverted_fraction=0.0,
        )
        power = np.mean(
            [
                _radial_power((m.full - m.clean).astype(np.float64))
                for m in (simulate_micrograph(cfg, i, projectors_2a) for i in range(2))
            ],
            axis=0,
        )
        ratios[preset] = power[13:].mean() / power[1:4].mean()
    assert 0.85 < ratios["classic"] < 1.15
    # Expected: NPS 0.7 × (1/3 per axis interpolation) → ~0.15 along the axes at Nyquist.
    assert ratios["realistic"] < 0.45


def test_noise_filter_keeps_the_expectation(projectors_2a):
    """Colouring filters zero-mean noise only: the mean of the sum stays the clean image's."""
    cfg = _flat("realistic", dose_range=(40.0, 40.0), inverted_fraction=0.0)
    mic = simulate_micrograph(cfg, 0, projectors_2a)
    assert abs(mic.full.mean() / mic.clean.mean() - 1) < 0.01
    assert np.array_equal(mic.full, mic.even + mic.odd)


def test_small_contaminants_are_thinner_only_in_the_realistic_preset():
    """The thickness scale applies to the small contaminants of good micrographs, never to the
    contamination class's (``big``); 1 reproduces classic's draws exactly."""
    from draco_em.simulate import sample

    def extra(scale: float, big: bool) -> np.ndarray:
        rng = np.random.default_rng(3)
        return sample.contamination(rng, (96, 96), 2.0, 2, 1, big=big, thickness_scale=scale)[0]

    np.testing.assert_allclose(extra(0.1, False), 0.1 * extra(1.0, False), rtol=1e-5, atol=1e-3)
    assert extra(1.0, False).max() > 0
    assert np.array_equal(extra(0.1, True), extra(1.0, True))


def test_realistic_contaminants_are_grey_not_black(projectors_2a):
    """Calibrated on real micrographs (docs/simulator.md): with the preset's scales the darkest
    contaminant pixels of the same micrograph lie far less deep below the background than with
    classic's thickness and Bragg loss (scales 1)."""
    depth = {}
    for scale in (1.0, 0.1):
        cfg = _flat(
            "realistic",
            contamination_probability=1.0,
            contaminant_thickness_scale=scale,
            bragg_loss_scale=scale,
            inverted_fraction=0.0,
            dose_range=(40.0, 40.0),
        ).model_copy(update={"size": 384})
        img = simulate_micrograph(cfg, 1, projectors_2a).clean.astype(np.float64)
        depth[scale] = (np.median(img) - img.min()) / np.median(img)
    assert depth[1.0] > 0.1  # classic's contaminants: > 10 % of the beam lost
    assert depth[0.1] < 0.5 * depth[1.0]


def test_inverted_polarity_mirrors_the_clean_image(projectors_2a):
    cfg_n = _flat("realistic", inverted_fraction=0.0)
    cfg_i = _flat("realistic", inverted_fraction=1.0)
    normal = simulate_micrograph(cfg_n, 0, projectors_2a)
    inverted = simulate_micrograph(cfg_i, 0, projectors_2a)  # same stream, same draws
    m = normal.clean.mean()
    np.testing.assert_allclose(inverted.clean, 2 * m - normal.clean, rtol=0, atol=1e-3 * m)
    np.testing.assert_allclose(inverted.full, 2 * m - normal.full, rtol=0, atol=1e-3 * m)
    assert inverted.imaging.inverted and not normal.imaging.inverted


def test_interpolation_transfer_known_values():
    f = np.array([0.0, 0.25, 0.5])
    signal, noise = detector.interpolation_transfer("bilinear", f)
    np.testing.assert_allclose(noise, [1.0, 2 / 3, 1 / 3], atol=1e-3)  # 1 - (1 - cos 2πf)/3
    np.testing.assert_allclose(signal[[0, 2]], [1.0, 4 / np.pi**2], atol=1e-3)
    s_cubic, n_cubic = detector.interpolation_transfer("bicubic", f)
    assert 1 / 3 < n_cubic[2] < 1 and s_cubic[0] == pytest.approx(1.0)
    assert np.all(detector.interpolation_transfer("fourier", f)[1] == 1)


def test_junk_is_recorded_apart_from_particles(tmp_path):
    out = tmp_path / "junk"
    realism = _realism(junk_range=(1.0, 1.0), coverage_range=(0.3, 0.3))
    cfg = _cfg(out, realism, n_micrographs=1, size=384, pixel_size=4.0)
    run_simulation(cfg, progress=False)
    star = out / "coordinates/mic_00001.star"
    blocks = read_star(star)
    junk = blocks["junk"]
    assert len(junk) > 0
    assert set(junk["dracoJunkKind"]) <= {"denatured", "fragment", "ice_ball"}
    particles = read_coords(star)  # the particle reader must not see junk rows
    assert len(particles) == len(blocks[""])
    d = np.hypot(
        particles["x"].to_numpy()[:, None] - junk["dracoJunkX"].to_numpy()[None, :],
        particles["y"].to_numpy()[:, None] - junk["dracoJunkY"].to_numpy()[None, :],
    )
    assert d.min() > 5  # never on a particle
    row = read_micrographs_star(out / "micrographs.star").micrographs.iloc[0]
    assert int(row["dracoNumJunk"]) == len(junk)


def test_preferred_orientations_concentrate():
    rng = np.random.default_rng(0)
    _, view = random_orientations(rng, 1)
    _, mats = preferred_orientations(rng, 500, view[0], 10.0)
    beam = mats[:, :, 2]  # R @ e_z: the map direction along the beam
    angle = np.degrees(np.arccos(np.clip(beam @ view[0][:, 2], -1, 1)))
    assert np.median(angle) == pytest.approx(10.0 * np.sqrt(2 * np.log(2)), rel=0.15)
    _, uniform = random_orientations(rng, 500)
    assert np.median(np.degrees(np.arccos(uniform[:, 2, 2]))) > 60


def test_library_refuses_ribosomes_and_filters_by_size(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.pdb").write_text("")
    (lib / "b.pdb").write_text("")
    (lib / "structures.csv").write_text("pdb_id,file,name,max_dim_A\nA,a.pdb,x,80\nB,b.pdb,y,200\n")
    assert [e.name for e in read_library(lib, (50, 100))] == ["a.pdb"]
    with pytest.raises(DracoInputError, match="no structure"):
        read_library(lib, (300, 400))
    (lib / "structures.csv").write_text("pdb_id,file,name,max_dim_A\n4V5D,b.pdb,70S ribosome,250\n")
    with pytest.raises(DracoInputError, match="ribosome"):
        read_library(lib)


def test_without_library_falls_back_to_phantoms(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DRACO_STRUCTURES", str(tmp_path / "absent"))
    assert default_library_dir() is None
    out = tmp_path / "nolib"
    with caplog.at_level(logging.WARNING):
        run_simulation(_cfg(out, RealismConfig(), n_micrographs=1), progress=False)
    assert "structure library not found" in caplog.text
    # the variable is set, so the warning names it instead of asking to set it
    assert f"DRACO_STRUCTURES={tmp_path / 'absent'} is not a folder" in caplog.text
    coords = read_coords(out / "coordinates/mic_00001.star")
    assert coords["dracoStructure"].str.startswith("phantom").all()


def test_default_library_gives_real_structures(tmp_path, shared_data, monkeypatch):
    monkeypatch.delenv("DRACO_STRUCTURES", raising=False)
    folder = default_library_dir()
    if folder is None:
        pytest.skip("no structure library beside the repository")
    entries = read_library(folder)
    assert len(entries) >= 30
    out = tmp_path / "lib"
    realism = RealismConfig(particle_size_range=(60.0, 70.0), coverage_range=(0.2, 0.2))
    run_simulation(_cfg(out, realism, n_micrographs=1, size=256), progress=False)
    coords = read_coords(out / "coordinates/mic_00001.star")
    assert len(coords) > 0 and (coords["dracoStructure"] == "4hhb").all()  # the one ≤ 70 Å


def test_cli_preset_option(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "simulate",
        "-o",
        str(out),
        "--n-micrographs",
        "1",
        "--size",
        "128",
        "--pixel-size",
        "3",
    ]
    args += ["--frames", "4", "--no-movies", "-q", "--no-library", "--dose", "30"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--cache-dir", str(tmp_path / "c")])
    assert exc.value.code in (0, None)
    stored = json.loads((out / "simulate_config.json").read_text())
    assert stored["preset"] == "realistic" and stored["realism"]["dose_range"] == [30.0, 30.0]
    with mrcfile.open(out / "micrographs/mic_00001.mrc") as m:
        assert m.data.shape == (128, 128)
    for bad in (["--preset", "lifelike"], ["--preset", "classic", "--no-library"]):
        with pytest.raises(SystemExit) as exc:
            main(["simulate", "-o", str(tmp_path / "bad"), *bad])
        assert exc.value.code == 2


def test_cli_refuses_a_size_range_without_the_library(tmp_path, capsys):
    """--particle-size-range filters the library: with --no-library it was silently ignored
    (phantoms of any size); now one line and exit 2, before anything is made."""
    out = tmp_path / "nolib"
    args = ["simulate", "-o", str(out), "--no-library", "--particle-size-range", "50", "100"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--n-micrographs", "1", "--size", "128", "--no-movies", "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--particle-size-range" in err and "--no-library" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "micrographs.star").exists()


@pytest.mark.slow
@pytest.mark.dist
def test_realistic_parallel_workers_give_the_same_bytes(tmp_path):
    """-j 2 (spawned workers with lazily built projectors) makes what -j 1 made."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_simulation(_cfg(one, n_micrographs=3, bad_fraction=0.34), progress=False)
    run_simulation(_cfg(two, n_micrographs=3, bad_fraction=0.34, jobs=2), progress=False)
    for name in ("mic_00001", "mic_00002", "mic_00003"):
        rel = f"micrographs/{name}.mrc"
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


def test_a_held_out_structure_given_by_hand_is_warned_about(tmp_path, caplog):
    """The library refuses ribosomes; one given with --structures (how the evaluation sets
    are made) passed without a word, though the docs said a training set never holds one."""
    from draco_em.simulate.run import structure_files

    ribo = tmp_path / "4V5D_ribosome.pdb"
    ribo.write_text("END\n")
    cfg = _cfg(tmp_path / "o", RealismConfig(library=False), structures=[ribo])
    with caplog.at_level(logging.WARNING):
        assert structure_files(cfg) == [ribo]
    assert "4V5D_ribosome.pdb: held out for evaluation" in caplog.text
