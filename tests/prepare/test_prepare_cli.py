"""``draco prepare`` from the command line, with workers, and on ``draco simulate`` movies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.cli import main
from draco_em.io.motion import read_motion_csv
from draco_em.io.mrc import read_image, read_mrc, write_mrc
from draco_em.io.star import read_micrographs_star
from draco_em.prepare.motion import apply_global_shifts
from tests.prepare.prepare_movies import corr, make_movie


def test_cli_prepares_and_resumes(tmp_path: Path, capsys) -> None:
    movie = make_movie(n=128, frames=6, seed=11)
    write_mrc(tmp_path / "movies" / "c1.mrcs", movie.counts.astype(np.float32), 1.0)
    args = ["prepare", str(tmp_path / "movies"), "-o", str(tmp_path / "out"), "-q",
            "--target-pixel-size", "0", "--dose-per-frame", "1.2"]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    assert "1 prepared, 0 already there, 0 failed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(args)
    assert "0 prepared, 1 already there" in capsys.readouterr().out


def test_cli_user_errors_exit_2(tmp_path: Path, capsys) -> None:
    for args in (
        ["prepare", str(tmp_path / "missing"), "-o", str(tmp_path / "out")],
        ["prepare", str(tmp_path), "-o", str(tmp_path / "out"), "--patches", "5by5"],
        ["prepare", str(tmp_path), "-o", str(tmp_path / "out"), "--dose-weighting"],
    ):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 2
        assert "draco: error:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.dist
def test_two_worker_processes(tmp_path: Path) -> None:
    for seed in range(3):
        movie = make_movie(n=128, frames=6, seed=20 + seed)
        write_mrc(tmp_path / "in" / f"w{seed}.mrcs", movie.counts.astype(np.float32), 1.0)
    with pytest.raises(SystemExit):
        main(["prepare", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-j", "2", "-q",
              "--target-pixel-size", "0", "--device", "cpu"])  # fmt: skip
    table = read_micrographs_star(tmp_path / "out" / "triplets.star")
    # the project path rule (docs/conventions.md): outside the working directory, absolute
    names = sorted(Path(n) for n in table.micrographs["rlnMicrographName"])
    assert names == [tmp_path / "out" / f"w{i}.mrc" for i in range(3)]


@pytest.mark.slow
def test_simulated_movies_with_gain(tmp_path: Path) -> None:
    """The issue's acceptance check on ``draco simulate`` movies with known drift and gain."""
    sim = tmp_path / "sim"
    with pytest.raises(SystemExit):
        main(["simulate", "-o", str(sim), "--preset", "classic", "--n-micrographs", "2",
              "--size", "384", "--frames", "12",
              "--particles-per-micrograph", "30", "--gain", "-q"])  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["prepare", str(sim / "movies"), "-o", str(out), "--gain", str(sim / "gain.mrc"),
              "--target-pixel-size", "0", "-q"])  # fmt: skip
    table = read_micrographs_star(out / "triplets.star")
    assert len(table.micrographs) == 2
    for name in table.micrographs["rlnMicrographName"]:
        stem = Path(name).stem
        truth = read_motion_csv(sim / "motion" / f"{stem}.csv")
        est = read_motion_csv(out / "motion" / f"{stem}.csv")
        assert np.sqrt(((est - truth) ** 2).sum(1).mean()) < 0.5
        clean, _ = read_image(sim / "clean" / f"{stem}.mrc")
        full, _ = read_image(out / name)
        gain = read_mrc(sim / "gain.mrc").data
        frames = torch.from_numpy(np.asarray(read_mrc(sim / "movies" / f"{stem}.mrcs").data,
                                             np.float32) * gain)  # fmt: skip
        perfect = apply_global_shifts(frames, truth).sum(0).numpy()
        inner = np.s_[16:-16, 16:-16]
        assert corr(full[inner], clean[inner]) >= 0.95 * corr(perfect[inner], clean[inner])


@pytest.mark.slow
@pytest.mark.dist
def test_torchrun_two_ranks_share_the_movies(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    for seed in range(3):
        movie = make_movie(n=96, frames=4, seed=30 + seed)
        write_mrc(tmp_path / "in" / f"r{seed}.mrcs", movie.counts.astype(np.float32), 1.0)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29731", "-m", "draco_em",
           "prepare", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q",
           "--target-pixel-size", "0", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the job's counts, not rank 0's share (it said "2 prepared" of 3; QA, session 24)
    assert "3 prepared, 0 already there, 0 failed" in done.stdout
    table = read_micrographs_star(tmp_path / "out" / "triplets.star")
    # the project path rule (docs/conventions.md): outside the working directory, absolute
    names = sorted(Path(n) for n in table.micrographs["rlnMicrographName"])
    assert names == [tmp_path / "out" / f"r{i}.mrc" for i in range(3)]
    assert not (tmp_path / "out" / "failures.txt").exists()
    # a broken movie on rank 1's share: one failure, said once, by rank 0, for the job
    (tmp_path / "in" / "r3.mrcs").write_bytes(b"not an MRC file" * 100)
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "0 prepared, 3 already there, 1 failed" in done.stdout
    assert done.stderr.count("1 of 4 inputs failed") == 1, done.stderr
    # a failed redo on rank 1 (r1 rewritten broken): the merged failures.txt says its triplet
    # stays, unlisted, and rank 0's manifest leaves it out (io.resume.failed_redo; session 25)
    (tmp_path / "in" / "r1.mrcs").write_bytes(b"not an MRC file" * 100)
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "0 prepared, 2 already there, 2 failed" in done.stdout
    failures = (tmp_path / "out" / "failures.txt").read_text()
    assert [line.split("\t")[0] for line in failures.splitlines()] == [
        str(tmp_path / "in" / "r1.mrcs"), str(tmp_path / "in" / "r3.mrcs")]  # fmt: skip
    assert failures.count("its earlier output stays on disk, unlisted") == 1
    assert (tmp_path / "out" / "r1.mrc").is_file()
    table = read_micrographs_star(tmp_path / "out" / "triplets.star")
    names = sorted(Path(n).name for n in table.micrographs["rlnMicrographName"])
    assert names == ["r0.mrc", "r2.mrc"]
