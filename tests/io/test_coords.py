"""Particle coordinates: the convention, every format's round trip, real files, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.coords import (
    guess_format,
    make_coords,
    micrograph_stem,
    read_coord_folder,
    read_coords,
    scale_coords,
    write_box,
    write_coordinate_index,
    write_cs,
    write_relion_coords,
    write_topaz,
)
from draco_em.io.star import read_star
from tests.conftest import shared_file

# A 40×60 (ny × nx) micrograph, non-square so that swapping x and y shows.
NY, NX = 40, 60


@pytest.fixture
def picks() -> pd.DataFrame:
    """Two micrographs, sub-pixel positions, scores, classes, angles and a RELION extra."""
    a = make_coords(
        "MotionCorr/job002/mic_a.mrc",
        [50.25, 3.0],
        [10.5, 30.0],
        score=[0.9, 0.1],
        class_number=[1, 2],
        psi=[12.5, -40.0],
        rlnDefocusU=[15000.0, 15000.0],
    )
    b = make_coords(
        "mic_b", [7.0], [8.0], score=[0.5], class_number=[1], psi=[0.0], rlnDefocusU=[16000.0]
    )
    return pd.concat([a, b], ignore_index=True)


# ----------------------------------------------------------------------------- conventions


def test_pick_on_pixel_is_column_x_row_y() -> None:
    """x = column, y = row of the array as stored: a pick on data[10, 50] is (50, 10)."""
    image = np.zeros((NY, NX), dtype=np.float32)
    image[10, 50] = 1.0
    row, col = np.unravel_index(np.argmax(image), image.shape)
    df = make_coords("m", [col], [row])
    assert image[int(df.y[0]), int(df.x[0])] == 1.0
    assert (df.x[0], df.y[0]) == (50.0, 10.0)


def test_binning_scale_matches_fourier_crop() -> None:
    """(0, 0) is the centre of data[0, 0]: a 2× Fourier crop moves a blob at x to x / 2."""
    fourier = pytest.importorskip("draco_em.imaging.fourier")
    yy, xx = np.mgrid[:128, :128]
    x0, y0 = 40.0, 24.0
    image = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 4.0**2)).astype(np.float32)
    binned, pixel = fourier.fourier_rescale(image, 1.0, 2.0)
    assert binned.shape == (64, 64) and pixel == pytest.approx(2.0)
    # Sub-pixel peak by the intensity-weighted centroid of the binned blob.
    by, bx = np.mgrid[:64, :64]
    weights = np.clip(binned, 0, None)
    centroid = (
        float((bx * weights).sum() / weights.sum()),
        float((by * weights).sum() / weights.sum()),
    )
    scaled = scale_coords(make_coords("m", [x0], [y0]), 1 / 2)
    assert centroid == pytest.approx((scaled.x[0], scaled.y[0]), abs=0.05)
    assert (scaled.x[0], scaled.y[0]) == (20.0, 12.0)


def test_scale_coords_hand_values() -> None:
    df = make_coords("m", [100.0, 7.0], [40.0, 2.0], box_size=[256, 256])
    out = scale_coords(df, 0.25)  # unbinned → 4× binned
    assert out.x.tolist() == [25.0, 1.75] and out.y.tolist() == [10.0, 0.5]
    assert out.box_size.tolist() == [64, 64]
    assert df.x.tolist() == [100.0, 7.0]  # the input is not modified
    with pytest.raises(DracoInputError, match="positive"):
        scale_coords(df, 0.0)


def test_box_corner_is_centre_minus_half_box(tmp_path: Path) -> None:
    path = tmp_path / "m.box"
    write_box(path, make_coords("m", [50, 31], [10, 20]), box_size=16)
    # Hand-computed: corner = centre − 16 // 2; tab-separated x y w h.
    assert path.read_text() == "42\t2\t16\t16\n23\t12\t16\t16\n"
    odd = tmp_path / "odd.box"
    write_box(odd, make_coords("m", [50], [10]), box_size=15)  # integer half box: 15 // 2 = 7
    assert odd.read_text() == "43\t3\t15\t15\n"
    back = read_coords(odd)
    assert (back.x[0], back.y[0], back.box_size[0]) == (50.0, 10.0, 15)


def test_box_invert_y(tmp_path: Path) -> None:
    path = tmp_path / "m.box"
    write_box(path, make_coords("m", [50], [10]), 16, invert_y=True, image_height=NY)
    assert path.read_text() == f"42\t{NY - 1 - 10 - 8}\t16\t16\n"  # 39 − 10 = 29, − 8 = 21
    back = read_coords(path, invert_y=True, image_height=NY)
    assert (back.x[0], back.y[0]) == (50.0, 10.0)
    with pytest.raises(DracoInputError, match="height"):
        write_box(path, make_coords("m", [50], [10]), 16, invert_y=True)


def test_cs_fractions_hand_values(tmp_path: Path) -> None:
    path = tmp_path / "picks.cs"
    write_cs(path, make_coords("mic_a", [45.0], [10.0], score=[0.7]), (NY, NX), pixel_size=1.5)
    with open(path, "rb") as fh:  # the exact name: np.save must not have appended ".npy"
        arr = np.load(fh)
    assert arr["location/micrograph_shape"].tolist() == [[NY, NX]]  # [ny, nx]
    assert arr["location/center_x_frac"][0] == pytest.approx(45.0 / NX)  # x_px = frac · nx
    assert arr["location/center_y_frac"][0] == pytest.approx(10.0 / NY)
    assert arr["location/micrograph_path"][0] == b"mic_a.mrc"
    assert arr["location/micrograph_psize_A"][0] == pytest.approx(1.5)
    assert arr["pick_stats/ncc_score"][0] == pytest.approx(0.7)
    assert arr.dtype["uid"] == np.dtype("<u8")
    assert arr.dtype["location/micrograph_shape"].shape == (2,)
    assert not list(tmp_path.glob("*.npy"))


def test_micrograph_stem() -> None:
    assert micrograph_stem("MotionCorr/job002/Movies/mic_0001.mrc") == "mic_0001"
    assert micrograph_stem("mic_0001") == "mic_0001"
    assert micrograph_stem("a.b_c.tiff") == "a.b_c"
    assert micrograph_stem("14sep05c_00004hl_c") == "14sep05c_00004hl_c"


# ----------------------------------------------------------------------------- round trips


def test_relion_star_round_trip(tmp_path: Path, picks: pd.DataFrame) -> None:
    one = picks[picks.micrograph == "mic_a"]
    path = tmp_path / "mic_a_autopick.star"
    write_relion_coords(path, one)
    block = read_star(path)[""]  # one bare data_ block, as RELION's autopicker writes
    assert list(block.columns)[:5] == [
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnAutopickFigureOfMerit",
        "rlnClassNumber",
        "rlnAnglePsi",
    ]
    assert "# version 30001" in path.read_text()
    back = read_coords(path)
    assert (back.micrograph == "mic_a").all()  # "_autopick" suffix removed
    for column in ("x", "y", "score", "class_number", "psi", "rlnDefocusU"):
        np.testing.assert_allclose(back[column], one[column], atol=1e-6)


def test_relion_unknown_values(tmp_path: Path) -> None:
    path = tmp_path / "m_manualpick.star"
    write_relion_coords(path, make_coords("m", [1.0], [2.0]))
    block = read_star(path)[""]
    assert block.rlnAutopickFigureOfMerit[0] == -999 and block.rlnAnglePsi[0] == -999
    assert block.rlnClassNumber[0] == 1  # RELION counts classes from 1
    back = read_coords(path)
    assert back.micrograph[0] == "m" and np.isnan(back.score[0]) and np.isnan(back.psi[0])


def test_coordinate_index_round_trip(tmp_path: Path, picks: pd.DataFrame, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # RELION paths are relative to the project folder
    files = {}
    for mic, group in picks.groupby("micrograph"):
        coord = Path("AutoPick/job010/Movies") / f"{mic}_autopick.star"
        write_relion_coords(coord, group)
        files[f"MotionCorr/job002/Movies/{mic}.mrc"] = coord
    write_coordinate_index("AutoPick/job010/autopick.star", files)
    assert read_star("AutoPick/job010/autopick.star")["coordinate_files"].columns.tolist() == [
        "rlnMicrographName",
        "rlnMicrographCoordinates",
    ]
    back = read_coords("AutoPick/job010/autopick.star")
    assert sorted(back.micrograph.unique()) == ["mic_a", "mic_b"]
    assert set(back.micrograph_path) == set(files)
    merged = back.sort_values(["micrograph", "x"]).reset_index(drop=True)
    expect = picks.sort_values(["micrograph", "x"]).reset_index(drop=True)
    np.testing.assert_allclose(merged[["x", "y", "score"]], expect[["x", "y", "score"]])


def test_box_round_trip(tmp_path: Path) -> None:
    df = make_coords("mic_a", [100, 33, 8], [7, 250, 9])
    path = tmp_path / "mic_a.box"
    write_box(path, df, box_size=64)
    back = read_coords(path)
    assert back.micrograph.tolist() == ["mic_a"] * 3
    np.testing.assert_array_equal(back[["x", "y"]], df[["x", "y"]])


def test_box_with_eman_mode_column(tmp_path: Path) -> None:
    path = tmp_path / "e.box"
    path.write_text("5341 8216 256 256 -3\n")  # the EMAN2 wiki example
    back = read_coords(path)
    assert (back.x[0], back.y[0]) == (5341 + 128, 8216 + 128)


def test_topaz_round_trip(tmp_path: Path, picks: pd.DataFrame) -> None:
    path = tmp_path / "picks.txt"
    write_topaz(path, picks)
    header, first = path.read_text().splitlines()[:2]
    assert header == "image_name\tx_coord\ty_coord\tscore"
    assert first.split("\t")[0] == "mic_a"  # the stem, no folder or extension
    back = read_coords(path)
    assert back.micrograph.tolist() == picks.micrograph.tolist()
    np.testing.assert_allclose(back[["x", "y", "score"]], picks[["x", "y", "score"]], atol=1e-3)


def test_topaz_integers_without_score(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    write_topaz(path, make_coords("m", [10, 20], [30, 40]))
    assert path.read_text() == "image_name\tx_coord\ty_coord\nm\t10\t30\nm\t20\t40\n"


def test_cs_round_trip(tmp_path: Path, picks: pd.DataFrame) -> None:
    path = tmp_path / "picks.cs"
    write_cs(path, picks, (NY, NX), pixel_size=1.0)
    back = read_coords(path)
    assert back.micrograph.tolist() == picks.micrograph.tolist()
    # float32 fractions: sub-millipixel error on a 60-px micrograph
    np.testing.assert_allclose(back[["x", "y"]], picks[["x", "y"]], atol=1e-3)
    assert back.micrograph_ny.unique().tolist() == [NY]
    # A .cs read back carries its shape, so it can be written again without one.
    write_cs(tmp_path / "again.cs", back)
    np.testing.assert_allclose(
        read_coords(tmp_path / "again.cs")[["x", "y"]], back[["x", "y"]], atol=1e-3
    )


def test_cs_loads_in_cryosparc_tools(tmp_path: Path, picks: pd.DataFrame) -> None:
    dataset_mod = pytest.importorskip("cryosparc.dataset")
    path = tmp_path / "picks.cs"
    write_cs(path, picks, (NY, NX), pixel_size=1.0)
    ds = dataset_mod.Dataset.load(path)
    assert len(ds) == 3
    mic_shape_y, mic_shape_x = ds["location/micrograph_shape"].T
    np.testing.assert_allclose(ds["location/center_x_frac"] * mic_shape_x, picks.x, atol=1e-3)
    np.testing.assert_allclose(ds["location/center_y_frac"] * mic_shape_y, picks.y, atol=1e-3)
    assert ds["location/micrograph_path"][0] == "MotionCorr/job002/mic_a.mrc"


def test_a_compressed_csdat_cs_reads_like_the_numpy_one(tmp_path: Path, picks: pd.DataFrame):
    """cryoSPARC's CSDAT format (cryosparc-tools `format=CSDAT_FORMAT`) reads through
    cryosparc-tools; a damaged numpy .cs never advises loading pickles."""
    dataset_mod = pytest.importorskip("cryosparc.dataset")
    plain, packed = tmp_path / "plain.cs", tmp_path / "packed.cs"
    write_cs(plain, picks, (NY, NX), pixel_size=1.0)
    dataset_mod.Dataset.load(plain).save(packed, format=dataset_mod.CSDAT_FORMAT)
    assert guess_format(packed) == "cs"
    a, b = read_coords(plain), read_coords(packed)
    assert a.micrograph.tolist() == b.micrograph.tolist()
    np.testing.assert_allclose(a[["x", "y"]], b[["x", "y"]])
    pickled = tmp_path / "pickled.cs"
    np.save(open(pickled, "wb"), np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(DracoInputError) as err:
        read_coords(pickled)
    assert "allow_pickle" not in str(err.value) and "pickle.load" not in str(err.value)


# ----------------------------------------------------------------------------- real files


def test_real_topaz_text() -> None:
    df = read_coords(shared_file("topaz/particles.txt"))
    assert len(df) == 1500 and df.micrograph.nunique() == 30
    assert df.groupby("micrograph").size().unique().tolist() == [50]
    assert (df.micrograph[0], df.x[0], df.y[0]) == (
        "14sep05c_c_00003gr_00014sq_00004hl_00004es_c",
        6924.0,
        2481.0,
    )


def test_real_relion_particles_match_topaz_text() -> None:
    """The topaz fixtures hold the same 1500 picks as RELION particles and Topaz text."""
    star = read_coords(shared_file("topaz/particles.star"))
    text = read_coords(shared_file("topaz/particles.txt"))
    assert star.micrograph.nunique() == 30
    assert star.micrograph_path[0].endswith("_c.mrc") or "/" in star.micrograph_path[0]
    key = ["x", "y"]
    a = star.sort_values(key)[key].to_numpy()
    b = text.sort_values(key)[key].to_numpy()
    np.testing.assert_allclose(a, b)


def test_real_relion_autopick_file() -> None:
    df = read_coords(shared_file("micrograph_cleaner_em/Ucsf_stack_1142_DW_autopick.star"))
    assert len(df) == 45 and (df.micrograph == "Ucsf_stack_1142_DW").all()
    assert df.x[0] == pytest.approx(839.125024) and df.y[0] == pytest.approx(19.979167)
    assert df.score[0] == pytest.approx(0.624705)


def test_real_aspire_particles() -> None:
    df = read_coords(shared_file("aspire/sample_relion_data.star"))
    assert len(df) == 17 and (df.micrograph == "micrograph").all()
    assert df.psi[0] == pytest.approx(71.118492) and df.class_number[0] == 1


# ----------------------------------------------------------------------------- bad input


def test_star_without_coordinates_is_unknown_columns() -> None:
    with pytest.raises(DracoInputError, match="unknown STAR columns"):
        read_coords(shared_file("aspire/rln_proj_65.star"))
    with pytest.raises(DracoInputError, match="unknown STAR columns"):
        read_coords(shared_file("cryodrgn/empiar_10076_7.star"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.txt", "name\tx\ty\nm\t1\t2\n", "header"),
        ("bad.box", "1 2 3\n", "4 or 5 columns"),
        ("bad.box", "a b c d\n", "not an EMAN"),
        ("bad.cs", "not numpy", "cryoSPARC"),
        # any bytes but numpy's magic were refused as "pickled data": a wrong reason
        ("bad.cs", "image_name\tx_coord\n", "neither numpy's nor CSDAT's magic"),
        ("bad.txt", "image_name\tx_coord\ty_coord\nm\tnan\t2\n", "non-finite"),
    ],
)
def test_broken_files_raise_user_errors(tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DracoInputError, match=message) as info:
        read_coords(path)
    assert name in str(info.value)


def test_cs_without_shape(tmp_path: Path) -> None:
    with pytest.raises(DracoInputError, match="--micrograph-shape"):
        write_cs(tmp_path / "p.cs", make_coords("m", [1.0], [2.0]))
    arr = np.zeros(
        1,
        dtype=[
            ("location/micrograph_path", "S4"),
            ("location/micrograph_shape", "<u4", (2,)),
            ("location/center_x_frac", "<f4"),
            ("location/center_y_frac", "<f4"),
        ],
    )
    with open(tmp_path / "zero.cs", "wb") as fh:
        np.save(fh, arr)
    with pytest.raises(DracoInputError, match="micrograph_shape is zero"):
        read_coords(tmp_path / "zero.cs")


def test_guess_format(tmp_path: Path) -> None:
    assert guess_format("x.star") == "star" and guess_format("x.box") == "box"
    assert guess_format("x.txt") == "topaz" and guess_format("x.cs") == "cs"
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01binary")
    with pytest.raises(DracoInputError, match="--from"):
        guess_format(blob)
    empty = tmp_path / "empty.box"
    empty.write_text("")
    assert len(read_coords(empty)) == 0


def test_conventions_doc_names_existing_tests() -> None:
    """docs/conventions.md backs every rule with a test: each one it names must exist."""
    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "conventions.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", doc)
    assert len(refs) >= 30
    missing = [
        f"{file}::{name}"
        for file, name in sorted(set(refs))
        if not re.search(rf"^def {name}\(", (repo / file).read_text(), flags=re.M)
    ]
    assert not missing, f"docs/conventions.md names tests that do not exist: {missing}"


def test_broken_coordinate_index(tmp_path: Path) -> None:
    index = tmp_path / "autopick.star"
    write_coordinate_index(index, {"m.mrc": "autopick.star"})  # lists itself
    with pytest.raises(DracoInputError, match="index itself"):
        read_coords(index)
    write_coordinate_index(index, {"m.mrc": "gone/m_autopick.star"})
    with pytest.raises(DracoInputError, match=r"gone/m_autopick\.star.*missing"):
        read_coords(index)


def test_relion31_particles_with_optics(tmp_path: Path) -> None:
    from draco_em.io.star import write_star

    path = tmp_path / "particles.star"
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.1]})
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 20.0],
            "rlnCoordinateY": [30.0, 40.0],
            "rlnMicrographName": ["MotionCorr/job002/a.mrc", "MotionCorr/job002/b.mrc"],
            "rlnImageName": ["1@Extract/a.mrcs", "1@Extract/b.mrcs"],
            "rlnOpticsGroup": [1, 1],
        }
    )
    write_star(path, {"optics": optics, "particles": particles})
    df = read_coords(path)
    assert df.micrograph.tolist() == ["a", "b"] and df.x.tolist() == [10.0, 20.0]
    assert df.micrograph_path.tolist() == particles.rlnMicrographName.tolist()


def test_scale_coords_per_axis_and_the_coordinate_folder_reader(tmp_path: Path) -> None:

    df = make_coords("m", [10.0, 20.0], [4.0, 8.0])
    df["micrograph_nx"], df["micrograph_ny"] = 1000, 500
    out = scale_coords(df, (0.5, 0.25))
    assert out["x"].tolist() == [5.0, 10.0] and out["y"].tolist() == [1.0, 2.0]
    assert (
        out["micrograph_nx"].tolist() == [500, 500] and out["micrograph_ny"].tolist() == [125] * 2
    )
    write_relion_coords(tmp_path / "m_autopick.star", df)
    write_relion_coords(tmp_path / "empty_autopick.star", df.iloc[:0])
    found = read_coord_folder(tmp_path)
    assert sorted(found) == ["empty", "m"] and len(found["m"]) == 2 and found["empty"].empty


def test_particles_star_without_micrograph_names_is_refused(tmp_path: Path) -> None:
    """rlnImageName but no rlnMicrographName: one line, not every pick lumped under the file."""
    star = tmp_path / "particles.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnImageName #3\n"
        "10 20 1@Extract/a.mrcs\n30 40 1@Extract/b.mrcs\n"
    )
    with pytest.raises(DracoInputError, match="without rlnMicrographName"):
        read_coords(star)


def test_scale_coords_keeps_merged_picks_without_sizes() -> None:
    """A .box pick (box_size) beside a STAR pick (none): NaN sizes stay unknown, no crash."""
    df = pd.DataFrame({"micrograph": ["a", "a"], "x": [4.0, 8.0], "y": [2.0, 6.0],
                       "box_size": [16, np.nan]})  # fmt: skip
    out = scale_coords(df, 0.5)
    assert out["x"].tolist() == [2.0, 4.0] and out["box_size"].iloc[0] == 8
    assert pd.isna(out["box_size"].iloc[1])


def test_a_relion_job_folder_is_read_through_its_index(
    tmp_path: Path, picks: pd.DataFrame, monkeypatch
) -> None:
    """`--coords ManualPick/job005/`: its manualpick.star, not job.star or note.txt."""
    monkeypatch.chdir(tmp_path)
    job = Path("ManualPick/job005")
    files = {}
    for mic, group in picks.groupby("micrograph"):
        coord = job / "Movies" / f"{mic}_manualpick.star"
        write_relion_coords(coord, group)
        files[f"MotionCorr/job002/Movies/{mic}.mrc"] = coord
    write_coordinate_index(job / "manualpick.star", files)
    (job / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.manualpick\n")
    (job / "note.txt").write_text("++++ Executing new job on Sun Dec  6\n")
    back = read_coord_folder(job)
    assert sorted(back) == ["mic_a", "mic_b"]
    assert sum(len(v) for v in back.values()) == len(picks)
    (job / "manualpick.star").unlink()
    with pytest.raises(DracoInputError, match=r"RELION job folder without autopick\.star"):
        read_coord_folder(job)


def test_a_plain_csv_of_micrograph_x_y(tmp_path: Path) -> None:
    """A spreadsheet's micrograph,x,y (any case) reads as the Topaz header does; names stay
    text ("0001", not 1); a table with neither header is one line."""
    csv = tmp_path / "picks.csv"
    csv.write_text("Micrograph,X,Y,score\n0001.mrc,10.5,20,0.9\n0002.mrc,30,40,0.1\n")
    df = read_coords(csv)
    assert df.micrograph.tolist() == ["0001", "0002"]
    assert df.x.tolist() == [10.5, 30.0] and df.y.tolist() == [20.0, 40.0]
    csv.write_text("name,col,row\na,1,2\n")
    with pytest.raises(DracoInputError, match="needs the Topaz header"):
        read_coords(csv)


def test_cs_keeps_each_micrographs_pixel_size_through_reading_and_binning(tmp_path: Path) -> None:
    """location/micrograph_psize_A read from a .cs is written back (it was written as 0,
    "unknown"), per micrograph, and 2x binning doubles it as it halves x, y and the shape."""
    path, back = tmp_path / "in.cs", tmp_path / "out.cs"
    a = make_coords("mic_a", [40.0], [10.0], pixel_size=1.5)
    b = make_coords("mic_b", [20.0], [30.0], pixel_size=0.8)
    write_cs(path, pd.concat([a, b], ignore_index=True), (NY, NX))
    write_cs(back, scale_coords(read_coords(path), 0.5))
    arr = np.load(back)
    assert arr["location/micrograph_psize_A"].tolist() == pytest.approx([3.0, 1.6])
    assert arr["location/micrograph_shape"].tolist() == [[NY // 2, NX // 2]] * 2
    assert arr["location/center_x_frac"][0] == pytest.approx(40.0 / NX)
