"""Movie readers and writers: MRCS, TIFF (LZW/deflate, 8/16-bit) and EER round trips."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from draco_em.errors import DracoInputError
from draco_em.io.info import describe
from draco_em.io.movie_writers import (
    encode_eer_frame,
    split_counts,
    write_eer,
    write_tiff_movie,
)
from draco_em.io.movies import MrcMovie, open_movie
from draco_em.io.mrc import write_mrc
from draco_em.io.tiff_movies import EerMovie, TiffMovie

N, NY, NX = 8, 64, 64


@pytest.fixture
def counts(rng: np.random.Generator) -> np.ndarray:
    """8 frames of 64×64 Poisson counts at 1.5 e⁻/px/frame, with one very bright pixel."""
    frames = rng.poisson(1.5, (N, NY, NX)).astype(np.uint16)
    frames[:, 5, 7] = 200  # survives uint8, exercises more than 1 bit of range
    return frames


@pytest.fixture
def raw_events(rng: np.random.Generator) -> np.ndarray:
    """10 raw EER frames of sparse single events (bool [10, 64, 48])."""
    events = rng.random((10, NY, 48)) < 0.05
    events[0, -1, -1] = events[1, 0, 0] = True  # first and last pixel
    events[2] = False  # an empty frame
    events[3] = False
    events[3, 40, 3] = True  # one run longer than the 127-pixel skip code
    return events


def test_mrcs_round_trip_is_lazy(tmp_path: Path, counts: np.ndarray) -> None:
    path = write_mrc(tmp_path / "m.mrcs", counts, pixel_size=0.83)
    with open_movie(path) as movie:
        assert isinstance(movie, MrcMovie)
        assert isinstance(movie._data, np.memmap)  # frames are read from disk on demand
        assert (len(movie), movie.shape, movie.dtype) == (N, (NY, NX), np.uint16)
        assert movie.pixel_size == pytest.approx(0.83)
        frames = np.array(list(movie))
        assert frames.dtype == np.float32
        np.testing.assert_array_equal(frames, counts)
        np.testing.assert_array_equal(movie.frame(-1), counts[-1])
        np.testing.assert_array_equal(movie.sum(slice(1, None, 2)), counts[1::2].sum(0))
        np.testing.assert_array_equal(movie.sum([0, 3]), counts[[0, 3]].sum(0))
        with pytest.raises(IndexError):
            movie.frame(N)


def _write_packed_4bit(path: Path, frames: np.ndarray, swapped: bool = False) -> None:
    """IMOD mode 101 by hand (mrcfile cannot write it): two pixels per byte, rows padded."""
    t, ny, nx = frames.shape
    write_mrc(path, np.zeros((t, ny, nx), np.int8), 0.8)  # a valid header to patch
    header = bytearray(path.read_bytes()[:1024])
    header[12:16] = np.int32(101).tobytes()
    if swapped:  # IMOD stamp + flag 0x10: the first pixel in the high 4 bits
        header[152:160] = np.array([1146047817, 0x10], np.int32).tobytes()
    padded = np.zeros((t, ny, nx + nx % 2), np.uint8)
    padded[..., :nx] = frames
    first, second = padded[..., 0::2], padded[..., 1::2]
    packed = (second | first << 4) if swapped else (first | second << 4)
    path.write_bytes(bytes(header) + packed.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("nx", "swapped"), [(64, False), (37, False), (37, True)])
def test_packed_4bit_mrc(tmp_path: Path, rng: np.random.Generator, nx: int, swapped: bool) -> None:
    """SerialEM's 4-bit counting movies (IMOD mode 101, read by RELION) are movies here too;
    mrcfile alone rejects them ('Unrecognised mode')."""
    frames = rng.integers(0, 16, (5, 24, nx), dtype=np.uint8)
    path = tmp_path / "k3_4bit.mrc"
    _write_packed_4bit(path, frames, swapped)
    with open_movie(path) as movie:
        assert (movie.n_frames, movie.shape, movie.dtype) == (5, (24, nx), np.uint8)
        assert movie.pixel_size == pytest.approx(0.8)
        assert np.array_equal(np.stack([movie.frame(i, as_stored=True) for i in range(5)]), frames)
        assert np.array_equal(movie.sum(), frames.sum(0))
    from draco_em.prepare.inputs import is_movie

    assert is_movie(path)  # a .mrc: told apart from a micrograph by its mode
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 10)
    with pytest.raises(DracoInputError, match="truncated"):
        open_movie(path)


def test_the_imod_stamp_is_read_by_io_mrc_alone(
    tmp_path: Path, rng: np.random.Generator, monkeypatch
) -> None:
    """One reading of IMOD's header stamp and flags (``io.mrc.imod_flags``, which also tells
    IMOD's unsigned mode-0 bytes): the 4-bit reader had its own copy of the stamp and bytes."""
    frames = rng.integers(0, 16, (2, 16, 16), dtype=np.uint8)
    _write_packed_4bit(tmp_path / "s.mrc", frames, swapped=True)
    monkeypatch.setattr("draco_em.io.mrc.IMOD_STAMP", 0)  # no header is IMOD's now
    with open_movie(tmp_path / "s.mrc") as movie:  # so the nybbles are read unswapped
        swapped = (frames[..., 0::2] << 4 | frames[..., 1::2]).astype(np.uint8)
        expected = np.stack([swapped & 15, swapped >> 4], -1).reshape(frames.shape)
        assert np.array_equal(movie.frame(0, as_stored=True), expected[0])


