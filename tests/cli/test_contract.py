"""The command-line contract under failure (issue 16): the corpus of bad inputs and re-runs.

Every batch command ends by one rule (``draco_em.cli._app.exit_batch``): exit 0 when every
input succeeded, 1 when some failed (listed in ``failures.txt`` and counted on stderr), 2 when
the command could not run or every input failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer

from draco_em.cli._app import batch_exit_code, exit_batch
from draco_em.errors import DracoInputError
from draco_em.io.atomic import remove_stale_temps
from draco_em.io.batch import FailureLog, expand_inputs
from draco_em.io.coords import make_coords, read_coord_folder, write_relion_coords
from draco_em.io.mrc import read_image, read_micrograph, write_mrc
from draco_em.io.star import read_micrographs_star
from draco_em.model.weights import save_model
from tests.conftest import draco_in_process
from tests.infer.test_denoise import _tiny_model

_draco = draco_in_process  # tests/conftest.py


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    model, cfg = _tiny_model()
    save_model(tmp_path / "m.safetensors", model, cfg, {"pixel_size": 1.0})
    return tmp_path / "m.safetensors"


def _mics(folder: Path, n_good: int, n_bad: int, rng) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        write_mrc(folder / f"good_{i}.mrc", rng.normal(size=(64, 64)).astype(np.float32), 1.0)
    for i in range(n_bad):
        (folder / f"bad_{i}.mrc").write_bytes(b"\0" * 1500)
    return folder


def test_exit_code_rule() -> None:
    assert batch_exit_code(5, 0) == 0
    assert batch_exit_code(5, 2) == 1
    assert batch_exit_code(5, 5) == 2


@pytest.mark.parametrize(
    ("n_inputs", "n_failed", "said"),
    [(1, 1, "the only input failed"), (2, 2, "all 2 inputs failed"),
     (3, 1, "1 of 3 inputs failed")],
)  # fmt: skip
def test_failure_line_counts_in_english(capsys, tmp_path, n_inputs, n_failed, said) -> None:
    """One input that failed is not "all 1 inputs" (QA)."""
    with pytest.raises(typer.Exit):
        exit_batch(n_inputs, n_failed, tmp_path / "failures.txt")
    err = capsys.readouterr().err
    assert err.startswith(f"draco: error: {said}; listed in "), err


def test_failure_log_is_fresh_each_run_atomic_and_never_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.txt").symlink_to(target)
    log = FailureLog(out)
    assert not (out / "failures.txt").exists()  # the old list (here a link) is gone on start
    log.record(tmp_path / "a.mrc", "bad\nheader")
    log.record(tmp_path / "b.mrc", "truncated")
    assert target.read_text() == "keep me\n"  # the link's target is untouched
    path = out / "failures.txt"
    assert not path.is_symlink() and log.count == 2
    assert path.read_text().splitlines() == [f"{tmp_path / 'a.mrc'}\tbad header",
                                             f"{tmp_path / 'b.mrc'}\ttruncated"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["failures.txt"]  # no temp left
    FailureLog(out)  # a new run without failures leaves no list
    assert not path.exists()


def test_denoise_exit_codes_and_failures_reset(capsys, tmp_path, tiny_weights, rng) -> None:
    common = ["--model", tiny_weights, "--tile", "64", "--workers", "0", "--no-progress",
              "--pixel-size", "1.0"]  # fmt: skip  # said, so no placeholder warning below
    bad_only = _mics(tmp_path / "bad", 0, 2, rng)
    code, _, err = _draco(capsys, "denoise", bad_only, "-o", tmp_path / "o1", *common)
    assert code == 2 and "all 2 inputs failed" in err and "failures.txt" in err
    mixed = _mics(tmp_path / "mixed", 2, 1, rng)
    out = tmp_path / "o2"
    code, _, err = _draco(capsys, "denoise", mixed, "-o", out, *common)
    assert code == 1 and "1 of 3 inputs failed (the first: " in err
    assert f"; listed in {out / 'failures.txt'}" in err and err.count("\n") == 1
    assert "bad_0.mrc" in err  # the reason is on the summary line, not only in the list
    assert "bad_0.mrc" in (out / "failures.txt").read_text()
    (mixed / "bad_0.mrc").unlink()  # the user removes the broken input and re-runs
    code, _, err = _draco(capsys, "denoise", mixed, "-o", out, *common)
    assert code == 0 and err == "" and not (out / "failures.txt").exists()


def test_one_pixel_check_for_micrographs_not_masks(tmp_path: Path) -> None:
    flat = write_mrc(tmp_path / "flat.mrc", np.zeros((32, 32), np.float32), 1.0)
    row = write_mrc(tmp_path / "row.mrc", np.arange(64, dtype=np.float32)[None], 1.0)
    nan = np.ones((32, 32), np.float32)
    nan[0, 0] = np.nan
    nan_path = write_mrc(tmp_path / "nan.mrc", nan, 1.0)
    assert read_image(flat)[0].max() == 0  # a mask may be constant
    for path, message in ((flat, "zero variance"), (row, "too small"), (nan_path, "NaN/Inf")):
        with pytest.raises(DracoInputError, match=message):
            read_micrograph(path)


def test_prepare_rejects_a_nan_micrograph_alone(capsys, tmp_path, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    nan = rng.normal(size=(64, 64)).astype(np.float32)
    nan[1, 1] = np.nan
    write_mrc(mics / "nan.mrc", nan, 1.0)
    out = tmp_path / "out"
    code, _, err = _draco(capsys, "prepare", mics, "-o", out, "--target-pixel-size", "0", "-q")
    assert code == 1 and "1 of 2 inputs failed" in err
    assert "NaN/Inf" in (out / "failures.txt").read_text()
    names = read_micrographs_star(out / "triplets.star").micrographs["rlnMicrographName"]
    assert [Path(n).name for n in names] == ["good_0.mrc"]  # the NaN micrograph is not listed


def test_evaluate_denoise_rejects_a_nan_prediction(capsys, tmp_path, rng) -> None:
    pred, clean = tmp_path / "pred", tmp_path / "clean"
    for folder in (pred, clean):
        _mics(folder, 1, 0, rng)
    bad = rng.normal(size=(64, 64)).astype(np.float32)
    bad[2, 2] = np.nan
    write_mrc(pred / "good_0.mrc", bad, 1.0)
    code, _, err = _draco(capsys, "evaluate", "denoise", "--pred", pred, "--clean", clean)
    assert code == 2 and "NaN/Inf" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- bad output folders, sizes
def test_output_folder_rules_one_line_exit_2(capsys, tmp_path, tiny_weights, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    a_file = tmp_path / "note.txt"
    a_file.write_text("x")
    common = ["--model", tiny_weights, "--tile", "64", "--workers", "0", "--no-progress"]
    cases = [
        (["denoise", mics, "-o", a_file, *common], "existing file"),
        (["denoise", mics, "-o", mics, *common], "input folder"),
        (["denoise", mics / "good_0.mrc", "-o", mics, *common], "holds the input good_0.mrc"),
        (["denoise", mics, "-o", a_file / "sub", *common], "cannot write the output folder"),
        (["prepare", mics, "-o", mics, "-q"], "input folder"),
        (["prepare", mics / "good_0.mrc", "-o", mics, "-q"], "holds the input"),
        (["simulate", "-o", a_file, "--n-micrographs", "1"], "existing file"),
        (["curate", "predict", mics, "-o", a_file], "existing file"),
        (["pick", "predict", mics, "-o", mics / "good_0.mrc"], "existing file"),
    ]
    for argv, message in cases:
        code, _, err = _draco(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in mics.iterdir()) == ["good_0.mrc"]  # nothing written there


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(capsys, tmp_path, tiny_weights, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        code, _, err = _draco(capsys, "denoise", mics, "-o", out, "--model", tiny_weights)
    finally:
        out.chmod(0o700)
    assert code == 2 and "cannot write the output folder" in err


def test_absurd_sizes_refused_before_allocating(capsys, tmp_path, tiny_weights, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    common = ["--model", tiny_weights, "--workers", "0", "--no-progress"]
    for extra, message in (
        (["--tile", "100000"], "--tile"),
        (["--tile", "64", "--overlap", "40"], "--overlap 40 must be at most tile/2 = 32"),
    ):
        code, _, err = _draco(capsys, "denoise", mics, "-o", tmp_path / "o", *common, *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    for px in ("1e9", "1e-9"):
        out = tmp_path / f"px{px}"
        code, _, err = _draco(capsys, "denoise", mics, "-o", out, *common, "--pixel-size", px)
        assert code == 2 and "check --pixel-size" in (out / "failures.txt").read_text()
        assert not (out / "good_0.mrc").exists()


# ---------------------------------------------------------------- options no longer ignored
def test_missing_folders_and_zero_shape_are_refused(capsys, tmp_path, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    pred = _mics(tmp_path / "pred", 1, 0, rng)
    picks = tmp_path / "picks.txt"
    picks.write_text("image_name\tx_coord\ty_coord\ngood_0\t10\t12\n")
    missing = tmp_path / "missing"
    cases = [
        (["pick", "predict", mics, "-o", tmp_path / "p", "--exclude-masks", missing],
         "--exclude-masks: not a folder"),
        (["evaluate", "denoise", "--pred", pred, "--coords", missing],
         "no such coordinate file or folder"),
        (["convert", picks, "-o", tmp_path / "p.cs", "--to", "cs", "--micrograph-shape", "0x0"],
         "at least 1 px"),
    ]  # fmt: skip
    for argv, message in cases:
        code, _, err = _draco(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "p.cs").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("_rlnCoordinateX #1\n10\n20\n", "lack the columns ['y']"),
        ("_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 nan\n", "non-finite y"),
        ("_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 abc\n", "non-numeric"),
        ("_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 5\n20\n", "line 7 has 1 fields"),
    ],
)
def test_info_rejects_bad_coordinate_stars(capsys, tmp_path, text, message) -> None:
    path = tmp_path / "mic_autopick.star"
    path.write_text(f"data_\n\nloop_\n{text}")
    code, _, err = _draco(capsys, "info", path)
    assert code == 2 and message in err, err


# ---------------------------------------------------------------- re-runs with other settings
def test_denoise_rerun_with_other_settings_needs_overwrite(capsys, tmp_path, rng) -> None:
    weights = []
    for seed in (0, 1):
        model, cfg = _tiny_model(seed)
        weights.append(save_model(tmp_path / f"w{seed}.safetensors", model, cfg, {}))
    mics = _mics(tmp_path / "mics", 2, 0, rng)
    out = tmp_path / "out"
    common = ["denoise", mics, "-o", out, "--tile", "64", "--workers", "0", "--no-progress"]
    assert _draco(capsys, *common, "--model", weights[0])[0] == 0
    first = (out / "good_0.mrc").read_bytes()
    code, out_text, _ = _draco(capsys, *common, "--model", weights[0])  # equal: resumes
    assert code == 0 and "skipped 2 finished" in out_text
    code, _, err = _draco(capsys, *common, "--model", weights[1])
    assert code == 2 and "other settings" in err and "--overwrite" in err
    assert (out / "good_0.mrc").read_bytes() == first  # nothing redone
    code, out_text, _ = _draco(capsys, *common, "--model", weights[1], "--overwrite")
    assert code == 0 and "denoised 2" in out_text
    assert (out / "good_0.mrc").read_bytes() != first
    smaller = [("32" if a == "64" else a) for a in common]  # --tile 32
    code, _, err = _draco(capsys, *smaller, "--model", weights[1])
    assert code == 2 and "tile 64 → 32" in err  # the last settings are the recorded ones


def test_a_folder_a_failed_first_run_left_empty_takes_new_settings(capsys, tmp_path, rng) -> None:
    """A first run stopped by a bad option makes nothing: the corrected run needs no
    --overwrite (the helper's QA, session 20: '--shifts 3', then '--shifts 2', was refused)."""
    model, cfg = _tiny_model(0)
    weights = save_model(tmp_path / "w.safetensors", model, cfg, {})
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    out = tmp_path / "out"
    common = ["denoise", mics, "-o", out, "--tile", "64", "--workers", "0", "--no-progress"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert _draco(capsys, *common, "--model", bad)[0] == 2
    code, out_text, err = _draco(capsys, *common, "--model", weights)
    assert code == 0 and "denoised 1" in out_text, err


# ---------------------------------------------------------------- after a kill
def _stale(path: Path, age_s: float = 3600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half written")
    old = path.stat().st_mtime - age_s
    os.utime(path, (old, old))
    return path


def test_killed_runs_temps_are_ignored_and_cleaned(capsys, tmp_path, tiny_weights, rng) -> None:
    mics = _mics(tmp_path / "mics", 1, 0, rng)
    _stale(mics / ".good_1.abc123.tmp.mrc")  # a killed writer's temp among the inputs
    assert [it.path.name for it in expand_inputs([mics]).items] == ["good_0.mrc"]
    out = tmp_path / "out"
    old = _stale(out / ".good_0.x1.tmp.mrc")
    fresh = _stale(out / ".good_0.x2.tmp.mrc", age_s=0)  # maybe a live writer's: kept
    nested = _stale(out / "png" / ".good_0.x3.tmp.png")
    code, _, _ = _draco(capsys, "denoise", mics, "-o", out, "--model", tiny_weights,
                        "--tile", "64", "--workers", "0", "--no-progress")  # fmt: skip
    assert code == 0 and not old.exists() and not nested.exists() and fresh.exists()
    assert remove_stale_temps(out, min_age_s=-1) == 1 and not fresh.exists()


def test_evaluate_and_convert_skip_hidden_files(capsys, tmp_path) -> None:
    picks = tmp_path / "picks"
    write_relion_coords(picks / "mic_autopick.star", make_coords("mic", [10.0], [12.0]))
    _stale(picks / ".mic2_autopick.q.tmp.star")  # "not a STAR file" before issue 16
    assert set(read_coord_folder(picks)) == {"mic"}
    code, _, err = _draco(capsys, "convert", picks, "-o", tmp_path / "box", "--to", "box",
                          "--box-size", "8", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert [p.name for p in (tmp_path / "box").glob("*.box")] == ["mic.box"]


def test_failure_logs_of_torchrun_ranks_merge_into_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    logs = [FailureLog(out, rank=r) for r in range(3)]
    logs[2].record("c.mrc", "bad")
    logs[0].record("a.mrc", "bad")
    logs[1].record("b.mrc", "bad")
    assert logs[0].merge(3) == 3
    names = [line.split("\t")[0] for line in (out / "failures.txt").read_text().splitlines()]
    assert names == ["a.mrc", "b.mrc", "c.mrc"]
    assert sorted(p.name for p in out.iterdir()) == ["failures.txt"]  # rank lists removed


def test_torchrun_denoise_lists_every_ranks_failures(tmp_path, tiny_weights, rng) -> None:
    mics = _mics(tmp_path / "mics", 2, 2, rng)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29747", "-m", "draco_em",
           "denoise", str(mics), "-o", str(tmp_path / "out"), "--model", str(tiny_weights),
           "--tile", "64", "--workers", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, timeout=300, env=env, capture_output=True)  # exit 1: failures
    failures = (tmp_path / "out" / "failures.txt").read_text()
    assert "bad_0.mrc" in failures and "bad_1.mrc" in failures  # one from each rank
    hidden = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("."))
    assert hidden == [".draco_inputs", ".draco_settings.json"]  # no rank's temp left


@pytest.mark.slow
@pytest.mark.dist
def test_torchrun_denoise_reports_the_jobs_counts_once(tmp_path, tiny_weights, rng) -> None:
    """Rank 0 says and exits by every rank's inputs, the others say nothing (as prepare,
    tests/prepare/test_prepare_cli.py). It said its own share, and its exit code followed it:
    "all 1 inputs failed", exit 2, where rank 1 had denoised the other input (QA)."""
    mics = _mics(tmp_path / "mics", 1, 1, rng)  # bad_0 on rank 0, good_0 on rank 1
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29749", "-m", "draco_em",
           "denoise", str(mics), "-o", str(tmp_path / "out"), "--model", str(tiny_weights),
           "--tile", "64", "--workers", "0", "--no-progress", "--device", "cpu",
           "--pixel-size", "1.0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"denoised 1, skipped 0 finished, failed 1 → {tmp_path / 'out'}"
    ]
    assert done.stderr.count("1 of 2 inputs failed") == 1, done.stderr
    _mics(tmp_path / "more", 2, 0, rng)  # good_0, good_1 as good_1, good_2: one on each rank
    for i in range(2):
        (tmp_path / "more" / f"good_{i}.mrc").rename(mics / f"good_{i + 1}.mrc")
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"denoised 2, skipped 1 finished, failed 1 → {tmp_path / 'out'}"
    ]
    assert done.stderr.count("1 of 4 inputs failed") == 1, done.stderr
    # a failed redo on rank 1 (good_0 rewritten too small): rank 0's failures.txt and STAR
    # take rank 1's word for it (io.resume.failed_redo; QA, session 25)
    write_mrc(mics / "good_0.mrc", rng.normal(size=(8, 8)).astype(np.float32), 1.0)
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("2 of 4 inputs failed") == 1, done.stderr
    lines = (tmp_path / "out" / "failures.txt").read_text().splitlines()
    assert [Path(line.split("\t")[0]).name for line in lines] == ["bad_0.mrc", "good_0.mrc"]
    assert "its earlier output stays on disk, unlisted" in lines[1]
    assert (tmp_path / "out" / "good_0.mrc").is_file()
    listed = read_micrographs_star(tmp_path / "out" / "denoised_micrographs.star").micrographs
    assert sorted(Path(n).name for n in listed["rlnMicrographName"]) == ["good_1.mrc", "good_2.mrc"]


