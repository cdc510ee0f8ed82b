"""STAR reading/writing: RELION micrograph lists, the dataset manifest, broken files, fuzzing."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from draco_em.errors import DracoInputError
from draco_em.io.coords import read_coords
from draco_em.io.star import (
    MicrographTable,
    project_path,
    read_micrographs_star,
    read_star,
    star_summary,
    write_micrographs_star,
    write_star,
)
from tests.conftest import shared_file


def _relion31_table(folder: Path) -> MicrographTable:
    """Two optics groups with different pixel sizes and CTF columns, as RELION 3.1+ writes."""
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
            "rlnOpticsGroup": [1, 2],
            "rlnMicrographOriginalPixelSize": [0.5, 0.6],
            "rlnVoltage": [300.0, 200.0],
            "rlnSphericalAberration": [2.7, 2.7],
            "rlnAmplitudeContrast": [0.1, 0.1],
            "rlnMicrographPixelSize": [1.0, 1.2],
        }
    )
    micrographs = pd.DataFrame(
        {
            "rlnMicrographName": [f"MotionCorr/job002/mic_{i:04d}.mrc" for i in range(4)],
            "rlnOpticsGroup": [1, 2, 1, 2],
            "rlnCtfMaxResolution": [3.5, 8.0, 4.1, 2.9],
            "rlnDefocusU": [15000.0, 16000.0, 17000.0, 18000.0],
        }
    )
    return MicrographTable(
        path=folder / "micrographs_ctf.star", optics=optics, micrographs=micrographs
    )


def test_relion31_round_trip_keeps_columns_optics_and_header(tmp_path: Path) -> None:
    table = _relion31_table(tmp_path)
    write_micrographs_star(table.path, table)
    text = table.path.read_text()
    assert "# version 30001" in text and "data_optics" in text and "data_micrographs" in text
    back = read_micrographs_star(table.path)
    pd.testing.assert_frame_equal(back.optics, table.optics, check_dtype=False)
    pd.testing.assert_frame_equal(back.micrographs, table.micrographs, check_dtype=False)


def test_filtered_table_keeps_every_column_and_the_optics_block(tmp_path: Path) -> None:
    table = _relion31_table(tmp_path)
    write_micrographs_star(table.path, table)
    table = read_micrographs_star(table.path)
    selected = table.filtered(table.micrographs["rlnCtfMaxResolution"] < 5.0)
    out = tmp_path / "micrographs_selected.star"
    write_micrographs_star(out, selected, inputs=[table.path])
    back = read_micrographs_star(out)
    assert list(back.micrographs.columns) == list(table.micrographs.columns)
    assert list(back.micrographs["rlnMicrographName"].str[-12:]) == [
        "mic_0000.mrc",
        "mic_0002.mrc",
        "mic_0003.mrc",
    ]
    pd.testing.assert_frame_equal(back.optics, table.optics)
    # The pixel size still comes from each row's optics group after filtering.
    assert [back.pixel_size(i) for i in range(3)] == [1.0, 1.0, 1.2]


def test_pixel_size_sources(tmp_path: Path) -> None:
    table = _relion31_table(tmp_path)
    assert table.pixel_size(1) == pytest.approx(1.2)  # optics group 2
    table.micrographs["rlnMicrographPixelSize"] = [0.9, 0.0, 0.9, 0.9]
    assert table.pixel_size(0) == pytest.approx(0.9)  # a row's own column wins
    assert table.pixel_size(1) == pytest.approx(1.2)  # 0 means unknown: fall back to optics
    bare = MicrographTable(tmp_path / "x.star", None, pd.DataFrame({"rlnMicrographName": ["a"]}))
    assert bare.pixel_size(0) is None


def test_manifest_columns_round_trip(tmp_path: Path) -> None:
    """The dataset manifest: draco columns, an image without pairs has empty paths."""
    table = _relion31_table(tmp_path)
    table.micrographs = table.micrographs.iloc[:2].assign(
        dracoMicrographEven=["even/mic_0000.mrc", ""],
        dracoMicrographOdd=["odd/mic_0000.mrc", ""],
        dracoHasPairs=[1, 0],
        dracoMean=[0.5, -0.25],
    )
    write_micrographs_star(table.path, table)
    back = read_micrographs_star(table.path).micrographs
    assert list(back["dracoMicrographOdd"]) == ["odd/mic_0000.mrc", ""]
    assert list(back["dracoHasPairs"]) == [1, 0]
    assert back["dracoMean"].tolist() == [0.5, -0.25]


def test_resolve_star_folder_first_then_cwd(tmp_path: Path, monkeypatch) -> None:
    star_dir, project = tmp_path / "Job", tmp_path / "project"
    (star_dir / "mics").mkdir(parents=True)
    (project / "mics").mkdir(parents=True)
    (star_dir / "mics" / "a.mrc").write_bytes(b"")
    (project / "mics" / "b.mrc").write_bytes(b"")
    monkeypatch.chdir(project)
    table = MicrographTable(star_dir / "m.star", None, pd.DataFrame({"rlnMicrographName": []}))
    assert table.resolve("mics/a.mrc") == star_dir / "mics" / "a.mrc"  # beside the STAR
    assert table.resolve("mics/b.mrc") == Path("mics/b.mrc")  # RELION project folder (cwd)
    assert table.resolve("mics/c.mrc") == star_dir / "mics" / "c.mrc"  # missing: name it
    assert table.resolve("/abs/c.mrc") == Path("/abs/c.mrc")


def test_project_path_rule(tmp_path: Path, monkeypatch) -> None:
    """Issue 16: one rule for names in written STARs: relative to the cwd, else absolute."""
    project = tmp_path / "project"
    (project / "Job" / "mics").mkdir(parents=True)
    (project / "Movies").symlink_to(tmp_path, target_is_directory=True)  # a RELION link
    monkeypatch.chdir(project)
    assert project_path("Job/mics/a.mrc") == "Job/mics/a.mrc"
    assert project_path(project / "Job" / "mics" / "a.mrc") == "Job/mics/a.mrc"
    assert project_path("Job/../Job/mics/a.mrc") == "Job/mics/a.mrc"
    assert project_path(project / "Movies" / "m.tif") == "Movies/m.tif"  # link kept
    assert project_path(tmp_path / "outside.mrc") == (tmp_path / "outside.mrc").as_posix()


def test_project_relative_names_resolve_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """A STAR inside a project, read from another folder: its project-relative names resolve
    through the folders above it; ``rebased`` rewrites them for the current folder."""
    project = tmp_path / "project"
    (project / "Prep").mkdir(parents=True)
    (project / "Prep" / "a.mrc").write_bytes(b"")
    star = project / "Curate" / "job3" / "list.star"
    star.parent.mkdir(parents=True)
    frame = pd.DataFrame({"rlnMicrographName": ["Prep/a.mrc"], "dracoMicrographEven": [""]})
    table = MicrographTable(star, None, frame)
    monkeypatch.chdir(tmp_path)  # not the project
    assert table.resolve("Prep/a.mrc") == project / "Prep" / "a.mrc"
    rebased = table.rebased().micrographs
    assert rebased["rlnMicrographName"].tolist() == ["project/Prep/a.mrc"]
    assert rebased["dracoMicrographEven"].tolist() == [""]  # empty stays empty
    monkeypatch.chdir(project)
    assert table.rebased().micrographs["rlnMicrographName"].tolist() == ["Prep/a.mrc"]
    # RELION's "file:mrc" (rlnCtfImage) is rebased with its file, the type kept.
    (project / "Prep" / "a.ctf").write_bytes(b"")
    ctf = MicrographTable(star, None, frame.assign(rlnCtfImage=["Prep/a.ctf:mrc"]))
    monkeypatch.chdir(tmp_path)
    assert ctf.rebased().micrographs["rlnCtfImage"].tolist() == ["project/Prep/a.ctf:mrc"]


def test_rebased_keeps_names_of_files_that_exist_nowhere(tmp_path: Path, monkeypatch) -> None:
    """A RELION STAR copied without its ``.star`` metadata files: the name stays as written
    (it was ``MotionCorr/job002/MotionCorr/job002/...``, the STAR's folder put in front)."""
    (tmp_path / "MotionCorr" / "job002" / "Movies").mkdir(parents=True)
    (tmp_path / "MotionCorr" / "job002" / "Movies" / "a.mrc").write_bytes(b"")
    frame = pd.DataFrame({
        "rlnMicrographName": ["MotionCorr/job002/Movies/a.mrc"],
        "rlnMicrographMetadata": ["MotionCorr/job002/Movies/a.star"],  # not there
    })  # fmt: skip
    table = MicrographTable(tmp_path / "MotionCorr" / "job002" / "mics.star", None, frame)
    monkeypatch.chdir(tmp_path)
    rebased = table.rebased().micrographs
    assert rebased["rlnMicrographName"].tolist() == ["MotionCorr/job002/Movies/a.mrc"]
    assert rebased["rlnMicrographMetadata"].tolist() == ["MotionCorr/job002/Movies/a.star"]


def test_write_star_never_overwrites_an_input(tmp_path: Path) -> None:
    path = tmp_path / "in.star"
    write_star(path, {"x": pd.DataFrame({"rlnA": [1]})})
    with pytest.raises(DracoInputError, match="overwrite"):
        write_star(path, {"x": pd.DataFrame({"rlnA": [2]})}, inputs=[path])
    assert read_star(path)["x"]["rlnA"].tolist() == [1]


def test_key_value_block_reads_as_one_row(tmp_path: Path) -> None:
    path = tmp_path / "general.star"
    path.write_text("data_general\n\n_rlnImageSize 64\n_rlnPixelSize 1.5\n")
    assert read_star(path)["general"].to_dict("records") == [
        {"rlnImageSize": 64, "rlnPixelSize": 1.5}
    ]


# ----------------------------------------------------------------------------- real files


def test_real_pre31_single_block_ctf_star() -> None:
    table = read_micrographs_star(shared_file("topaz/ctf_params.star"))
    assert table.optics is None and table.block_name == "images"
    assert len(table.micrographs) == 30
    # 2.5 µm detector pixel / 38023× magnification = 0.6575 Å (topaz README).
    assert table.pixel_size(0) == pytest.approx(2.5e4 / 38023)
    assert table.resolve(table.micrographs["rlnMicrographName"][0]).name.endswith("_c.mrc")


def test_real_numeric_micrograph_names_stay_text() -> None:
    table = read_micrographs_star(shared_file("cryodrgn/empiar_10076_7.star"))
    assert table.micrographs["rlnMicrographName"].tolist() == [str(i) for i in range(1, 8)]


def test_real_filtered_ctf_star_round_trip(tmp_path: Path) -> None:
    src = shared_file("topaz/ctf_params.star")
    table = read_micrographs_star(src)
    out = tmp_path / "selected.star"
    write_micrographs_star(out, table.filtered(table.micrographs["rlnDefocusU"] < 16000))
    back = read_micrographs_star(out)
    assert back.block_name == "images" and list(back.micrographs.columns) == list(
        table.micrographs.columns
    )
    assert (back.micrographs["rlnDefocusU"] < 16000).all() and 0 < len(back.micrographs) < 30


@pytest.mark.parametrize(
    ("relpath", "kind", "count"),
    [
        ("topaz/particles.star", "coordinates", 1500),
        ("micrograph_cleaner_em/Ucsf_stack_1142_DW_autopick.star", "coordinates", 45),
        ("aspire/sample_relion_data.star", "coordinates", 17),
        ("aspire/rln_proj_65.star", "particles", 5),
        ("cryodrgn/empiar_10076_7.star", "particles", 7),
    ],
)
def test_real_star_summaries(relpath: str, kind: str, count: int) -> None:
    summary = star_summary(shared_file(relpath))
    assert summary["kind"] == kind and summary["n_particles"] == count


def test_summary_of_micrograph_list() -> None:
    summary = star_summary(shared_file("topaz/ctf_params.star"))
    assert summary["kind"] == "micrographs" and summary["n_micrographs"] == 30
    assert summary["pixel_size"] == pytest.approx(0.6575, abs=1e-4)


# ----------------------------------------------------------------------------- bad input


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DracoInputError, match=r"nope\.star: file not found"):
        read_star(tmp_path / "nope.star")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just some text\n",
        "data_x\nloop_\n_rlnA #1\n1 2\n",  # more values than columns
        "data_\nloop_\n_rlnA\n'unterminated\n",
        "data_x\nloop_\n_rlnA\n_rlnA\n1 2\n",  # repeated column
    ],
)
def test_broken_star_raises_user_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.star"
    path.write_text(text)
    with pytest.raises(DracoInputError, match=r"broken\.star"):
        read_star(path)