def test_frames_as_stored_are_owned_copies(tmp_path: Path, counts: np.ndarray) -> None:
    # draco prepare holds a movie's frames in the file's dtype (a quarter of float32's memory
    # for 8-bit counts) after the file is closed: each must be a copy, not a view of the map.
    paths = [
        write_mrc(tmp_path / "m.mrcs", counts, pixel_size=1.0),
        write_tiff_movie(tmp_path / "m.tif", counts.astype(np.uint8), pixel_size=1.0),
    ]
    for path, dtype in zip(paths, (np.uint16, np.uint8), strict=True):
        with open_movie(path) as movie:
            frames = [movie.frame(i, as_stored=True) for i in range(N)]
        assert all(f.dtype == dtype and f.flags.owndata for f in frames)
        np.testing.assert_array_equal(np.array(frames), counts)
        frames[0][:] = 0  # writable, and the file is untouched
        with open_movie(path) as movie:
            np.testing.assert_array_equal(movie.frame(0), counts[0])


@pytest.mark.parametrize(
    ("dtype", "compression", "tag"),
    [
        (np.uint8, "lzw", "lzw"),
        (np.uint16, "lzw", "lzw"),
        (np.uint8, "deflate", "adobe_deflate"),
        (np.uint16, "deflate", "adobe_deflate"),
    ],
)
def test_tiff_round_trip(
    tmp_path: Path, counts: np.ndarray, dtype: type, compression: str, tag: str
) -> None:
    data = counts.astype(dtype)
    path = write_tiff_movie(tmp_path / "m.tif", data, compression=compression, pixel_size=0.83)
    with tifffile.TiffFile(path) as tif:  # one compressed page per frame
        assert len(tif.pages) == N and tif.pages.first.compression.name.lower() == tag
    with open_movie(path) as movie:
        assert isinstance(movie, TiffMovie)
        assert (movie.n_frames, movie.shape, movie.dtype) == (N, (NY, NX), np.dtype(dtype))
        assert movie.pixel_size == pytest.approx(0.83)
        assert movie.metadata["compression"] == tag
        np.testing.assert_array_equal(np.array(list(movie)), data)


def test_tiff_frames_are_read_bottom_row_first_as_relion_does(tmp_path: Path) -> None:
    """RELION, MotionCor2 and IMOD read TIFF flipped along the slow axis (RELION's Conventions
    page): the row stored first is the frame's last. Read top row first (until session 23),
    a micrograph made from a TIFF movie was upside down against theirs."""
    stored = np.zeros((2, 16, 17), np.uint8)  # 16 px: the smallest frame side a movie has
    stored[:, 0] = 9  # the first row in the file
    tifffile.imwrite(tmp_path / "m.tif", stored)
    with open_movie(tmp_path / "m.tif") as movie:
        frame = movie.frame(0)
        assert frame[-1].tolist() == [9] * 17 and frame[:-1].sum() == 0
        assert movie.frame(1, as_stored=True)[-1].tolist() == [9] * 17
    with tifffile.TiffFile(write_tiff_movie(tmp_path / "w.tif", stored)) as tif:
        assert tif.pages.first.asarray()[-1].tolist() == [9] * 17  # written as RELION writes


