"""draco evaluate realism: figures that separate unlike sets and accept like ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from draco_em.evaluate.realism import RealismConfig, evaluate_realism, radial_spectrum
from draco_em.io.mrc import write_mrc
from tests.conftest import SHARED_DATA, run_draco


def _white(rng: np.random.Generator, n: int = 512) -> np.ndarray:
    return rng.normal(0.0, 1.0, (n, n)).astype(np.float32)


def _smooth(rng: np.random.Generator, n: int = 512) -> np.ndarray:
    return gaussian_filter(rng.normal(0.0, 1.0, (n, n)), 2.0).astype(np.float32)


def _write_sets(tmp_path: Path, rng, sim_fn, real_fn, n_sim=3, n_real=4) -> tuple[Path, Path]:
    sim, real = tmp_path / "sim", tmp_path / "real"
    sim.mkdir()
    real.mkdir()
    for i in range(n_sim):
        write_mrc(sim / f"s{i}.mrc", sim_fn(rng), pixel_size=2.0)
    for i in range(n_real):  # real ones as 8-bit PNG renderings, min-max scaled
        img = real_fn(rng)
        img = np.round(255 * (img - img.min()) / np.ptp(img)).astype(np.uint8)
        Image.fromarray(img).save(real / f"r{i}.png")
    return sim, real


def test_radial_spectrum_of_white_noise_is_flat(rng: np.random.Generator) -> None:
    freq, power = radial_spectrum(_white(rng, 512), 1.5)
    assert freq[-1] == pytest.approx(0.5 / 1.5)  # up to Nyquist, in 1/Å
    assert np.all(np.abs(np.log10(power[2:])) < 0.15)  # unit variance, flat


def test_like_sets_are_inside(tmp_path: Path, rng: np.random.Generator) -> None:
    sim, real = _write_sets(tmp_path, rng, _white, _white)
    cfg = RealismConfig(
        sim=[str(sim)], real=[str(real)], pixel_size=2.0, outdir=tmp_path / "out",
        features=False,
    )  # fmt: skip
    result = evaluate_realism(cfg, progress=False)
    figs = result["figures"]
    assert figs["power_spectrum"]["inside"], figs["power_spectrum"]["verdict"]
    assert figs["hf_slope"]["inside"] and figs["low_high_log10"]["inside"]
    assert abs(result["sets"]["sim"]["summary"]["hf_slope"]["median"]) < 0.2  # white
    saved = json.loads((tmp_path / "out" / "realism.json").read_text())
    assert len(saved["sets"]["real"]["micrographs"]) == 4
    assert (tmp_path / "out" / "realism.png").stat().st_size > 10_000


def test_unlike_sets_are_outside(tmp_path: Path, rng: np.random.Generator) -> None:
    """White simulated noise against smooth 'real' images: the spectrum, its slope and ratio
    are outside; the encoder features (bundled draco_tiny) put the sets apart too."""
    sim, real = _write_sets(tmp_path, rng, _white, _smooth)
    cfg = RealismConfig(
        sim=[str(sim)], real=[str(real)], pixel_size=2.0, outdir=tmp_path / "out",
        device="cpu",
    )  # fmt: skip
    figs = evaluate_realism(cfg, progress=False)["figures"]
    assert not figs["power_spectrum"]["inside"]
    assert "below" in figs["power_spectrum"]["verdict"]  # white noise lacks the low frequencies
    assert not figs["hf_slope"]["inside"] and not figs["low_high_log10"]["inside"]
    enc = figs["encoder_features"]
    assert not enc["inside"] and enc["mean_distance_over_real_spread"] > 1.0


def test_cli_prints_one_verdict_per_figure(tmp_path: Path, rng: np.random.Generator) -> None:
    sim, real = _write_sets(tmp_path, rng, _white, _white, n_sim=2, n_real=2)
    proc = run_draco(
        "evaluate", "realism", "--sim", sim, "--real", real, "--pixel-size", "2",
        "-o", tmp_path / "out", "--no-features", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("sim n=2 vs real n=2 at 2 Å/px")
    assert len(lines) == 7 and all("spread" in line for line in lines[1:])
    missing = run_draco("evaluate", "realism", "--sim", sim, "--real", real, "-o", tmp_path / "o2")
    assert missing.returncode == 2
    assert "carry no pixel size; pass --pixel-size" in missing.stderr


@pytest.mark.slow
def test_real_micassess_against_itself(tmp_path: Path) -> None:
    """Half of the real MicAssess set against the other half sits inside on the spectrum."""
    files = sorted((SHARED_DATA / "micassess" / "micrographs").glob("*.png"))
    if not files:
        pytest.skip(f"no real MicAssess PNGs under {SHARED_DATA}")
    cfg = RealismConfig(
        sim=[str(f) for f in files[::2]], real=[str(f) for f in files[1::2]],
        sim_pixel_size=7.0, pixel_size=7.0, outdir=tmp_path, device="cpu",
    )  # fmt: skip
    figs = evaluate_realism(cfg, progress=False)["figures"]
    assert figs["power_spectrum"]["inside"], figs["power_spectrum"]["verdict"]
    assert figs["encoder_features"]["inside"], figs["encoder_features"]["verdict"]


def test_micrographs_smaller_than_a_welch_tile(tmp_path: Path, rng: np.random.Generator) -> None:
    """Real images of 200 px (one short spectrum) against 512-px simulations: one grid."""
    sim, real = _write_sets(tmp_path, rng, _white, lambda r: _white(r, 200), n_sim=2, n_real=2)
    cfg = RealismConfig(
        sim=[str(sim)], real=[str(real)], pixel_size=2.0, outdir=tmp_path / "out",
        features=False,
    )  # fmt: skip
    result = evaluate_realism(cfg, progress=False)
    freq = result["spectrum"]["freq_per_A"]
    assert len(freq) == len(result["spectrum"]["sim"]["median_log10"]) < 32
    assert freq[-1] == pytest.approx(0.25, rel=0.05)  # still up to Nyquist of 2 Å/px


def test_feature_view_matches_curation_defaults():
    """Realism's encoder features use draco curate's default tiles (restated below curate)."""
    from draco_em.curate.config import FeatureConfig
    from draco_em.evaluate import realism

    cfg = FeatureConfig()
    assert (cfg.tile, cfg.max_tiles, cfg.clip_sigma) == (
        realism.FEATURE_TILE,
        realism.FEATURE_MAX_TILES,
        realism.FEATURE_CLIP_SIGMA,
    )


def test_half_sums_beside_their_full_sum_are_not_micrographs(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """A ``draco simulate`` micrographs/ folder holds X, X_EVN and X_ODD: only X is measured."""
    sim, real = _write_sets(tmp_path, rng, _white, _white, n_sim=2, n_real=2)
    for i in range(2):
        for half in ("EVN", "ODD"):
            write_mrc(sim / f"s{i}_{half}.mrc", _white(rng) / 2, pixel_size=2.0)
    cfg = RealismConfig(
        sim=[str(sim)], real=[str(real)], pixel_size=2.0, outdir=tmp_path / "out",
        features=False,
    )  # fmt: skip
    result = evaluate_realism(cfg, progress=False)
    assert result["sets"]["sim"]["n"] == 2
    paths = [m["path"] for m in result["sets"]["sim"]["micrographs"]]
    assert not any("_EVN" in p or "_ODD" in p for p in paths)


def test_simulated_pictures_without_a_pixel_size_name_the_sim_option(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """PNGs as the simulated set: the error names --sim-pixel-size, not --pixel-size (which
    sets the real set's and would not help)."""
    _, real = _write_sets(tmp_path, rng, _white, _white, n_sim=1, n_real=2)
    proc = run_draco(
        "evaluate", "realism", "--sim", real, "--real", real, "--pixel-size", "2",
        "-o", tmp_path / "out", "--no-features", "-q",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "pass --sim-pixel-size" in proc.stderr and "Traceback" not in proc.stderr


def test_a_common_pixel_size_finer_than_an_input_is_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Comparing at 1 Å inputs of 2 Å would compare zero-padded spectra: one line, exit 2."""
    sim, real = _write_sets(tmp_path, rng, _white, _white, n_sim=1, n_real=1)
    proc = run_draco(
        "evaluate", "realism", "--sim", sim, "--real", real, "--pixel-size", "2",
        "--common-pixel-size", "1", "-o", tmp_path / "out", "--no-features", "-q",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--common-pixel-size 1 Å is finer than an input's 2 Å" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "realism.json").exists()


def test_a_placeholder_header_pixel_size_is_warned_about(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """A real MRC whose header says 1.0 Å (MicrographCleaner's ~4 Å sample does) is compared
    at 1 Å without a word before; now one warning line, as the other commands give."""
    sim, _ = _write_sets(tmp_path, rng, _white, _white, n_sim=1, n_real=1)
    write_mrc(tmp_path / "ucsf.mrc", _white(rng), pixel_size=1.0)
    proc = run_draco(
        "evaluate", "realism", "--sim", sim, "--real", tmp_path / "ucsf.mrc",
        "-o", tmp_path / "out", "--no-features", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: real: 1 of 1 inputs have a header pixel size of 1.0 Å" in proc.stderr
    quiet = run_draco(
        "evaluate", "realism", "--sim", sim, "--real", tmp_path / "ucsf.mrc", "--pixel-size",
        "4", "-o", tmp_path / "out2", "--no-features", "-q",
    )  # fmt: skip
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