#: Run by torchrun in place of ``-m draco_em``: a pretrain run rewrites the model file right
#: after rank 0 has looked at its version, and before rank 1 does.
_REWRITTEN_BETWEEN_RANKS = """
import os, sys, time
from pathlib import Path

import draco_em.infer.run_denoise as run_denoise
from draco_em.cli import main

real, marker = run_denoise.model_stamp, Path(sys.argv.pop(1))


def stamp(path):
    if os.environ["RANK"] != "0":
        while not marker.exists():
            time.sleep(0.05)
    version = real(path)
    if not marker.exists():
        os.utime(path, ns=(1, 1))
        marker.touch()
    return version


run_denoise.model_stamp = stamp
main()
"""


@pytest.mark.slow
@pytest.mark.dist
def test_torchrun_ranks_denoise_with_the_model_version_recorded(tmp_path, tiny_weights, rng):
    """Every rank looked at the model file's version itself (io.model_file.model_stamp) and
    judged the folder's settings by it: a file rewritten between rank 0's look and rank 1's
    was recorded as one version and denoised with another (QA, session 25). Rank 0 now judges
    for all, and every rank looks again once it has loaded the file: the job stops."""
    mics = _mics(tmp_path / "mics", 2, 0, rng)  # one input on each rank
    script = tmp_path / "rewritten_between_ranks.py"
    script.write_text(_REWRITTEN_BETWEEN_RANKS)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29753", str(script),
           str(tmp_path / "rewritten"), "denoise", str(mics), "-o", str(tmp_path / "out"),
           "--model", str(tiny_weights), "--tile", "64", "--workers", "0", "--no-progress",
           "--device", "cpu", "--pixel-size", "1.0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, timeout=300, env=env, capture_output=True, text=True)
    assert done.returncode != 0, done.stderr
    assert "rewritten while this run read it" in done.stderr, done.stderr
    assert not list((tmp_path / "out").glob("*.mrc"))  # nothing denoised with either


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            out.append(int(status.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigkilled_denoise_takes_its_reader_worker_along(tmp_path, tiny_weights, rng) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(40):
        write_mrc(mics / f"m{i:02d}.mrc", rng.normal(size=(256, 256)).astype(np.float32), 1.0)
    cmd = [sys.executable, "-m", "draco_em", "denoise", str(mics), "-o", str(tmp_path / "out"),
           "--model", str(tiny_weights), "--tile", "64", "--workers", "1", "--no-progress",
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 120
        while not workers and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _children(proc.pid)
        assert workers, "the reader worker never started"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 1.5  # at once: torch's own watchdog polls every 5 s
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}/status").exists()
             and "State:\tZ" not in Path(f"/proc/{w}/status").read_text()]  # fmt: skip
    assert not alive


@pytest.mark.parametrize(
    "command",
    [
        ("denoise",),
        ("convert",),
        ("pretrain",),
        ("simulate",),
        ("prepare",),
        ("pick", "predict"),
        ("pick", "calibrate"),
        ("curate", "train"),
        ("curate", "predict"),
        ("evaluate", "realism"),
    ],
)
def test_quiet_is_spelled_one_way(capsys, command: tuple[str, ...]) -> None:
    """Every command with a progress bar hides it with -q/--quiet (issue 16: one spelling)."""
    code, out, _ = _draco(capsys, *command, "--help")
    assert code == 0
    assert "--quiet" in out and "-q" in out
