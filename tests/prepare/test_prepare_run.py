"""``draco prepare`` end to end: movies (MRC/TIFF/EER, gain) and micrographs → triplets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from draco_em.io.motion import read_motion_csv
from draco_em.io.movie_writers import write_tiff_movie
from draco_em.io.mrc import read_image, read_mrc, write_mrc
from draco_em.io.star import read_micrographs_star, read_star, write_star
from draco_em.prepare.config import PrepareConfig
from draco_em.prepare.frames import ReaderCache
from draco_em.prepare.run import run_prepare
from tests.prepare.prepare_movies import SynthMovie, corr, make_movie


def _prepare(inputs: list, outdir: Path, **options) -> object:
    options.setdefault("target_pixel_size", 0)
    cfg = PrepareConfig(inputs=[str(i) for i in inputs], outdir=outdir, **options)
    return run_prepare(cfg, progress=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, SynthMovie]:
    synth_movie = make_movie()
    root = tmp_path_factory.mktemp("prep")
    write_mrc(root / "movies" / "m1.mrcs", synth_movie.counts.astype(np.float32), 1.0)
    summary = _prepare([root / "movies"], root / "out", dose_per_frame=1.5)
    assert summary.made == 1 and summary.failed == 0
    return root / "out", synth_movie


def test_triplet_files_and_full_is_odd_plus_even(prepared) -> None:
    out, movie = prepared
    full, px = read_image(out / "m1.mrc")
    odd, _ = read_image(out / "m1_ODD.mrc")
    even, _ = read_image(out / "m1_EVN.mrc")
    assert px == pytest.approx(1.0)
    assert full.shape == odd.shape == even.shape == (256, 256)
    assert np.array_equal(full, odd + even)
    # odd = frames 0, 2, 4, ... (MotionCor2 _ODD): 5 of 10 frames each, same mean
    assert odd.mean() == pytest.approx(movie.counts[0::2].sum() / 256**2, rel=1e-3)
    assert even.mean() == pytest.approx(movie.counts[1::2].sum() / 256**2, rel=1e-3)


def test_motion_csv_matches_truth(prepared) -> None:
    out, movie = prepared
    text = (out / "motion" / "m1.csv").read_text().splitlines()
    assert text[0] == "frame,shift_x,shift_y"
    est = read_motion_csv(out / "motion" / "m1.csv")
    assert est.shape == (10, 2)
    assert np.sqrt(((est - movie.shifts) ** 2).sum(1).mean()) < 0.5


def test_manifest_schema(prepared) -> None:
    out, _ = prepared
    table = read_micrographs_star(out / "triplets.star")
    optics = table.optics.iloc[0]
    for column in ("rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
                   "rlnAmplitudeContrast", "rlnMicrographOriginalPixelSize"):  # fmt: skip
        assert column in table.optics
    assert optics["rlnMicrographPixelSize"] == pytest.approx(1.0)
    row = table.micrographs.iloc[0]
    # Names as every draco STAR names files (docs/conventions.md): they resolve.
    assert table.resolve(row["rlnMicrographName"]) == table.path.parent / "m1.mrc"
    halves = [
        Path(table.resolve(row[c])).name for c in ("dracoMicrographEven", "dracoMicrographOdd")
    ]
    assert halves == ["m1_EVN.mrc", "m1_ODD.mrc"]
    assert row["dracoHasPairs"] == 1 and row["dracoFrames"] == 10
    assert row["dracoSizeX"] == 256 and row["dracoSizeY"] == 256
    assert row["rlnMicrographMovieName"].endswith("m1.mrcs")
    assert row["dracoTotalDose"] == pytest.approx(15.0)
    assert row["dracoTotalShift"] > row["dracoMaxFrameJump"] > 1.0  # Å; the movie drifts
    assert row["rlnAccumMotionTotal"] == pytest.approx(row["dracoTotalShift"])  # RELION name
    for suffix in ("", "Odd", "Even"):
        assert row[f"dracoStd{suffix}"] > 0
    assert row["dracoMeanOdd"] == pytest.approx(row["dracoMean"] / 2, rel=0.05)


def test_manifest_loads_for_pretraining(prepared) -> None:
    data = pytest.importorskip("draco_em.train.data")
    records = data.load_manifest(prepared[0] / "triplets.star", stage="draco")
    assert len(records) == 1 and records[0].odd is not None


def test_odd_even_noise_stays_independent(prepared) -> None:
    """Residuals (sum - expectation) of the two halves are uncorrelated: one trajectory for
    both, no shared interpolation or defect filling."""
    out, movie = prepared
    odd, _ = read_image(out / "m1_ODD.mrc")
    even, _ = read_image(out / "m1_EVN.mrc")
    inner = np.s_[16:-16, 16:-16]
    expect_odd = movie.clean * movie.expected[0::2].mean(axis=(1, 2)).sum()
    expect_even = movie.clean * movie.expected[1::2].mean(axis=(1, 2)).sum()
    r_odd, r_even = (odd - expect_odd)[inner], (even - expect_even)[inner]
    assert abs(corr(r_odd, r_even)) < 0.03
    # and each half is aligned: it correlates with the specimen
    assert corr(odd[inner], movie.clean[inner]) > 0.3


def test_resume_skips_finished_and_failures_are_listed(tmp_path: Path) -> None:
    movie = make_movie(n=128, frames=6, seed=5)
    write_mrc(tmp_path / "in" / "good.mrcs", movie.counts.astype(np.float32), 1.0)
    (tmp_path / "in" / "bad.mrcs").write_bytes(b"not an mrc file at all" * 10)
    first = _prepare([tmp_path / "in"], tmp_path / "out")
    assert (first.made, first.failed) == (1, 1)
    failures = (tmp_path / "out" / "failures.txt").read_text()
    assert "bad.mrcs" in failures and "good" not in failures
    stamp = (tmp_path / "out" / "good.mrc").stat().st_mtime_ns
    second = _prepare([tmp_path / "in" / "good.mrcs"], tmp_path / "out")
    assert (second.made, second.skipped) == (0, 1)
    assert (tmp_path / "out" / "good.mrc").stat().st_mtime_ns == stamp
    assert len(read_micrographs_star(tmp_path / "out" / "triplets.star").micrographs) == 1


def test_gain_reference_is_applied(tmp_path: Path) -> None:
    """Raw counts through a non-uniform detector + its gain give the uniform detector's result."""
    movie = make_movie(n=128, frames=6, seed=6, dose=4.0)
    rng = np.random.default_rng(1)
    sensitivity = rng.uniform(0.3, 1.7, (128, 128))
    raw = rng.poisson(movie.expected * sensitivity).astype(np.float32)
    write_mrc(tmp_path / "raw.mrcs", raw, 1.0)
    write_mrc(tmp_path / "gain.mrc", (1 / sensitivity).astype(np.float32), 1.0)
    _prepare([tmp_path / "raw.mrcs"], tmp_path / "with", gain=tmp_path / "gain.mrc")
    _prepare([tmp_path / "raw.mrcs"], tmp_path / "without")
    inner = np.s_[8:-8, 8:-8]
    corrected, _ = read_image(tmp_path / "with" / "raw.mrc")
    uncorrected, _ = read_image(tmp_path / "without" / "raw.mrc")
    assert (
        corr(corrected[inner], movie.clean[inner])
        > corr(uncorrected[inner], movie.clean[inner]) + 0.03
    )


