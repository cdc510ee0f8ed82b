"""``draco prepare`` resumes by its inputs: an item whose movie, micrographs or gain changed
since its triplet was made is prepared again (prepare/run.py, io.resume.inputs_changed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from draco_em.io.mrc import write_mrc
from draco_em.prepare.config import PrepareConfig
from draco_em.prepare.run import run_prepare
from tests.conftest import spy_on_writes
from tests.prepare.prepare_movies import make_movie


def _prepare(inputs: list, outdir: Path, **options):
    cfg = PrepareConfig(inputs=[str(i) for i in inputs], outdir=outdir, target_pixel_size=0,
                        **options)  # fmt: skip
    return run_prepare(cfg, progress=False)


def _mic(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_mrc(path, rng.poisson(5, (64, 64)).astype(np.float32), 2.0)


def test_a_rewritten_micrograph_is_prepared_again_and_the_other_resumed(tmp_path, monkeypatch):
    """A re-run skipped every item with a meta record, so a micrograph rewritten upstream kept
    its stale triplet. Now it is made again, over the old one (there until then)."""
    import draco_em.prepare.triplets as triplets

    folder, out = tmp_path / "mc", tmp_path / "out"
    _mic(folder / "a.mrc", 0), _mic(folder / "b.mrc", 1)
    assert _prepare([folder], out).made == 2
    old, kept = (out / "a.mrc").read_bytes(), (out / "b.mrc").stat().st_mtime_ns
    _mic(folder / "a.mrc", 2)
    there = spy_on_writes(monkeypatch, triplets, "write_mrc")  # did each output exist?
    again = _prepare([folder], out)
    assert (again.made, again.skipped, again.failed) == (1, 1, 0)
    assert "1 redone: input changed since processed (a)" in again.warnings
    assert there == [True] and (out / "a.mrc").read_bytes() != old
    assert (out / "b.mrc").stat().st_mtime_ns == kept
    untouched = _prepare([folder], out)
    assert (untouched.made, untouched.skipped) == (0, 2) and not untouched.warnings
    # A folder made before input records were kept resumes as before.
    from draco_em.io.resume import INPUTS_FOLDER

    for record in (out / INPUTS_FOLDER).iterdir():
        record.unlink()
    _mic(folder / "b.mrc", 3)
    assert (_prepare([folder], out).made, (out / "b.mrc").stat().st_mtime_ns) == (0, kept)


def test_a_movie_is_prepared_again_when_its_gain_is_rewritten(tmp_path):
    movie = make_movie(n=64, frames=4, seed=8)
    write_mrc(tmp_path / "m.mrcs", movie.counts.astype(np.float32), 1.0)
    gain = write_mrc(tmp_path / "gain.mrc", np.ones((64, 64), np.float32), 1.0)
    assert _prepare([tmp_path / "m.mrcs"], tmp_path / "out", gain=gain).made == 1
    assert _prepare([tmp_path / "m.mrcs"], tmp_path / "out", gain=gain).skipped == 1
    write_mrc(gain, np.full((64, 64), 2.0, np.float32), 1.0)  # copied again, corrected
    again = _prepare([tmp_path / "m.mrcs"], tmp_path / "out", gain=gain)
    assert (again.made, again.skipped) == (1, 0)
    assert "1 redone: input changed since processed (m)" in again.warnings


def test_a_failed_redo_keeps_the_earlier_triplet_out_of_the_manifest(tmp_path):
    """One rule for a redo that fails (io.resume.failed_redo): the earlier triplet stays on
    disk, out of triplets.star (it listed it before), and failures.txt says so; the next run
    tries again."""
    from draco_em.io.star import read_star

    folder, out = tmp_path / "mc", tmp_path / "out"
    _mic(folder / "a.mrc", 0), _mic(folder / "b.mrc", 1)
    assert _prepare([folder], out).made == 2
    old = (out / "a.mrc").read_bytes()
    write_mrc(folder / "a.mrc", np.full((64, 64), 3.0, np.float32), 2.0)  # constant: refused
    again = _prepare([folder], out)
    assert (again.made, again.skipped, again.failed) == (0, 1, 1)
    assert (out / "a.mrc").read_bytes() == old
    names = read_star(out / "triplets.star")["micrographs"]["rlnMicrographName"]
    assert [Path(n).name for n in names] == ["b.mrc"]
    line = (out / "failures.txt").read_text()
    assert "a.mrc" in line and "its earlier output stays on disk, unlisted" in line
    assert _prepare([folder], out).failed == 1  # still changed: tried again
    _mic(folder / "a.mrc", 5)
    fixed = _prepare([folder], out)
    assert (fixed.made, fixed.failed) == (1, 0)
    names = read_star(out / "triplets.star")["micrographs"]["rlnMicrographName"]
    assert sorted(Path(n).name for n in names) == ["a.mrc", "b.mrc"]


def test_a_half_without_the_other_fails_alone_and_is_prepared_once_it_is_there(tmp_path):
    """A lone X_EVN (its X_ODD still being copied) refused the whole batch ("found the even
    half but not the other one"): in a watch, a run of every ready file failed. It is now one
    failed input; the next run prepares it once the other half is there (QA, session 25)."""
    folder, out = tmp_path / "mc", tmp_path / "out"
    _mic(folder / "a.mrc", 0), _mic(folder / "b_EVN.mrc", 1)
    first = _prepare([folder], out)
    assert (first.made, first.failed) == (1, 1)
    line = (out / "failures.txt").read_text()
    assert "b_EVN.mrc" in line and "found the even half but not the other one" in line
    _mic(folder / "b_ODD.mrc", 2)
    again = _prepare([folder], out)
    assert (again.made, again.skipped, again.failed) == (1, 1, 0)
    assert (out / "b_EVN.mrc").is_file() and (out / "b_ODD.mrc").is_file()
