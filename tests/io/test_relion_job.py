"""``draco relion``: a draco command run as an External job of a RELION 4/5 project."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.io.mrc import write_mrc
from draco_em.io.relion_job import (
    ABORT_NOW,
    ABORTED,
    COORDINATES,
    FAILURE,
    MICROGRAPHS,
    OUTPUT_NODES,
    SUCCESS,
    flag_values,
    run_external_job,
    write_output_nodes,
)
from draco_em.io.star import read_star, write_star
from tests.conftest import draco_in_process


def test_flag_values_read_relions_yes_no_values() -> None:
    flags = {"--blend-halves": "--no-blend-halves", "-q": None}
    args = ["--blend-halves", "true", "--diameter", "150", "-q", "no", "--tile", "256"]
    assert flag_values(args, flags) == ["--blend-halves", "--diameter", "150", "--tile", "256"]
    assert flag_values(["--blend-halves", "No"], flags) == ["--no-blend-halves"]
    assert flag_values(["--blend-halves"], flags) == ["--blend-halves"]  # last, no value
    # a value that is no yes/no word is the next argument, not the flag's
    assert flag_values(["--blend-halves", "--png"], flags) == ["--blend-halves", "--png"]
    # RELION spells its own options with underscores; users write Params labels so too
    assert flag_values(["--blend_halves", "yes", "--expected_particles", "5"], flags) == [
        "--blend-halves", "--expected-particles", "5"]  # fmt: skip


def test_output_nodes_are_the_star_relion_reads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = Path("External/job004")
    job.mkdir(parents=True)
    write_output_nodes(job, [(job / "coordinate_files.star", COORDINATES)])
    nodes = read_star(job / OUTPUT_NODES)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == ["External/job004/coordinate_files.star"]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist() == [COORDINATES]
    assert (job / OUTPUT_NODES).read_text().startswith("\n# version 30001")


def _coords(tmp_path: Path) -> Path:
    path = tmp_path / "mic_autopick.star"
    write_star(path, {"": pd.DataFrame({"rlnCoordinateX": [10.0], "rlnCoordinateY": [20.0]})})
    return path


def test_success_writes_nodes_and_the_exit_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = Path("External/job005/")
    out = job / "picks.txt"
    argv = ["convert", str(_coords(tmp_path)), "-o", str(out), "--to", "topaz"]
    code = run_external_job(argv, job, [(out, MICROGRAPHS)], poll_s=0.1)
    assert code == 0 and (job / SUCCESS).is_file() and not (job / FAILURE).exists()
    assert read_star(job / OUTPUT_NODES)["output_nodes"]["rlnPipeLineNodeName"].tolist() == [
        "External/job005/picks.txt"
    ]
    # RELION's "Continue" runs the job again: the old exit file goes first
    code = run_external_job(["info", "missing.mrc"], job, [], poll_s=0.1)
    assert code == 2 and (job / FAILURE).is_file() and not (job / SUCCESS).exists()


@pytest.mark.parametrize("launched_in_background", [False, True])
def test_abort_button_stops_the_command(
    tmp_path: Path, monkeypatch, launched_in_background: bool
) -> None:
    """RELION's Abort writes RELION_JOB_ABORT_NOW: the command stops as on Ctrl-C.

    A job a shell starts with ``&`` (how RELION's GUI launches jobs) inherits SIGINT ignored,
    and a Python started so never raises KeyboardInterrupt: the command must get SIGINT's
    default back, or Abort would let it run to the end (session 21's find)."""
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGINT)
    if launched_in_background:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` gives the job
    job = tmp_path / "External" / "job006"
    sim = job / "sim"
    argv = ["simulate", "-o", str(sim), "--n-micrographs", "500", "--size", "256",
            "--pixel-size", "4", "--no-movies", "--preset", "classic"]  # fmt: skip

    def press_abort() -> None:
        deadline = time.monotonic() + 120
        while not (sim / "micrographs").is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)  # until the command is past its imports
        (job / ABORT_NOW).write_text("")

    threading.Thread(target=press_abort, daemon=True).start()
    start = time.monotonic()
    try:
        code = run_external_job(argv, job, [], poll_s=0.1)
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130 and (job / ABORTED).is_file()
    assert not (job / ABORT_NOW).exists() and not (job / SUCCESS).exists()
    assert time.monotonic() - start < 120
    assert len(list((sim / "micrographs").glob("*.mrc"))) < 500


def test_cli_denoises_a_relion_micrographs_star(tmp_path: Path, capsys, monkeypatch) -> None:
    """From the project folder, as RELION runs it: project-relative names in and out."""
    monkeypatch.chdir(tmp_path)
    mics = Path("MotionCorr/job002/Movies")
    mics.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(2):
        write_mrc(mics / f"m{i}.mrc", rng.poisson(5.0, (96, 96)).astype(np.float32), 2.0)
        names.append(str(mics / f"m{i}.mrc"))
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [2.0], "rlnVoltage": [300.0]})  # fmt: skip
    frame = pd.DataFrame({"rlnMicrographName": names, "rlnOpticsGroup": [1, 1]})
    write_star("MotionCorr/job002/corrected_micrographs.star", {"optics": optics,
               "micrographs": frame})  # fmt: skip
    code, _, err = draco_in_process(
        capsys, "relion", "denoise", "--o", "External/job007/", "--in_mics",
        "MotionCorr/job002/corrected_micrographs.star", "--j", "1",
        "--pipeline_control", "External/job007/", "--png", "false", "-q", "true",
    )  # fmt: skip
    job = Path("External/job007")
    assert code == 0, err
    assert (job / SUCCESS).is_file() and not (job / "png").exists()
    nodes = read_star(job / OUTPUT_NODES)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == ["External/job007/denoised_micrographs.star"]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist() == [MICROGRAPHS]
    out = read_star(job / "denoised_micrographs.star")
    assert out["micrographs"]["rlnMicrographName"].tolist() == [
        "External/job007/m0.mrc", "External/job007/m1.mrc"
    ]  # fmt: skip
    assert "optics" in out


def test_cli_errors_end_the_job_as_failed(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["frob", "--o", "J1/", "--in_mics", "x.star"], ["pick", "--o", "J2/"]):
        code, _, err = draco_in_process(capsys, "relion", *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert Path(argv[2], FAILURE).is_file()


def test_pick_train_reads_the_manual_picks(tmp_path: Path, capsys, monkeypatch) -> None:
    """pick-train: --in_mics and --in_coords become pick train's options, the bundled picker
    is the start unless a Params row says otherwise, and no RELION node is expected."""
    import draco_em.io.relion_job as relion_job

    calls = []
    monkeypatch.setattr(
        relion_job,
        "run_external_job",
        lambda argv, job, nodes, **_: calls.append((argv, nodes)) or 0,
    )
    monkeypatch.chdir(tmp_path)
    base = ["relion", "pick-train", "--o", "External/job013/", "--in_mics", "mics.star"]
    code, _, err = draco_in_process(capsys, *base, "--in_coords", "ManualPick/job5/manualpick.star",
                                    "--diameter", "150")  # fmt: skip
    assert code == 0, err
    argv, nodes = calls[0]
    assert argv == ["pick", "train", "--micrographs", "mics.star", "--coords",
                    "ManualPick/job5/manualpick.star", "-o", "External/job013", "--diameter",
                    "150", "--weights", "bundled"] and nodes == []  # fmt: skip
    code, _, err = draco_in_process(capsys, *base, "--in_coords", "c.star", "--weights", "run/")
    assert code == 0 and calls[1][0][-2:] == ["--weights", "run/"]  # the user's start wins
    code, _, err = draco_in_process(capsys, *base)  # no picks given
    assert code == 2 and "--in_coords" in err and Path("External/job013", FAILURE).is_file()


def test_pick_train_continues_from_its_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:
    """RELION's "Continue" re-runs the job in its folder. An interrupted pick-train left its
    checkpoint there, and pick train without --resume stopped at it ("add --resume latest"):
    Continue failed. The job now goes on from it. Without a checkpoint it trains from the
    start; a resume Params row of the user's is left as given."""
    import draco_em.io.relion_job as relion_job
    from draco_em.io.run_folder import checkpoint_path

    calls: list[list[str]] = []
    monkeypatch.setattr(
        relion_job, "run_external_job", lambda argv, job, nodes, **_: calls.append(argv) or 0
    )
    monkeypatch.chdir(tmp_path)
    job = Path("External/job013")
    base = ["relion", "pick-train", "--o", f"{job}/", "--in_mics", "mics.star", "--in_coords",
            "ManualPick/job5/manualpick.star", "--diameter", "150"]  # fmt: skip
    assert draco_in_process(capsys, *base)[0] == 0
    assert "--resume" not in calls[-1]  # a first run
    checkpoint_path(job, "latest").parent.mkdir(parents=True)
    checkpoint_path(job, "latest").write_bytes(b"an interrupted run's checkpoint")
    assert draco_in_process(capsys, *base)[0] == 0
    assert calls[-1][-2:] == ["--resume", "latest"]
    assert draco_in_process(capsys, *base, "--resume", "latest")[0] == 0
    assert calls[-1].count("--resume") == 1
    pick = ["relion", "pick", "--o", f"{job}/", "--in_mics", "mics.star", "--diameter", "150"]
    assert draco_in_process(capsys, *pick)[0] == 0
    assert "--resume" not in calls[-1]  # pick predict resumes by itself


def test_a_crash_on_continue_is_a_failure_not_a_success(tmp_path: Path, monkeypatch) -> None:
    """Exit 1 is "some inputs failed" only with this run's failures.txt: a command that dies
    on an uncaught error exits 1 too, and an earlier run's node file must not make RELION's
    "Continue" of it a success (it was, before session 28)."""
    monkeypatch.chdir(tmp_path)
    job = Path("External/job020")
    job.mkdir(parents=True)
    node = job / "coordinate_files.star"
    node.write_text("data_coordinate_files\n")  # the first run's output
    (job / "failures.txt").write_text("old\tfrom the first run\n")
    old = time.time() - 60
    os.utime(job / "failures.txt", (old, old))
    fake = tmp_path / "python"  # stands in for the interpreter: the command's exit only
    monkeypatch.setattr(sys, "executable", str(fake))
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last): boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    code = run_external_job(["pick", "predict"], job, [(node, COORDINATES)], poll_s=0.1)
    assert code == 1 and (job / FAILURE).is_file() and not (job / SUCCESS).exists()
    # some inputs failed (this run's failures.txt): still a success, as before
    fake.write_text(f"#!/bin/sh\nprintf 'a.mrc\\tbad\\n' > {job}/failures.txt\nexit 1\n")
    code = run_external_job(["pick", "predict"], job, [(node, COORDINATES)], poll_s=0.1)
    assert code == 0 and (job / SUCCESS).is_file() and not (job / FAILURE).exists()


def test_progress_goes_to_run_out_and_errors_to_run_err(tmp_path: Path, capfd, monkeypatch):
    """RELION runs a job as ``COMMAND >> run.out 2>> run.err`` and shows run.err as the job's
    errors; the progress bars went there (tqdm draws on stderr). They now go to stdout, as
    RELION's own programs draw theirs, and a real error stays on stderr."""
    monkeypatch.chdir(tmp_path)
    job = Path("External/job021")
    argv = ["simulate", "-o", str(job / "sim"), "--preset", "classic", "--n-micrographs", "1",
            "--size", "128", "--pixel-size", "4", "--frames", "2", "--no-movies",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    capfd.readouterr()
    assert run_external_job(argv, job, [], poll_s=0.1) == 0
    out, err = capfd.readouterr()
    assert "simulate: 100%" in out and "1 made" in out
    assert "simulate:" not in err and "%|" not in err
    assert run_external_job(["info", "missing.mrc"], job, [], poll_s=0.1) == 2
    out, err = capfd.readouterr()
    assert err.startswith("draco: error: ") and "missing.mrc" in err and "error" not in out