def test_tiff_without_resolution_has_no_pixel_size(tmp_path: Path, counts: np.ndarray) -> None:
    path = write_tiff_movie(tmp_path / "m.tiff", counts)
    assert open_movie(path).pixel_size is None
    assert open_movie(path, pixel_size=1.1).pixel_size == 1.1


@pytest.mark.parametrize("compression", [65000, 65001, 65002])
def test_eer_round_trip_against_tifffile(
    tmp_path: Path, raw_events: np.ndarray, compression: int
) -> None:
    path = write_eer(tmp_path / "m.eer", raw_events, pixel_size=0.75, compression=compression)
    with tifffile.TiffFile(path) as tif:  # tifffile/imagecodecs decode our encoding
        assert tif.is_bigtiff and tif.is_eer
        assert tif.pages.first.compression == compression
        np.testing.assert_array_equal(tif.asarray(), raw_events)
    with open_movie(path) as movie:
        assert isinstance(movie, EerMovie)
        assert (movie.n_frames, movie.shape, movie.pixel_size) == (10, (NY, 48), 0.75)
        np.testing.assert_array_equal(np.array(list(movie)), raw_events)


def test_eer_readable_by_eerfile(tmp_path: Path, raw_events: np.ndarray) -> None:
    eerfile = pytest.importorskip("eerfile")
    path = write_eer(tmp_path / "m.eer", raw_events, pixel_size=0.75)
    np.testing.assert_array_equal(eerfile.read(path), raw_events)


def test_eer_grouping_drops_remainder(tmp_path: Path, raw_events: np.ndarray) -> None:
    path = write_eer(tmp_path / "m.eer", raw_events)
    with open_movie(path, eer_grouping=3) as movie:
        assert (movie.n_raw_frames, movie.n_frames) == (10, 3)
        assert any("last 1 raw frames are dropped" in note for note in movie.notes)
        expected = raw_events[:9].reshape(3, 3, NY, 48).sum(1)
        np.testing.assert_array_equal(np.array(list(movie)), expected)
        # a group's count is at most its grouping: stored in uint8 (half of uint16's memory)
        assert movie.frame(0, as_stored=True).dtype == np.uint8
    with open_movie(path, eer_grouping=5) as movie:
        assert movie.n_frames == 2 and not movie.notes
    with pytest.raises(DracoInputError, match="larger than the 10 raw frames"):
        open_movie(path, eer_grouping=11)
    with pytest.raises(DracoInputError, match="grouping must be >= 1"):
        open_movie(path, eer_grouping=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_counts_in_mrcs_tiff_and_eer(tmp_path: Path, counts: np.ndarray, threads: int) -> None:
    """The three encodings of one movie give identical frames (what draco prepare relies on),
    decoded on one thread or on two (TIFF strips, the raw EER pages of a group)."""
    n_sub = int(counts.max())
    paths = [
        write_mrc(tmp_path / "m.mrcs", counts, pixel_size=1.0),
        write_tiff_movie(tmp_path / "m.tif", counts, pixel_size=1.0),
        write_eer(tmp_path / "m.eer", split_counts(counts, n_sub), pixel_size=1.0),
    ]
    for path in paths:
        with open_movie(path, eer_grouping=n_sub, decode_threads=threads) as movie:
            assert movie.pixel_size == 1.0
            np.testing.assert_array_equal(np.array(list(movie)), counts)


def test_eer_super_resolution(tmp_path: Path, rng: np.random.Generator) -> None:
    events = rng.random((4, 20, 16)) < 0.2  # 16 px: the smallest frame side a movie has
    sx, sy = rng.integers(0, 4, (2, 4, 20, 16))
    fine = np.zeros((4, 80, 64), bool)  # events placed on the 4× grid
    k, y, x = np.nonzero(events)
    fine[k, 4 * y + sy[k, y, x], 4 * x + sx[k, y, x]] = True
    path = write_eer(tmp_path / "s.eer", fine, subpixel_factor=4, pixel_size=1.2)
    for up in (1, 2, 4):
        with open_movie(path, eer_upsampling=up) as movie:
            assert movie.shape == (20 * up, 16 * up)
            assert movie.pixel_size == pytest.approx(1.2 / up)
            f = 4 // up
            binned = fine.reshape(4, 20 * up, f, 16 * up, f).sum((2, 4))
            np.testing.assert_array_equal(np.array(list(movie)), binned)
    # A pixel size given by the user is the physical one.
    assert open_movie(path, eer_upsampling=2, pixel_size=1.0).pixel_size == 0.5
    with pytest.raises(DracoInputError, match="upsampling must be 1, 2 or 4"):
        open_movie(path, eer_upsampling=3)


def test_eer_encoder_rejects_counts() -> None:
    with pytest.raises(ValueError, match="split_counts"):
        write_eer("unused.eer", [np.full((4, 4), 2)])
    # A frame without events encodes to a valid stream too.
    assert len(encode_eer_frame(np.zeros((8, 8), bool))) % 2 == 0


def test_split_counts_sums_back(rng: np.random.Generator) -> None:
    counts = rng.poisson(2.0, (3, 32, 32))
    subs = np.array(list(split_counts(counts, 12, rng)))
    assert subs.dtype == bool and subs.shape == (36, 32, 32)
    np.testing.assert_array_equal(subs.reshape(3, 12, 32, 32).sum(1), counts)
    assert subs.reshape(3, 12, -1).sum(-1).std() > 0  # events spread over the sub-frames


def test_info_shows_frames(tmp_path: Path, counts: np.ndarray, raw_events: np.ndarray) -> None:
    mrcs = describe(write_mrc(tmp_path / "m.mrcs", counts, pixel_size=1.0))
    assert mrcs["n_frames"] == N and mrcs["kind"] == "stack"
    tif = describe(write_tiff_movie(tmp_path / "m.tif", counts, pixel_size=0.5))
    assert (tif["n_frames"], tif["pixel_size"], tif["compression"]) == (N, 0.5, "lzw")
    eer = describe(write_eer(tmp_path / "m.eer", raw_events, pixel_size=0.5))
    assert (eer["format"], eer["n_raw_frames"], eer["pixel_size"]) == ("eer", 10, 0.5)


# ---- bad input: each a DracoInputError that names the file ---------------------------------


def _raises_naming(path: Path, match: str, **kwargs: object) -> None:
    with pytest.raises(DracoInputError, match=match) as info:
        with open_movie(path, **kwargs) as movie:
            movie.sum()
    assert str(path) in str(info.value)


def test_missing_folder_and_unknown(tmp_path: Path) -> None:
    _raises_naming(tmp_path / "nope.tif", "file not found")
    _raises_naming(tmp_path, "is a folder")
    (tmp_path / "m.avi").write_bytes(b"x")
    _raises_naming(tmp_path / "m.avi", "unknown movie type")


@pytest.mark.parametrize("name", ["garbage.eer", "garbage.tif", "empty.tiff"])
def test_garbage_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else b"not a tiff at all" * 50)
    _raises_naming(path, "not a readable (EER|TIFF) file")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.97])