def test_gain_shape_mismatch_is_a_listed_failure(tmp_path: Path) -> None:
    movie = make_movie(n=128, frames=4, seed=7)
    write_mrc(tmp_path / "m.mrcs", movie.counts.astype(np.float32), 1.0)
    write_mrc(tmp_path / "gain.mrc", np.ones((64, 128), np.float32), 1.0)
    summary = _prepare([tmp_path / "m.mrcs"], tmp_path / "out", gain=tmp_path / "gain.mrc")
    assert summary.failed == 1 and summary.manifest is None
    assert "gain reference has shape" in (tmp_path / "out" / "failures.txt").read_text()


def test_mrc_tiff_and_eer_give_the_same_result(tmp_path: Path) -> None:
    from draco_em.io.movie_writers import split_counts, write_eer, write_tiff_movie

    movie = make_movie(n=128, frames=6, seed=8)
    counts = movie.counts
    n_sub = int(counts.max())
    write_mrc(tmp_path / "mrc" / "a.mrcs", counts.astype(np.float32), 1.0)
    write_tiff_movie(tmp_path / "tif" / "a.tif", counts, pixel_size=1.0)
    write_eer(tmp_path / "eer" / "a.eer", split_counts(counts, n_sub), pixel_size=1.0)
    outputs = {}
    for kind in ("mrc", "tif", "eer"):
        _prepare([tmp_path / kind], tmp_path / f"out_{kind}", eer_grouping=n_sub)
        outputs[kind] = [read_image(tmp_path / f"out_{kind}" / f"a{s}.mrc")[0]
                         for s in ("", "_EVN", "_ODD")]  # fmt: skip
    for kind in ("tif", "eer"):
        for ours, reference in zip(outputs[kind], outputs["mrc"], strict=True):
            np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_an_eer_gain_is_a_divisor_unless_it_is_epus_dot_gain(tmp_path: Path) -> None:
    """RELION inverts every EER gain reference but EPU's ``.gain`` (``mean / gain``,
    ``EERRenderer::loadEERGain``); prepare multiplied EER movies by such a divisor, so
    `draco prepare Movies/*.eer --gain gain.tiff` (docs/prepare.md) came out wrongly
    gain-corrected (QA, session 24)."""
    import tifffile

    from draco_em.io.movie_writers import split_counts, write_eer

    movie = make_movie(n=128, frames=6, seed=8)
    counts = movie.counts
    n_sub = int(counts.max())
    gain = np.random.default_rng(3).uniform(0.5, 2.0, counts.shape[1:]).astype(np.float32)
    write_eer(tmp_path / "eer" / "a.eer", split_counts(counts, n_sub), pixel_size=1.0)
    write_mrc(tmp_path / "mrc" / "a.mrcs", counts.astype(np.float32), 1.0)
    write_mrc(tmp_path / "gain.mrc", gain, 1.0)
    write_mrc(tmp_path / "inverse.mrc", (gain.astype(np.float64).mean() / gain), 1.0)
    tifffile.imwrite(tmp_path / "gain.gain", gain)  # EPU's multiplicative TIFF, not flipped

    def sums(movies: str, gain_file: str) -> list[np.ndarray]:
        out = tmp_path / f"out_{movies}_{gain_file}"
        summary = _prepare([tmp_path / movies], out, gain=tmp_path / gain_file,
                           eer_grouping=n_sub, hot_pixels=False)  # fmt: skip
        assert summary.made == 1, (out / "failures.txt").read_text()
        return [read_image(out / f"a{s}.mrc")[0] for s in ("", "_EVN", "_ODD")]

    for eer, mrc in ((("eer", "gain.mrc"), ("mrc", "inverse.mrc")),
                     (("eer", "gain.gain"), ("mrc", "gain.mrc"))):  # fmt: skip
        for ours, reference in zip(sums(*eer), sums(*mrc), strict=True):
            np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


