"""``draco pick predict`` resumes by its inputs: a micrograph rewritten since it was picked (or
given an ``--exclude-masks`` mask since) is picked again (pick/run.py, io.batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.io.coords import read_coords
from draco_em.io.mrc import write_mrc
from tests.conftest import spy_on_writes


def _mic(path: Path, seed: int) -> None:
    image = gaussian_filter(np.random.default_rng(seed).normal(size=(256, 256)), 3.0)
    write_mrc(path, image.astype(np.float32), 4.0)


def _args(mics: Path, out: Path, *extra: str) -> list[str]:
    return ["pick", "predict", str(mics), "-o", str(out), "--diameter", "160",
            "--diameter-scales", "1", "--tta", "1", "-q", *extra]  # fmt: skip


def test_a_rewritten_micrograph_is_picked_again_and_the_other_resumed(tmp_path, monkeypatch):
    """A re-run skipped every micrograph whose STAR existed, so one rewritten upstream kept
    its stale picks. Now it is picked again, its STAR replaced (there until then)."""
    import draco_em.pick.run as run

    mics, out = tmp_path / "mics", tmp_path / "out"
    _mic(mics / "mic_0.mrc", 0), _mic(mics / "mic_1.mrc", 1)
    first = CliRunner().invoke(app, _args(mics, out))
    assert first.exit_code == 0, first.output
    stars = out / "coordinates"
    kept = (stars / "mic_0_autopick.star").stat().st_mtime_ns
    _mic(mics / "mic_1.mrc", 2)
    there = spy_on_writes(monkeypatch, run, "write_relion_coords")  # did each STAR exist?
    again = CliRunner().invoke(app, _args(mics, out))
    assert again.exit_code == 0, again.output
    assert "1 redone: input changed since processed (mic_1.mrc)" in again.output
    assert there == [True]
    assert (stars / "mic_0_autopick.star").stat().st_mtime_ns == kept
    untouched = CliRunner().invoke(app, _args(mics, out))
    assert untouched.exit_code == 0 and "redone" not in untouched.output and there == [True]


def test_a_mask_added_since_redoes_that_micrographs_picks(tmp_path):
    mics, masks, out = tmp_path / "mics", tmp_path / "masks", tmp_path / "out"
    _mic(mics / "mic_0.mrc", 0), _mic(mics / "mic_1.mrc", 1)
    write_mrc(masks / "mic_0.mrc", np.zeros((256, 256), np.float32), 4.0)
    args = _args(mics, out, "--exclude-masks", str(masks))
    assert CliRunner().invoke(app, args).exit_code == 0
    assert len(read_coords(out / "coordinates" / "mic_1_autopick.star")) > 0
    write_mrc(masks / "mic_1.mrc", np.ones((256, 256), np.float32), 4.0)  # exclude it all
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "1 redone: input changed since processed (mic_1.mrc)" in again.output
    assert len(read_coords(out / "coordinates" / "mic_1_autopick.star")) == 0


def test_a_failed_redo_keeps_the_earlier_picks_out_of_the_collective_files(tmp_path):
    """One rule for a redo that fails (io.resume.failed_redo), as denoise and prepare: the
    earlier STAR stays on disk, the collective files leave it out, failures.txt says so; a
    run with nothing left to list removes the earlier run's collective files."""
    mics, out = tmp_path / "mics", tmp_path / "out"
    _mic(mics / "mic_0.mrc", 0), _mic(mics / "mic_1.mrc", 1)
    args = _args(mics, out, "--format", "star,topaz")
    assert CliRunner().invoke(app, args).exit_code == 0
    write_mrc(mics / "mic_1.mrc", np.zeros((8, 8), np.float32), 4.0)  # under 16 px: refused
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1, again.output
    assert (out / "coordinates" / "mic_1_autopick.star").is_file()
    index = (out / "coordinate_files.star").read_text()
    assert "mic_0" in index and "mic_1" not in index
    assert "mic_1" not in (out / "picks_topaz.txt").read_text()
    line = (out / "failures.txt").read_text()
    assert "mic_1.mrc" in line and "its earlier output stays on disk, unlisted" in line
    (mics / "mic_0.mrc").unlink()
    write_mrc(mics / "mic_1.mrc", np.zeros((8, 8), np.float32), 4.0)
    alone = CliRunner().invoke(app, args)
    assert alone.exit_code != 0
    assert not (out / "coordinate_files.star").exists() and not (out / "picks_topaz.txt").exists()


def test_a_picker_trained_again_at_the_same_path_is_not_resumed_silently(
    tmp_path, make_blob_picker
):
    """The settings named the picker by its path only, so a picker trained again into the
    same file (after its folder was removed) kept every earlier pick. Now its size and time
    are recorded: a re-run with another version is refused, naming model_file."""
    import os

    (tmp_path / "picker").mkdir()
    picker = make_blob_picker(tmp_path / "picker")
    mics, out = tmp_path / "mics", tmp_path / "out"
    _mic(mics / "mic_0.mrc", 0)
    args = ["pick", "predict", str(mics), "-o", str(out), "--model", str(picker), "--tta", "1",
            "-q"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, args).exit_code == 0  # unchanged: resumed
    os.utime(picker, ns=(1, 1))
    again = CliRunner().invoke(app, args)
    assert "other settings (model_file 'picker.safetensors, " in str(again.exception)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_a_failed_recut_is_tried_again_and_a_first_failure_claims_no_earlier_output(tmp_path):
    """A --recut that failed (its candidates were not kept) left a record that matched: the
    next run with the new threshold resumed the picks cut at the old one and listed them. It
    now picks that micrograph again. And a micrograph failing on its first pick (its preview
    could not be written) is not said to keep an "earlier output" (review, session 25)."""
    mics, out = tmp_path / "mics", tmp_path / "out"
    _mic(mics / "mic_0.mrc", 0), _mic(mics / "mic_1.mrc", 1)
    assert CliRunner().invoke(app, _args(mics, out, "--threshold", "0.05")).exit_code == 0
    (out / "scores" / "mic_1.npy").unlink()  # as a folder from before candidates were kept
    recut = CliRunner().invoke(app, _args(mics, out, "--threshold", "0.12", "--recut"))
    assert recut.exit_code == 1 and "stays on disk, unlisted" in (out / "failures.txt").read_text()
    star = out / "coordinates" / "mic_1_autopick.star"
    before = star.stat().st_mtime_ns
    again = CliRunner().invoke(app, _args(mics, out, "--threshold", "0.12"))
    assert again.exit_code == 0, again.output
    assert star.stat().st_mtime_ns != before  # picked again at 0.12, not resumed
    assert (read_coords(star)["score"].astype(float) >= 0.12).all()
    first = tmp_path / "first"
    (first / "previews" / "mic_0.png").mkdir(parents=True)  # the preview cannot be written
    CliRunner().invoke(app, _args(mics, first, "--previews"))
    line = next(x for x in (first / "failures.txt").read_text().splitlines() if "mic_0" in x)
    assert "earlier output" not in line