def test_unknown_columns_for_a_micrograph_list(tmp_path: Path) -> None:
    path = tmp_path / "odd.star"
    write_star(path, {"micrographs": pd.DataFrame({"rlnSomething": [1.0]})})
    with pytest.raises(DracoInputError, match=r"unknown STAR columns.*rlnMicrographName"):
        read_micrographs_star(path)
    with pytest.raises(DracoInputError, match="rlnMicrographName"):
        read_micrographs_star(shared_file("aspire/rln_proj_65.star"))


def test_particle_star_is_not_a_micrograph_list() -> None:
    with pytest.raises(DracoInputError, match="particle coordinates"):
        read_micrographs_star(shared_file("topaz/particles.star"))


_OPTICS = "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnMicrographPixelSize #2\n1 1.5\n\n"


def test_latin1_text_is_named_not_called_blockless(tmp_path: Path) -> None:
    """A STAR with one Latin-1 byte (a name with "é" from an older tool) said "no data_ block
    found": starfile reads its lines through linecache, which gives them all as empty."""
    path = tmp_path / "mics.star"
    text = _OPTICS + "data_micrographs\nloop_\n_rlnMicrographName #1\ncaf\u00e9.mrc\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DracoInputError, match=r"mics\.star: .*not UTF-8 text \(byte 0xe9"):
        read_micrographs_star(path)
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG")  # binary: still "no data_ block"
    with pytest.raises(DracoInputError, match="no data_ block found"):
        read_star(path)


@pytest.mark.parametrize("empty", ['""', "''"])
def test_an_empty_micrograph_name_is_refused(tmp_path: Path, empty: str) -> None:
    """An empty rlnMicrographName resolved to the STAR's folder: denoise and prepare crashed
    (ValueError: PosixPath('.') has an empty name), pick and curate failed "." as a folder."""
    path = tmp_path / "mics.star"
    rows = f"a.mrc 1\n{empty} 1\n"
    path.write_text(
        _OPTICS + f"data_micrographs\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n{rows}"
    )
    with pytest.raises(
        DracoInputError, match=r"mics\.star: row 2 of data_micrographs has an empty"
    ):
        read_micrographs_star(path)


def test_a_movies_star_is_named_as_such(tmp_path: Path) -> None:
    """RELION's movies.star given to denoise, pick or curate: say what it is and what to do."""
    path = tmp_path / "movies.star"
    path.write_text(_OPTICS + "data_movies\nloop_\n_rlnMicrographMovieName #1\nm.tiff\n")
    with pytest.raises(DracoInputError, match=r"rlnMicrographName: a movies STAR .*draco prepare"):
        read_micrographs_star(path)


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a parser stuck in a loop."""

    def _raise(signum, frame):
        raise TimeoutError(f"STAR reader did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _check_reader(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "fuzz.star"
    path.write_bytes(payload)
    with _time_limit(5):
        try:
            blocks = read_star(path)
        except DracoInputError as exc:
            assert "fuzz.star" in str(exc)
            return
        assert blocks and all(isinstance(t, pd.DataFrame) for t in blocks.values())
        # What parses as STAR must also give a micrograph list / picks, or a user error.
        for reader in (read_micrographs_star, read_coords, star_summary):
            try:
                reader(path)
            except DracoInputError as exc:
                assert "fuzz.star" in str(exc)


_TOKENS = st.sampled_from(
    [
        "data_",
        "data_x",
        "data_optics",
        "loop_",
        "_rlnA",
        "_rlnB #2",
        "_rlnMicrographName",
        "1",
        "-2.5",
        "nan",
        "'q",
        '"',
        "a b",
        "#",
        "\t",
        " ",
        "\n",
        "\x00",
        "é",
        "1e999",
    ]
)


# deadline=None: _time_limit catches hangs; tmp_path is shared by examples, which is harmless.
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(tmp_path: Path, payload: bytes) -> None:
    _check_reader(tmp_path, payload)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tokens=st.lists(_TOKENS, max_size=40))
def test_fuzz_star_like_text(tmp_path: Path, tokens: list[str]) -> None:
    """Bytes built from STAR tokens reach the parser's deeper paths than random bytes do."""
    _check_reader(tmp_path, " ".join(tokens).replace(" \n ", "\n").encode())


def test_positive_value_reads_the_row_then_its_optics_group() -> None:
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnMicrographOriginalPixelSize": [0.5, 0.8]})
    rows = pd.DataFrame(
        {
            "rlnMicrographName": ["a.mrc", "b.mrc", "c.mrc"],
            "rlnOpticsGroup": [1, 2, 2],
            "rlnMicrographOriginalPixelSize": ["nan", "nan", "0.7"],
        }
    )
    table = MicrographTable(Path("m.star"), optics, rows)
    column = "rlnMicrographOriginalPixelSize"
    assert [table.positive_value(i, column) for i in range(3)] == [0.5, 0.8, 0.7]
    assert table.positive_value(0, "rlnCtfMaxResolution") is None


def test_values_are_written_as_read(tmp_path: Path) -> None:
    """A small value keeps its digits (starfile's %.6f wrote 1.5e-08 as 0.000000), a large one
    all of its own, and NaN is written as nan, which RELION parses (not <NA>)."""
    path = tmp_path / "v.star"
    columns = {"rlnMicrographName": ["a.mrc"], "rlnAccumMotionTotal": [1.5e-08],
               "rlnDefocusU": [15234.56789], "rlnCtfMaxResolution": [np.nan]}  # fmt: skip
    frame = pd.DataFrame(columns)
    write_star(path, {"micrographs": frame})
    text = path.read_text()
    assert "1.5e-08" in text and "15234.56789" in text and "nan" in text and "<NA>" not in text
    back = read_star(path)["micrographs"]
    assert back.rlnAccumMotionTotal[0] == pytest.approx(1.5e-08)