@pytest.mark.parametrize("kind", ["tif", "eer"])
def test_truncated(
    tmp_path: Path, counts: np.ndarray, raw_events: np.ndarray, kind: str, fraction: float
) -> None:
    if kind == "tif":
        path = write_tiff_movie(tmp_path / "m.tif", counts)
    else:
        path = write_eer(tmp_path / "m.eer", raw_events)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    _raises_naming(path, "truncated|corrupt|not a readable|zero frames|cannot decode")


def test_corrupt_eer_stream(tmp_path: Path, raw_events: np.ndarray) -> None:
    path = write_eer(tmp_path / "m.eer", raw_events)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64  # runs past the last pixel
    path.write_bytes(bytes(data))
    _raises_naming(path, "cannot decode frame 1")
    # Decoded on two threads, a group of two raw frames fails the same way (frame 0 = 0 + 1).
    _raises_naming(path, "cannot decode frame 0", eer_grouping=2, decode_threads=2)


_MUTATIONS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)


@settings(max_examples=80, deadline=None)
@given(
    mutations=_MUTATIONS,
    cut=st.one_of(st.none(), st.integers(0, 5000)),
    suffix=st.sampled_from([".tif", ".eer"]),
)
def test_fuzzed_bytes_give_movie_or_input_error(
    mutations: list[tuple[int, int]], cut: int | None, suffix: str
) -> None:
    """A TIFF/EER with random bytes changed or cut: a movie or DracoInputError, nothing else."""
    events = np.random.default_rng(1).random((3, 16, 16)) < 0.2
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        if suffix == ".eer":
            write_eer(path, events, pixel_size=1.0)
        else:
            write_tiff_movie(path, events.astype(np.uint8) * 7)
        data = bytearray(path.read_bytes())
        for position, value in mutations:
            data[position % len(data)] = value
        path.write_bytes(bytes(data[:cut]))
        try:
            with open_movie(path) as movie:
                movie.sum()
        except DracoInputError as exc:
            assert str(path) in str(exc)