def test_motion_corrected_pairs_and_plain_micrographs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    odd, even, lone = (rng.poisson(5, (128, 96)).astype(np.float32) for _ in range(3))
    folder = tmp_path / "mc"
    write_mrc(folder / "p1.mrc", odd + even, 1.0)
    write_mrc(folder / "p1_EVN.mrc", even, 1.0)
    write_mrc(folder / "p1_ODD.mrc", odd, 1.0)
    write_mrc(folder / "p1_DW.mrc", odd + even, 1.0)  # MotionCor2's dose-weighted copy: skipped
    write_mrc(folder / "halves_EVN.mrc", even, 1.0)
    write_mrc(folder / "halves_ODD.mrc", odd, 1.0)
    write_mrc(folder / "lone.mrc", lone, 1.0)
    summary = _prepare([folder], tmp_path / "out", target_pixel_size=2.0)
    assert (summary.made, summary.failed) == (3, 0)
    table = read_micrographs_star(tmp_path / "out" / "triplets.star")
    rows = table.micrographs.set_index(table.micrographs["rlnMicrographName"].map(
        lambda n: Path(n).name))  # fmt: skip
    assert set(rows.index) == {"p1.mrc", "halves.mrc", "lone.mrc"}
    assert rows.loc["p1.mrc", "dracoHasPairs"] == 1 and rows.loc["lone.mrc", "dracoHasPairs"] == 0
    assert rows.loc["lone.mrc", "dracoMicrographOdd"] in ("", None) or pd.isna(
        rows.loc["lone.mrc", "dracoMicrographOdd"]
    )
    assert table.optics.iloc[0]["rlnMicrographPixelSize"] == pytest.approx(2.0)
    assert table.optics.iloc[0]["rlnMicrographOriginalPixelSize"] == pytest.approx(1.0)
    full = read_mrc(tmp_path / "out" / "halves.mrc")
    assert full.data.shape == (64, 48) and full.pixel_size == pytest.approx(2.0)
    h_odd, _ = read_image(tmp_path / "out" / "halves_ODD.mrc")
    h_even, _ = read_image(tmp_path / "out" / "halves_EVN.mrc")
    np.testing.assert_allclose(full.data, h_odd + h_even, atol=1e-4)
    assert not (tmp_path / "out" / "lone_ODD.mrc").exists()


