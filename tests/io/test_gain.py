"""Gain references: RELION/MotionCor2 rotate and flip, defects, hot pixels, shape checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from draco_em.errors import DracoInputError
from draco_em.io.gain import (
    GainReference,
    apply_gain,
    find_hot_pixels,
    gain_for_movie,
    load_gain,
    orient,
    replace_defects,
)
from draco_em.io.movies import open_movie
from draco_em.io.mrc import write_mrc

# [ny=2, nx=3]: row 0 = [0 1 2], row 1 = [3 4 5]
SMALL = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.mark.parametrize(
    ("rotate", "flip", "expected"),
    [
        (0, None, [[0, 1, 2], [3, 4, 5]]),
        # RELION ImageOp::rotate90: dest[x, ny-1-y] = src[y, x] (clockwise in relion_display)
        (1, None, [[3, 0], [4, 1], [5, 2]]),
        (2, None, [[5, 4, 3], [2, 1, 0]]),
        (3, None, [[2, 5], [1, 4], [0, 3]]),
        (0, "y", [[3, 4, 5], [0, 1, 2]]),  # --gain_flip 1: upside down
        (0, "x", [[2, 1, 0], [5, 4, 3]]),  # --gain_flip 2: left-right
        (1, "x", [[0, 3], [1, 4], [2, 5]]),  # rotate first, then flip: a transpose
        (1, "y", [[5, 2], [4, 1], [3, 0]]),
    ],
)
def test_orient_matches_relion(rotate: int, flip: str | None, expected: list) -> None:
    np.testing.assert_array_equal(orient(SMALL, rotate, flip), np.array(expected))


def test_orient_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="rotate"):
        orient(SMALL, 4)
    with pytest.raises(ValueError, match="flip"):
        orient(SMALL, 0, "z")


@pytest.mark.parametrize("suffix", [".mrc", ".tif", ".gain"])
def test_load_gain_mrc_and_tiff(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    gain = rng.uniform(0.8, 1.2, (48, 64)).astype(np.float32)
    path = tmp_path / f"gain{suffix}"
    if suffix == ".mrc":
        write_mrc(path, gain, pixel_size=1.0)
    else:  # a TIFF's rows are reversed on reading, as RELION reads TIFF, EPU's .gain's not
        tifffile.imwrite(path, gain if suffix == ".gain" else gain[::-1])  # (docs/movies.md)
    ref = load_gain(path, rotate=1, flip="y", shape=(64, 48))
    np.testing.assert_array_equal(ref.gain, orient(gain, 1, "y"))
    assert ref.shape == (64, 48) and not ref.defects.any() and ref.path == path


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_gain_defects_zero_nan(tmp_path: Path) -> None:
    gain = np.full((16, 16), 2.0, np.float32)
    gain[1, 2], gain[3, 4], gain[5, 6] = 0.0, np.nan, -1.0
    ref = load_gain(write_mrc(tmp_path / "g.mrc", gain, pixel_size=1.0))
    assert set(zip(*np.nonzero(ref.defects), strict=True)) == {(1, 2), (3, 4), (5, 6)}
    assert ref.gain[1, 2] == ref.gain[3, 4] == 0.0 and np.isfinite(ref.gain).all()
    assert "3 gain pixels" in ref.notes[0]


def test_gain_invert(tmp_path: Path) -> None:
    gain = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)
    ref = load_gain(write_mrc(tmp_path / "g.mrc", gain, pixel_size=1.0), invert=True)
    mean = 7.0 / 3.0  # of the good pixels
    np.testing.assert_allclose(ref.gain, [[mean, mean / 2], [mean / 4, 0.0]], rtol=1e-6)
    assert ref.defects[1, 1]


def test_apply_gain_multiplies(rng: np.random.Generator) -> None:
    frame = rng.poisson(3.0, (32, 32)).astype(np.uint16)
    gain = rng.uniform(0.5, 1.5, (32, 32)).astype(np.float32)
    ref = GainReference(gain, np.zeros((32, 32), bool))
    np.testing.assert_allclose(apply_gain(frame, ref), frame * gain, rtol=1e-6)


def test_apply_gain_into_a_buffer_matches_the_fresh_result(rng: np.random.Generator) -> None:
    # prepare corrects each frame straight into its slot of the movie's stack.
    frame = rng.poisson(40.0, (64, 64)).astype(np.int8)
    defects = np.zeros((64, 64), bool)
    defects[5, 7] = defects[30:33, 40] = True
    ref = GainReference(rng.uniform(0.5, 1.5, (64, 64)).astype(np.float32), defects)
    stack = np.zeros((2, 64, 64), np.float32)
    out = apply_gain(frame, ref, out=stack[1])
    assert np.shares_memory(out, stack)
    np.testing.assert_array_equal(stack[1], apply_gain(frame, ref))
    assert ref.defect_index[0].tolist() == [5, 30, 31, 32]  # found once, reused per frame
    assert (stack[0] == 0).all()


def test_defects_replaced_by_local_poisson(rng: np.random.Generator) -> None:
    lam = 50.0
    frame = rng.poisson(lam, (128, 128)).astype(np.float32)
    defects = np.zeros_like(frame, bool)
    defects[rng.integers(0, 128, 400), rng.integers(0, 128, 400)] = True
    defects[60:64, 60:64] = True  # a 4×4 cluster: replaced from the good pixels around it
    frame[defects] = 1e6  # whatever was there must not leak out
    out = replace_defects(frame, defects)
    values = out[defects]
    assert values.max() < 150
    assert values.mean() == pytest.approx(lam, rel=0.1)
    assert values.var() == pytest.approx(lam, rel=0.35)  # Poisson-like spread, not a copy
    np.testing.assert_array_equal(out[~defects], frame[~defects])
    # Reproducible for the same frame, independent for another frame (odd/even sums).
    np.testing.assert_array_equal(replace_defects(frame, defects), out)
    other = frame.copy()
    other[0, 0] += 1
    assert not np.array_equal(replace_defects(other, defects)[defects], values)


def test_defect_without_good_neighbours_uses_frame_mean() -> None:
    frame = np.full((16, 16), 4.0, np.float32)
    defects = np.zeros((16, 16), bool)
    defects[:8] = True  # rows 0-5 have no good pixel within 2 px
    out = replace_defects(frame, defects, np.random.default_rng(1))
    assert np.isfinite(out).all() and 0 <= out[:8].mean() < 10


def test_find_hot_pixels(rng: np.random.Generator) -> None:
    total = rng.poisson(40.0, (64, 64)).astype(np.float32)
    total[3, 4] = 400
    total[50, 60] = 1000
    assert set(zip(*np.nonzero(find_hot_pixels(total)), strict=True)) == {(3, 4), (50, 60)}
    sparse = (rng.random((64, 64)) < 0.02).astype(np.float32)  # median 0, MAD 0
    sparse[10, 10] = 30
    assert set(zip(*np.nonzero(find_hot_pixels(sparse)), strict=True)) == {(10, 10)}


def test_gain_for_movie_adds_hot_pixels(tmp_path: Path, rng: np.random.Generator) -> None:
    frames = rng.poisson(2.0, (8, 32, 32)).astype(np.uint16)
    frames[:, 7, 9] = 60  # a hot pixel
    movie_path = write_mrc(tmp_path / "m.mrcs", frames, pixel_size=1.0)
    gain = np.ones((32, 32), np.float32)
    gain[0, 0] = 0  # a dead pixel
    gain_path = write_mrc(tmp_path / "g.mrc", gain, pixel_size=1.0)
    with open_movie(movie_path) as movie:
        ref = gain_for_movie(movie, gain_path)
        assert ref.defects[7, 9] and ref.defects[0, 0] and ref.defects.sum() == 2
        corrected = apply_gain(movie.frame(0), ref)
        assert corrected[7, 9] < 20
        assert gain_for_movie(movie).defects.sum() == 1  # unit gain: hot pixel only


def test_shape_mismatch_names_both_and_suggests_rotation(tmp_path: Path) -> None:
    gain_path = write_mrc(tmp_path / "g.mrc", np.ones((48, 64), np.float32), pixel_size=1.0)
    with pytest.raises(DracoInputError, match=r"rotate=1 or 3") as info:
        load_gain(gain_path, shape=(64, 48), movie_path="movie_001.tif")
    assert str(gain_path) in str(info.value) and "movie_001.tif" in str(info.value)
    with pytest.raises(DracoInputError, match=r"rotate=0 or 2"):
        load_gain(gain_path, rotate=1, shape=(48, 64))
    with pytest.raises(DracoInputError, match=r"\(50, 50\)"):
        load_gain(gain_path, shape=(50, 50))


def test_physical_gain_replicated_for_super_resolution(tmp_path: Path) -> None:
    gain = np.array([[1.0, 2.0], [0.0, 4.0]], np.float32)
    ref = load_gain(write_mrc(tmp_path / "g.mrc", gain, pixel_size=1.0), shape=(4, 4))
    np.testing.assert_array_equal(ref.gain[:2, 2:], 2.0)
    assert ref.defects[2:, :2].all() and ref.defects.sum() == 4
    assert "replicated 2×2" in ref.notes[-1]


def test_bad_gain_files(tmp_path: Path) -> None:
    with pytest.raises(DracoInputError, match="not found"):
        load_gain(tmp_path / "none.mrc")
    bad = tmp_path / "bad.gain"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(DracoInputError, match="not a readable TIFF") as info:
        load_gain(bad)
    assert str(bad) in str(info.value)
    stack = write_mrc(tmp_path / "s.mrcs", np.ones((2, 8, 8), np.float32), pixel_size=1.0)
    with pytest.raises(DracoInputError, match="2D"):
        load_gain(stack)
    zeros = write_mrc(tmp_path / "z.mrc", np.zeros((8, 8), np.float32), pixel_size=1.0)
    with pytest.raises(DracoInputError, match="no positive finite"):
        load_gain(zeros)
    with pytest.raises(DracoInputError, match="invalid gain orientation"):
        load_gain(zeros, rotate=5)


def test_a_tiff_gain_is_flipped_as_its_tiff_movie(tmp_path: Path) -> None:
    """RELION reads every TIFF flipped along the slow axis, movies and gains alike; EPU's
    .gain (EER) is left as stored, as EER frames are. A gradient gain written as the camera
    writes it then flattens a TIFF movie whose frames carry the inverse gradient."""
    from draco_em.io.movie_writers import write_tiff_movie
    from draco_em.io.movies import open_movie

    ramp = np.linspace(1.0, 3.0, 32, dtype=np.float32)[:, None] * np.ones((32, 40), np.float32)
    frames = np.stack([np.round(60 / ramp)] * 2).astype(np.uint16)  # counts ∝ 1 / gain
    tifffile.imwrite(tmp_path / "gain.tif", ramp[::-1])  # as stored: rows bottom first
    movie = open_movie(write_tiff_movie(tmp_path / "m.tif", frames))
    corrected = movie.frame(0) * load_gain(tmp_path / "gain.tif").gain
    assert corrected.std() / corrected.mean() < 0.02
    tifffile.imwrite(tmp_path / "epu.gain", ramp)
    np.testing.assert_array_equal(load_gain(tmp_path / "epu.gain").gain, ramp)
