"""One draco run per output folder: a second run stops with one line; a dead run's lock goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io import folder_lock
from draco_em.io.batch import make_output_folder
from draco_em.io.folder_lock import LOCK_FILE, lock_folder, releases_folder_locks
from draco_em.io.mrc import write_mrc
from tests.conftest import draco_in_process

pytestmark = pytest.mark.skipif(folder_lock.fcntl is None, reason="no flock on this platform")

HOLD = textwrap.dedent(
    """
    import sys, time
    from draco_em.io.folder_lock import lock_folder
    lock_folder(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (killed by the caller)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_into_a_locked_folder_stops_with_one_line(tmp_path, capsys):
    out = tmp_path / "den"
    mic = tmp_path / "mics" / "a.mrc"
    write_mrc(mic, np.zeros((64, 64), np.float32), pixel_size=2.0)
    proc = _holder(out)
    try:
        code, _, err = draco_in_process(capsys, "denoise", mic, "-o", out, "--pixel-size", "2")
    finally:
        proc.kill()
        proc.wait()
    assert code == 2
    assert "another draco run is writing into this folder" in err
    assert f"PID {proc.pid}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(out.glob("*.mrc"))  # it wrote nothing


def test_a_killed_runs_lock_is_taken_over(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays, its flock goes
    proc.wait()
    assert (tmp_path / LOCK_FILE).is_file()
    make_output_folder(tmp_path)  # does not raise
    assert f"PID {os.getpid()}" in (tmp_path / LOCK_FILE).read_text()
    folder_lock.release_folder_locks()
    assert not (tmp_path / LOCK_FILE).exists()


def test_locks_are_released_when_the_run_function_returns_or_raises(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    lock_folder(a)  # taken before: kept

    @releases_folder_locks
    def run(fail: bool) -> None:
        make_output_folder(b)
        make_output_folder(b)  # the same process again: no-op
        assert (b / LOCK_FILE).is_file()
        if fail:
            raise DracoInputError("bad option")

    run(False)
    assert not (b / LOCK_FILE).exists() and (a / LOCK_FILE).is_file()
    with pytest.raises(DracoInputError):
        run(True)
    assert not (b / LOCK_FILE).exists() and (a / LOCK_FILE).is_file()
    folder_lock.release_folder_locks()
    assert not (a / LOCK_FILE).exists()


def test_other_ranks_of_a_job_do_not_lock(tmp_path, monkeypatch):
    proc = _holder(tmp_path)  # the job's rank 0
    try:
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("WORLD_SIZE", "2")
        lock_folder(tmp_path)  # rank 1 of the same job: neither refused nor locking
        assert folder_lock._held == {}
    finally:
        proc.kill()
        proc.wait()


def test_a_failed_run_removes_the_empty_folder_it_made(tmp_path) -> None:
    """A run that stops on a user error leaves no empty -o folder behind (an empty run.log
    counts as empty); a folder that existed before, or one holding any output, stays."""

    @releases_folder_locks
    def run(out, write: str | None = None):
        make_output_folder(out)
        (out / "run.log").touch()
        if write:
            (out / write).write_text("x")
        raise DracoInputError("bad input")

    for out, write, stays in ((tmp_path / "new", None, False), (tmp_path / "kept", "a.txt", True)):
        with pytest.raises(DracoInputError):
            run(out, write)
        assert out.exists() == stays
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DracoInputError):
        run(mine)
    assert mine.is_dir()  # the user's own folder is never removed