def test_plain_tiff_named_eer(tmp_path: Path, counts: np.ndarray) -> None:
    path = tmp_path / "m.eer"
    path.write_bytes(write_tiff_movie(tmp_path / "m.tif", counts).read_bytes())
    _raises_naming(path, "not an EER file")


def test_wrong_dimensions(tmp_path: Path, counts: np.ndarray) -> None:
    _raises_naming(write_mrc(tmp_path / "one.mrc", counts[0], pixel_size=1.0), "3D")
    small = write_mrc(tmp_path / "small.mrcs", counts[:, :15], pixel_size=1.0)
    _raises_naming(small, "frames of 64x15 px are too small")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((2, 16, 16, 3), np.uint8), photometric="rgb")
    _raises_naming(rgb, "2D grey")


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "z.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((0, 16, 16), np.float32))
    _raises_naming(path, "no pixels")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_frame(tmp_path: Path, counts: np.ndarray) -> None:
    data = counts.astype(np.float32)
    data[2, 3, 4] = np.nan
    data[2, 5, 5] = np.inf
    path = write_mrc(tmp_path / "nan.mrcs", data, pixel_size=1.0)
    movie = open_movie(path)
    movie.frame(1)  # the good frames stay readable
    _raises_naming(path, "frame 2 has 2 NaN/Inf pixels")


def test_movies_doc_names_existing_tests() -> None:
    """Every ``tests/...::test_x`` named in docs/movies.md exists."""
    import re

    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "movies.md").read_text()
    names = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", doc)
    assert len(names) > 20
    for file, test in names:
        assert f"def {test}(" in (repo / file).read_text(), f"{file}::{test}"


def _lzw_bytes(codes: list[tuple[int, int]]) -> bytes:
    """(code, width) pairs packed most-significant bit first, as TIFF LZW stores them."""
    bits = "".join(format(code, f"0{width}b") for code, width in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize("kind", ["random", "sparse", "uint16", "flat"])
def test_lzw_check_accepts_what_an_encoder_writes(kind: str) -> None:
    import imagecodecs

    from draco_em.io.tiff_movies import lzw_stream_ok

    rng = np.random.default_rng(0)
    image = {
        "random": lambda: rng.integers(0, 256, (300, 300), dtype=np.uint8),  # every code width
        "sparse": lambda: (rng.random((700, 700)) < 0.05).astype(np.uint8) * 3,  # several clears
        "uint16": lambda: rng.integers(0, 6, (400, 400)).astype(np.uint16),
        "flat": lambda: np.zeros((64, 64), np.uint8),
    }[kind]()
    assert lzw_stream_ok(imagecodecs.lzw_encode(image.tobytes()))


def test_lzw_check_rejects_codes_a_decoder_cannot_resolve() -> None:
    """The streams that crashed imagecodecs' decoder (a segfault, not an exception)."""
    from draco_em.io.tiff_movies import lzw_stream_ok

    clear, eoi = (256, 9), (257, 9)
    assert lzw_stream_ok(_lzw_bytes([clear, (65, 9), (66, 9), (258, 9), eoi]))
    assert lzw_stream_ok(_lzw_bytes([clear, (65, 9), (258, 9), eoi]))  # K-w-K-w-K: the next entry
    assert not lzw_stream_ok(_lzw_bytes([clear, (340, 9), eoi]))  # no literal after a clear
    assert not lzw_stream_ok(_lzw_bytes([clear, (65, 9), (300, 9), eoi]))  # beyond the table


def test_corrupt_lzw_frame_is_an_input_error(tmp_path: Path) -> None:
    """The fuzz test's crash: a code right after a clear code that is no literal, in a frame's
    LZW strip, made tifffile's decoding segfault (ending any batch); now the frame is refused."""
    events = np.random.default_rng(1).random((3, 16, 16)) < 0.2
    path = tmp_path / "m.tif"
    write_tiff_movie(path, events.astype(np.uint8) * 7)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[2].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = _lzw_bytes([(256, 9), (340, 9), (257, 9)]).ljust(4, b"\0")
    path.write_bytes(bytes(data))
    with open_movie(path) as movie:
        movie.frame(0)
        with pytest.raises(DracoInputError, match="corrupt LZW data"):
            movie.frame(2)
