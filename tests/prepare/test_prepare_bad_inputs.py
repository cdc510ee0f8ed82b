"""``draco prepare`` on bad inputs: refused in one line, or a per-file failure naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from draco_em.cli import main
from draco_em.io.mrc import write_mrc
from draco_em.prepare.config import PrepareConfig
from draco_em.prepare.run import run_prepare
from tests.prepare.prepare_movies import make_movie

_OPTICS = "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnMicrographOriginalPixelSize #2\n1 1.0\n\n"


def _prepare(inputs: list, outdir: Path, **options) -> object:
    options.setdefault("target_pixel_size", 0)
    cfg = PrepareConfig(inputs=[str(i) for i in inputs], outdir=outdir, **options)
    return run_prepare(cfg, progress=False)


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(["prepare", *args, "-q"])
    return int(done.value.code or 0)


@pytest.mark.parametrize("column", ["rlnMicrographName", "rlnMicrographMovieName"])
def test_an_empty_name_in_a_star_is_refused_in_one_line(
    tmp_path: Path, capsys, monkeypatch, column: str
) -> None:
    """An empty rlnMicrographName crashed prepare (ValueError: PosixPath('.') has an empty
    name); an empty rlnMicrographMovieName became the failure ". is a folder"."""
    monkeypatch.chdir(tmp_path)  # the STAR named relatively, as in a RELION project
    movie = make_movie(n=32, frames=2).counts.astype(np.float32)
    write_mrc("a.mrcs", movie, 1.0)
    write_mrc("a.mrc", movie.sum(0), 1.0)
    first = "a.mrcs" if column == "rlnMicrographMovieName" else "a.mrc"
    Path("in.star").write_text(_OPTICS + f'data_micrographs\nloop_\n_{column} #1\n{first}\n""\n')
    assert _cli(["in.star", "-o", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"in.star: row 2 of data_micrographs has an empty {column}" in err


def _movie(path: Path, ny: int, nx: int, seed: int = 0) -> Path:
    counts = make_movie(n=max(ny, nx), frames=4, seed=seed).counts[:, :ny, :nx]
    return write_mrc(path, counts.astype(np.float32), 1.0)


def test_frames_too_small_to_align_are_a_failure_naming_the_file(tmp_path: Path) -> None:
    """8x8 frames, and 30x500 frames cropped to 2 Å (15 px high), raised a RuntimeError from
    the alignment ("The size of tensor a (3) must match ..."), recorded without the file."""
    _movie(tmp_path / "in" / "good.mrcs", 64, 64)
    _movie(tmp_path / "in" / "tiny.mrcs", 8, 8)
    _movie(tmp_path / "in" / "thin.mrcs", 30, 500)
    summary = _prepare([tmp_path / "in"], tmp_path / "out", target_pixel_size=2.0)
    assert (summary.made, summary.failed) == (1, 2)
    lines = (tmp_path / "out" / "failures.txt").read_text().splitlines()
    reasons = {Path(line.split("\t")[0]).name: line.split("\t")[1] for line in lines}
    assert reasons["tiny.mrcs"].endswith(
        "tiny.mrcs: frames of 8x8 px are too small to align and prepare (each side needs "
        "at least 16 px)"
    )
    assert "thin.mrcs: frames of 250x15 px at the target pixel size 2 Å" in reasons["thin.mrcs"]


def test_an_unexpected_error_is_recorded_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    """Our own bugs are per-file failures too; the summary quotes the reason alone."""

    def broken(*args, **kwargs):
        raise RuntimeError("The size of tensor a (3) must match the size of tensor b (9)")

    monkeypatch.setattr("draco_em.prepare.motion.estimate_global_shifts", broken)
    movie = _movie(tmp_path / "m.mrcs", 32, 32)
    assert _prepare([movie], tmp_path / "out").failed == 1
    line = (tmp_path / "out" / "failures.txt").read_text()
    assert (
        line == f"{movie}\t{movie}: RuntimeError: The size of tensor a (3) must match the "
        "size of tensor b (9)\n"
    )


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_a_constant_movie_is_a_failure_not_a_triplet(tmp_path: Path, value: float) -> None:
    """An all-zero movie was "prepared": constant sums on disk and dracoStd 1 in triplets.star
    (the std was 0); denoise refused the triplet later."""
    write_mrc(tmp_path / "flat.mrcs", np.full((4, 32, 32), value, np.float32), 1.0)
    summary = _prepare([tmp_path / "flat.mrcs"], tmp_path / "out")
    assert (summary.made, summary.failed) == (0, 1) and summary.manifest is None
    assert (
        (tmp_path / "out" / "failures.txt")
        .read_text()
        .startswith(
            f"{tmp_path / 'flat.mrcs'}\t{tmp_path / 'flat.mrcs'}: the full sum has zero variance"
        )
    )
    assert not list((tmp_path / "out").glob("flat*.mrc"))


def test_a_folder_of_eer_triplets_multiplied_by_their_gain_is_not_resumed(tmp_path: Path) -> None:
    """EER gains other than EPU's .gain are now divided, as RELION reads them (session 24).
    A folder prepared before multiplied them and resumed under the same settings, so the old
    and new triplets mixed silently; now such a folder is refused, and a new one resumes."""
    import json

    from draco_em.errors import DracoInputError
    from draco_em.io.movie_writers import split_counts, write_eer

    counts = make_movie(n=64, frames=4, seed=5).counts
    n_sub = int(counts.max())
    for name in ("a", "b"):
        write_eer(tmp_path / "eer" / f"{name}.eer", split_counts(counts, n_sub), pixel_size=1.0)
    write_mrc(tmp_path / "gain.mrc", np.ones(counts.shape[1:], np.float32), 1.0)
    out, options = tmp_path / "out", {"gain": tmp_path / "gain.mrc", "eer_grouping": n_sub}
    assert _prepare([tmp_path / "eer" / "a.eer"], out, **options).made == 1
    assert "the gain reference divides" in " ".join(
        json.loads((out / "meta" / "a.json").read_text())["notes"]
    )
    assert _prepare([tmp_path / "eer"], out, **options).made == 1  # b: a new folder resumes
    recorded = json.loads((out / "prepare_config.json").read_text())
    del recorded["eer_gain_rule"]  # as a folder of an earlier release has it
    (out / "prepare_config.json").write_text(json.dumps(recorded))
    with pytest.raises(DracoInputError, match="made from EER movies before draco divided"):
        _prepare([tmp_path / "eer"], out, **options)
    # an earlier release's folder of MRC movies resumes as before: the rule does not touch it
    write_mrc(tmp_path / "mrc" / "c.mrcs", counts.astype(np.float32), 1.0)
    old = tmp_path / "old_mrc"
    assert _prepare([tmp_path / "mrc"], old, gain=tmp_path / "gain.mrc").made == 1
    (old / "prepare_config.json").write_text(json.dumps(
        {k: v for k, v in json.loads((old / "prepare_config.json").read_text()).items()
         if k != "eer_gain_rule"}))  # fmt: skip
    assert _prepare([tmp_path / "mrc"], old, gain=tmp_path / "gain.mrc").skipped == 1