def test_movies_star_input_and_float16(tmp_path: Path) -> None:
    movie = make_movie(n=128, frames=6, seed=9)
    write_mrc(tmp_path / "Movies" / "s1.mrcs", movie.counts.astype(np.float32), 1.0)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1],
                           "rlnMicrographOriginalPixelSize": [1.0]})  # fmt: skip
    movies = pd.DataFrame({"rlnMicrographMovieName": ["Movies/s1.mrcs"], "rlnOpticsGroup": [1]})
    write_star(tmp_path / "movies.star", {"optics": optics, "movies": movies})
    _prepare([tmp_path / "movies.star"], tmp_path / "out", float16=True)
    mrc = read_mrc(tmp_path / "out" / "s1_EVN.mrc")
    assert mrc.mode == 12 and mrc.data.shape == (128, 128)


def test_the_movies_stars_optics_reach_the_manifest(tmp_path: Path) -> None:
    """A 200 kV movies STAR must not become 300 kV in triplets.star (RELION's CtfFind reads
    it there); an option given on the command line wins; without either, the defaults."""
    movie = make_movie(n=64, frames=4, seed=15)
    write_mrc(tmp_path / "Movies" / "s1.mrcs", movie.counts.astype(np.float32), 1.0)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1],
                           "rlnMicrographOriginalPixelSize": [1.0], "rlnVoltage": [200.0],
                           "rlnSphericalAberration": [0.01],
                           "rlnAmplitudeContrast": [0.07]})  # fmt: skip
    movies = pd.DataFrame({"rlnMicrographMovieName": ["Movies/s1.mrcs"], "rlnOpticsGroup": [1]})
    write_star(tmp_path / "movies.star", {"optics": optics, "movies": movies})

    def optics_of(out: Path) -> tuple[float, float, float]:
        row = read_star(out / "triplets.star")["optics"].iloc[0]
        return (row.rlnVoltage, row.rlnSphericalAberration, row.rlnAmplitudeContrast)

    _prepare([tmp_path / "movies.star"], tmp_path / "a")
    assert optics_of(tmp_path / "a") == (200.0, 0.01, 0.07)
    _prepare([tmp_path / "movies.star"], tmp_path / "b", voltage=300.0)
    assert optics_of(tmp_path / "b") == (300.0, 0.01, 0.07)
    _prepare([tmp_path / "Movies" / "s1.mrcs"], tmp_path / "c")
    assert optics_of(tmp_path / "c") == (300.0, 2.7, 0.1)


