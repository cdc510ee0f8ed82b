"""``draco convert`` and ``draco info`` on coordinate files, through the console entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.io import coords
from draco_em.io.coords import make_coords, read_coords, write_topaz
from draco_em.io.mrc import write_mrc
from draco_em.io.star import read_star
from tests.conftest import draco_in_process, shared_file

_draco = draco_in_process  # tests/conftest.py


@pytest.fixture
def topaz_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "picks.txt"
    path.parent.mkdir()
    a = make_coords("mic_a", [400.0, 100.0], [200.0, 36.0], score=[1.5, -2.0])
    b = make_coords("mic_b", [80.0], [1000.0], score=[0.25])
    write_topaz(path, pd.concat([a, b], ignore_index=True))
    return path


def test_topaz_to_relion_star_with_scale(capsys, tmp_path: Path, topaz_file: Path) -> None:
    out = tmp_path / "AutoPick"
    code, stdout, _ = _draco(
        capsys, "convert", topaz_file, "-o", out, "--to", "star", "--scale", "0.25", "--no-progress"
    )
    assert code == 0 and "3 particles of 2 micrographs" in stdout
    index = read_star(out / "coordinate_files.star")["coordinate_files"]
    assert index.rlnMicrographName.tolist() == ["mic_a.mrc", "mic_b.mrc"]
    assert index.rlnMicrographCoordinates.tolist() == [
        str(out / "mic_a_autopick.star"),
        str(out / "mic_b_autopick.star"),
    ]
    block = read_star(out / "mic_a_autopick.star")[""]
    assert block.rlnCoordinateX.tolist() == [100.0, 25.0]  # 400 · 0.25, 100 · 0.25
    assert block.rlnCoordinateY.tolist() == [50.0, 9.0]
    assert block.rlnAutopickFigureOfMerit.tolist() == [1.5, -2.0]


def test_chain_through_every_format_returns_the_picks(capsys, tmp_path, topaz_file) -> None:
    star_dir, box_dir = tmp_path / "star", tmp_path / "box"
    cs, back = tmp_path / "p.cs", tmp_path / "back.txt"
    steps = [
        (topaz_file, star_dir, "star", []),
        (star_dir / "coordinate_files.star", box_dir, "box", ["--box-size", "64"]),
        (box_dir, cs, "cs", ["--micrograph-shape", "1100x500", "--pixel-size", "1.1"]),
        (cs, back, "topaz", []),
    ]
    for src, dst, fmt, extra in steps:
        code, _, err = _draco(
            capsys, "convert", src, "-o", dst, "--to", fmt, *extra, "--no-progress"
        )
        assert code == 0, err
    assert sorted(p.name for p in box_dir.iterdir()) == ["mic_a.box", "mic_b.box"]
    assert (box_dir / "mic_b.box").read_text() == "48\t968\t64\t64\n"  # 80 − 32, 1000 − 32
    original = read_coords(topaz_file).sort_values(["micrograph", "x"]).reset_index()
    final = read_coords(back).sort_values(["micrograph", "x"]).reset_index()
    assert final.micrograph.tolist() == original.micrograph.tolist()
    np.testing.assert_allclose(final[["x", "y"]], original[["x", "y"]], atol=1e-3)


def test_cs_output_needs_the_shape(capsys, tmp_path: Path, topaz_file: Path) -> None:
    code, _, err = _draco(
        capsys, "convert", topaz_file, "-o", tmp_path / "p.cs", "--to", "cs", "--no-progress"
    )
    assert code == 2 and "--micrograph-shape" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "p.cs").exists()


def test_cs_shape_read_from_the_micrographs_star(capsys, tmp_path: Path, topaz_file: Path) -> None:
    mics = tmp_path / "mics"
    for stem, shape in (("mic_a", (120, 200)), ("mic_b", (120, 200))):
        write_mrc(mics / f"{stem}.mrc", np.zeros(shape, np.float32) + 1.0, 1.0)
    star = tmp_path / "micrographs.star"
    star.write_text(
        "data_micrographs\nloop_\n_rlnMicrographName #1\nmics/mic_a.mrc\nmics/mic_b.mrc\n"
    )
    out = tmp_path / "p.cs"
    code, _, err = _draco(
        capsys, "convert", topaz_file, "-o", out, "--to", "cs", "--micrographs", star, "-q"
    )
    assert code == 0, err
    cs = np.load(out)
    assert cs["location/micrograph_shape"].tolist() == [[120, 200]] * len(cs)
    # a size differing between micrographs cannot be one --micrograph-shape: refused
    write_mrc(mics / "mic_b.mrc", np.zeros((64, 64), np.float32) + 1.0, 1.0)
    code, _, err = _draco(
        capsys, "convert", topaz_file, "-o", tmp_path / "q.cs", "--to", "cs",
        "--micrographs", star, "-q",
    )  # fmt: skip
    assert code == 2 and "different sizes" in err


def test_failed_inputs_are_recorded_and_the_rest_converted(capsys, tmp_path, topaz_file) -> None:
    bad = tmp_path / "in" / "bad.box"
    bad.write_text("1 2 3\n")
    out, missing = tmp_path / "boxes", tmp_path / "missing.txt"
    argv = ["convert", topaz_file, bad, missing, "-o", out, "--to", "box", "--box-size", "32"]
    for _ in range(2):  # a re-run starts a fresh failures.txt
        code, _, err = _draco(capsys, *argv, "--no-progress")
        assert code == 1 and "2 of 3 inputs failed" in err  # some failed: exit 1
        failures = (out / "failures.txt").read_text().splitlines()
        assert [line.split("\t")[0] for line in failures] == [str(bad), str(missing)]
    assert sorted(p.name for p in out.glob("*.box")) == ["mic_a.box", "mic_b.box"]


def test_an_unreadable_input_is_one_failure_not_a_usage_error(
    capsys, tmp_path, topaz_file, monkeypatch
) -> None:
    """A file without read permission stopped the whole run at argument parsing (exit 2,
    "path ... is not readable"), or raised a bare PermissionError once past it."""
    theirs = tmp_path / "in" / "theirs.box"
    theirs.write_text("10 20 32 32\n")
    access, read = os.access, coords.read_coords  # chmod 000 is no use: tests may run as root
    monkeypatch.setattr(os, "access", lambda p, *a, **k: Path(p) != theirs and access(p, *a, **k))

    def read_coords(path, *args, **kwargs):
        if Path(path) == theirs:
            raise PermissionError(13, "Permission denied", str(path))
        return read(path, *args, **kwargs)

    monkeypatch.setattr(coords, "read_coords", read_coords)
    out = tmp_path / "boxes"
    code, _, err = _draco(capsys, "convert", topaz_file, theirs, "-o", out, "--to", "box",
                          "--box-size", "32", "-q")  # fmt: skip
    assert code == 1 and "Traceback" not in err, err
    assert (
        "theirs.box: cannot read the file (Permission denied)" in (out / "failures.txt").read_text()
    )
    assert sorted(p.name for p in out.glob("*.box")) == ["mic_a.box", "mic_b.box"]


def test_a_folder_without_coordinate_files_is_named(capsys, tmp_path, topaz_file) -> None:
    """A folder given by name that holds no coordinate file (a typo, or a folder named
    x.star) was dropped without a word and the run exited 0."""
    empty = tmp_path / "picks.star"
    empty.mkdir()
    code, _, err = _draco(capsys, "convert", topaz_file, empty, "-o", tmp_path / "o",
                          "--to", "star", "-q")  # fmt: skip
    assert code == 2 and "picks.star: folder holds no coordinate files" in err


def test_a_refused_run_keeps_the_failures_of_the_run_writing_there(
    capsys, tmp_path, topaz_file
) -> None:
    """A second convert into a folder another run holds deleted that run's failures.txt
    before it stopped on the folder's lock."""
    from tests.io.test_folder_lock import _holder

    out = tmp_path / "boxes"
    out.mkdir()
    (out / "failures.txt").write_text("x.box\tthe other run's\n")
    proc = _holder(out)
    try:
        code, _, err = _draco(capsys, "convert", topaz_file, "-o", out, "--to", "box",
                              "--box-size", "32", "-q")  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and "another draco run" in err
    assert (out / "failures.txt").read_text() == "x.box\tthe other run's\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "xyz"], "--to"),
        (["--to", "cs", "--micrograph-shape", "12"], "NYxNX"),
        (["--to", "box"], "--box-size"),
        (["--to", "topaz", "--scale", "-1"], "--scale"),
    ],
)
def test_bad_options_one_line_exit_2(capsys, tmp_path, topaz_file, argv, message) -> None:
    code, _, err = _draco(
        capsys, "convert", topaz_file, "-o", tmp_path / "o", *argv, "--no-progress"
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_never_overwrites_an_input(capsys, topaz_file: Path) -> None:
    before = topaz_file.read_text()
    code, _, err = _draco(
        capsys, "convert", topaz_file, "-o", topaz_file, "--to", "topaz", "--no-progress"
    )
    assert code == 2 and "overwrite" in err and topaz_file.read_text() == before


def test_per_micrograph_files_are_not_written_among_the_inputs(capsys, tmp_path, topaz_file):
    """Into its own input folder, the next run would read the outputs as inputs (and then
    refuse to overwrite them): refused up front (the helper's QA, session 20)."""
    stars = tmp_path / "stars"
    assert (
        _draco(capsys, "convert", topaz_file, "-o", stars, "--to", "star", "--no-progress")[0] == 0
    )
    before = sorted(p.name for p in stars.iterdir())
    code, _, err = _draco(capsys, "convert", stars, "-o", stars, "--to", "star", "--no-progress")
    assert code == 2 and "holds the input" in err
    assert sorted(p.name for p in stars.iterdir()) == before


def test_real_topaz_and_relion_files(capsys, tmp_path: Path) -> None:
    txt = shared_file("topaz/particles.txt")
    autopick = shared_file("micrograph_cleaner_em/Ucsf_stack_1142_DW_autopick.star")
    code, _, err = _draco(
        capsys,
        "convert",
        txt,
        autopick,
        "-o",
        tmp_path / "all.txt",
        "--to",
        "topaz",
        "--no-progress",
    )
    assert code == 0, err
    df = read_coords(tmp_path / "all.txt")
    assert len(df) == 1545 and df.micrograph.nunique() == 31


def test_info_on_coordinate_files(capsys, tmp_path: Path, topaz_file: Path) -> None:
    star = shared_file("topaz/ctf_params.star")
    code, stdout, err = _draco(capsys, "info", topaz_file, star, "--json")
    assert code == 0, err
    coords_info, star_info = json.loads(stdout)
    assert coords_info["n_particles"] == 3 and coords_info["n_micrographs"] == 2
    assert star_info["kind"] == "micrographs" and star_info["n_micrographs"] == 30
    assert star_info["pixel_size"] == pytest.approx(0.6575, abs=1e-4)


def test_info_on_a_broken_star_is_one_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.star"
    bad.write_text("data_x\nloop_\n_rlnA #1\n1 2\n")
    code, _, err = _draco(capsys, "info", bad)
    assert code == 2 and "bad.star" in err and len(err.strip().splitlines()) == 1


def test_from_overrides_the_guess(capsys, tmp_path: Path) -> None:
    boxes_as_txt = tmp_path / "mic_a.txt"  # EMAN box lines under a Topaz-looking name
    boxes_as_txt.write_text("42\t2\t16\t16\n")
    out = tmp_path / "o.txt"
    code, _, err = _draco(
        capsys, "convert", boxes_as_txt, "-o", out, "--to", "topaz", "--no-progress"
    )
    assert code == 2 and "Topaz" in err
    code, _, err = _draco(
        capsys,
        "convert",
        boxes_as_txt,
        "-o",
        out,
        "--to",
        "topaz",
        "--from",
        "box",
        "--no-progress",
    )
    assert code == 0, err
    assert out.read_text().splitlines()[1] == "mic_a\t50\t10"


def test_picks_at_negative_coordinates_are_written_with_a_warning(capsys, tmp_path) -> None:
    """Session 20's bad-input pass: negative centres went through unsaid (a flipped axis or box
    corners read as centres look like this); they are kept, and said."""
    path = tmp_path / "picks.txt"
    write_topaz(path, make_coords("mic_a", [-30.0, 100.0, 50.0], [10.0, -4.0, 60.0]))
    code, stdout, err = _draco(capsys, "convert", path, "-o", tmp_path / "box", "--to", "box",
                               "--box-size", "64", "-q")  # fmt: skip
    assert code == 0 and "3 particles" in stdout
    assert "warning: 2 picks are centred at negative coordinates" in err
    code, _, err = _draco(capsys, "convert", path, "-o", tmp_path / "t.txt", "--to", "topaz")
    assert code == 0 and "2 picks are centred at negative" in err


def test_invert_y_with_scale_flips_in_the_input_height(capsys, tmp_path: Path) -> None:
    """--micrograph-shape is in output px; a .box read with --invert-y is flipped in its own
    (input) height before --scale (it was flipped about the output height: y off by 3/4)."""
    from draco_em.io.coords import write_box

    src = tmp_path / "in"
    src.mkdir()
    picks = make_coords("m", [1000.0, 2048.0], [400.0, 3000.0])
    write_box(src / "m.box", picks, 64, invert_y=True, image_height=4096)
    out = tmp_path / "out"
    argv = ["--to", "star", "--scale", "0.25", "--invert-y", "--micrograph-shape", "1024x1024"]
    code, _, _ = _draco(capsys, "convert", src, "-o", out, *argv, "--no-progress")
    assert code == 0
    back = read_coords(out / "m_autopick.star")
    np.testing.assert_allclose(back["y"], [100.0, 750.0], atol=0.25)
    np.testing.assert_allclose(back["x"], [250.0, 512.0], atol=0.25)


def test_a_star_folder_is_read_once_not_through_its_index_too(capsys, tmp_path, topaz_file):
    """`--to star` writes per-micrograph STARs and coordinate_files.star listing them; giving
    that folder back to convert read both and doubled every pick (read_coord_folder did not).
    A RELION job folder is read through its index, not through job.star (a failure, exit 1)."""
    star_dir = tmp_path / "star"
    _draco(capsys, "convert", topaz_file, "-o", star_dir, "--to", "star", "--no-progress")
    back = tmp_path / "back.txt"
    code, stdout, _ = _draco(capsys, "convert", star_dir, "-o", back, "--to", "topaz", "-q")
    assert code == 0 and "3 particles of 2 micrographs" in stdout
    assert len(read_coords(back)) == 3
    (star_dir / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.external\n")
    (star_dir / "coordinate_files.star").rename(star_dir / "autopick.star")
    code, stdout, _ = _draco(capsys, "convert", star_dir, "-o", back, "--to", "topaz", "-q")
    assert code == 0 and "3 particles of 2 micrographs" in stdout


def test_micrographs_star_names_and_sizes_every_format(capsys, tmp_path, topaz_file) -> None:
    """`--micrographs` renamed the micrographs for `--to star` only: a .cs kept `<stem>.mrc`
    and pixel size 0 although the STAR gives both; a pick of an unlisted micrograph is said."""
    mics = tmp_path / "mics"
    write_mrc(mics / "mic_a.mrc", np.ones((120, 200), np.float32), 2.0)
    star = tmp_path / "micrographs.star"
    star.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnMicrographPixelSize #2\n1 2.0\n\n"
        "data_micrographs\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        "MotionCorr/job002/mics/mic_a.mrc 1\n"
    )
    out = tmp_path / "p.cs"
    code, _, err = _draco(capsys, "convert", topaz_file, "-o", out, "--to", "cs",
                          "--micrographs", star, "--micrograph-shape", "120x200", "-q")  # fmt: skip
    assert code == 0, err
    cs = np.load(out)
    a = cs["location/micrograph_path"] == b"MotionCorr/job002/mics/mic_a.mrc"
    assert a.sum() == 2 and (cs["location/micrograph_psize_A"][a] == 2.0).all()
    assert "1 micrograph of the picks not in --micrographs (e.g. mic_b)" in err


def test_invert_y_without_a_box_file_is_refused(capsys, tmp_path, topaz_file) -> None:
    """It flips .box files only and was ignored without a word for star/topaz/cs."""
    code, _, err = _draco(capsys, "convert", topaz_file, "-o", tmp_path / "s", "--to", "star",
                          "--invert-y", "--micrograph-shape", "100x100", "-q")  # fmt: skip
    assert code == 2 and "no input is a .box file" in err


def test_a_pick_predict_folder_is_read_once(capsys, tmp_path, topaz_file) -> None:
    """pick predict's folder holds coordinate_files.star, picks.cs and picks_topaz.txt: the
    same picks three times (convert read them 2-3×). Its index is read, once."""
    from draco_em.io.coords import write_coordinate_index, write_cs, write_relion_coords

    out = tmp_path / "pick_out"
    picks = read_coords(topaz_file)
    index = {}
    for mic, group in picks.groupby("micrograph"):  # as pick/run.py lays it out
        write_relion_coords(out / "coordinates" / f"{mic}_autopick.star", group)
        index[f"{mic}.mrc"] = f"coordinates/{mic}_autopick.star"
    write_coordinate_index(out / "coordinate_files.star", index)
    write_topaz(out / "picks_topaz.txt", picks)
    write_cs(out / "picks.cs", picks, (2000, 2000))
    back = tmp_path / "back.txt"
    code, stdout, err = _draco(capsys, "convert", out, "-o", back, "--to", "topaz", "-q")
    assert code == 0 and "3 particles of 2 micrographs" in stdout, err