def test_dose_weighting_needs_the_dose() -> None:
    with pytest.raises(ValueError, match="dose per frame"):
        PrepareConfig(inputs=["x"], outdir=Path("o"), dose_weighting=True)


def test_dose_weighted_full_sum_keeps_the_halves(tmp_path: Path) -> None:
    movie = make_movie(n=128, frames=6, seed=10)
    write_mrc(tmp_path / "m.mrcs", movie.counts.astype(np.float32), 1.0)
    _prepare([tmp_path / "m.mrcs"], tmp_path / "out", dose_weighting=True, dose_per_frame=5.0)
    full, _ = read_image(tmp_path / "out" / "m.mrc")
    odd, _ = read_image(tmp_path / "out" / "m_ODD.mrc")
    even, _ = read_image(tmp_path / "out" / "m_EVN.mrc")
    assert full.mean() == pytest.approx((odd + even).mean(), rel=1e-3)  # DC unweighted
    plain = odd + even
    assert full.std() == pytest.approx(plain.std(), rel=0.2)  # same noise power
    assert not np.allclose(full, plain, atol=0.5)  # but the frames are weighted


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    from draco_em.errors import DracoInputError

    movie = make_movie(n=128, frames=4, seed=12)
    write_mrc(tmp_path / "m.mrcs", movie.counts.astype(np.float32), 1.0)
    _prepare([tmp_path / "m.mrcs"], tmp_path / "out")
    with pytest.raises(DracoInputError, match="other settings"):
        _prepare([tmp_path / "m.mrcs"], tmp_path / "out", float16=True)


def test_a_folder_where_every_input_failed_takes_the_new_settings(tmp_path: Path) -> None:
    """The failure line says "pass --pixel-size"; doing so in the same folder must work."""
    from draco_em.errors import DracoInputError

    movie = make_movie(n=128, frames=4, seed=13)
    write_tiff_movie(tmp_path / "m.tif", movie.counts.astype(np.uint8))  # no pixel size
    first = _prepare([tmp_path / "m.tif"], tmp_path / "out")
    assert first.made == 0 and first.failed == 1
    assert "--pixel-size" in (tmp_path / "out" / "failures.txt").read_text()
    again = _prepare([tmp_path / "m.tif"], tmp_path / "out", pixel_size=1.0)
    assert again.made == 1 and again.failed == 0
    with pytest.raises(DracoInputError, match=r"pixel_size 1\.0 → 2\.0"):  # now it holds one
        _prepare([tmp_path / "m.tif"], tmp_path / "out", pixel_size=2.0)


def test_default_target_is_the_bundled_models_pixel_size(monkeypatch) -> None:
    import draco_em.model.weights as weights
    from draco_em.errors import DracoInputError

    def missing(path: str, device: str = "cpu") -> None:
        raise DracoInputError("no bundled model is installed")

    monkeypatch.setattr(weights, "load_model", missing)
    cfg = PrepareConfig(inputs=["x"], outdir=Path("o"))
    assert cfg.resolved_target_pixel_size() is None  # no model: no cropping
    monkeypatch.setattr(
        weights, "load_model", lambda path, device="cpu": (None, None, {"pixel_size": 2.1})
    )
    assert cfg.resolved_target_pixel_size() == pytest.approx(2.1)
    assert (
        PrepareConfig(
            inputs=["x"], outdir=Path("o"), target_pixel_size=0
        ).resolved_target_pixel_size()
        is None
    )


def test_curation_reads_the_motion_prepare_wrote(prepared) -> None:
    """The chain prepare → curate: the manifest's motion is what ``curate predict`` thresholds,
    and it matches the path length of the true trajectory."""
    from draco_em.curate.config import SignalRules
    from draco_em.curate.signals import check_signals, read_signals

    out, movie = prepared
    table = read_micrographs_star(out / "triplets.star")
    values = read_signals(table, 0)
    truth = np.linalg.norm(np.diff(movie.shifts, axis=0), axis=1).sum()  # 1 Å/px movie
    assert values["motion"] == pytest.approx(truth, rel=0.2)
    assert check_signals(values, SignalRules(max_motion=values["motion"] / 2)).reason == "drift"
    assert check_signals(values, SignalRules()).failed == []


def test_reader_cache_reuses_the_frame_stack_memory() -> None:
    # A fresh multi-GB stack per movie is page-faulted in again; the next movie reuses it.
    cache = ReaderCache(PrepareConfig(inputs=["x"], outdir=Path("o")))
    first = cache.frame_stack(4, (16, 16))
    assert first.shape == (4, 16, 16) and first.dtype == torch.float32
    smaller = cache.frame_stack(3, (16, 8))
    assert smaller.data_ptr() == first.data_ptr()
    bigger = cache.frame_stack(5, (16, 16))
    assert bigger.shape == (5, 16, 16)


def test_eer_pixel_size_option_is_the_physical_pixel(tmp_path: Path) -> None:
    """--pixel-size for an EER movie is the sensor's pixel, as the reader takes it: rendered
    at --eer-upsampling 2 the movie's pixel is half of it (it was used as the rendered pixel,
    so the outputs' pixel size was twice the truth)."""
    from draco_em.io.movie_writers import write_eer

    rng = np.random.default_rng(3)
    hits = rng.random((8, 64, 64)) < 0.3  # at most one event per physical pixel and frame,
    raw = np.zeros((8, 4 * 64, 4 * 64), bool)  # at a random one of its 4 × 4 sub-pixels
    f, y, x = np.nonzero(hits)
    raw[f, 4 * y + rng.integers(0, 4, len(y)), 4 * x + rng.integers(0, 4, len(x))] = True
    write_eer(tmp_path / "eer" / "a.eer", raw, pixel_size=1.5, subpixel_factor=4)
    for up, given in ((1, None), (2, None), (2, 1.0)):
        out = tmp_path / f"out_{up}_{given}"
        _prepare([tmp_path / "eer"], out, eer_grouping=2, eer_upsampling=up, pixel_size=given,
                 hot_pixels=False)  # fmt: skip
        physical = 1.5 if given is None else given
        image, px = read_image(out / "a.mrc")
        assert image.shape == (64 * up, 64 * up)
        assert px == pytest.approx(physical / up)


def test_a_placeholder_header_is_warned_about_once(tmp_path: Path) -> None:
    """A 1.0 Å MRC header is often a placeholder: prepare says so in one line (as denoise,
    pick and curate do), and not when --pixel-size is given."""
    rng = np.random.default_rng(4)
    write_mrc(tmp_path / "mc" / "m.mrc", rng.poisson(5, (96, 96)).astype(np.float32), 1.0)
    said = _prepare([tmp_path / "mc"], tmp_path / "a")
    assert len(said.warnings) == 1 and said.warnings[0].startswith("1 of 1 inputs")
    assert _prepare([tmp_path / "mc"], tmp_path / "b", pixel_size=1.0).warnings == []


def test_a_bad_gain_is_the_options_error_before_any_movie(tmp_path: Path) -> None:
    """Not one failures.txt line per movie: one line naming --gain, and no output folder."""
    from draco_em.errors import DracoInputError

    movie = make_movie(n=64, frames=4, seed=14)
    write_mrc(tmp_path / "m.mrcs", movie.counts.astype(np.float32), 1.0)
    (tmp_path / "gain.mrc").write_bytes(b"x" * 500)
    with pytest.raises(DracoInputError, match=r"^--gain .*gain\.mrc: not an MRC file"):
        _prepare([tmp_path / "m.mrcs"], tmp_path / "out", gain=tmp_path / "gain.mrc")
    assert not (tmp_path / "out").exists()
