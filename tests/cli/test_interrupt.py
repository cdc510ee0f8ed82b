"""Ctrl-C (issue 16): every command exits 130 without a traceback; pretrain keeps its steps.
A full disk outside a batch: one line, exit 2."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

import draco_em.train
from tests.conftest import draco_in_process


def test_sigint_exits_130_without_a_traceback(tmp_path) -> None:
    """A real SIGINT to a running ``draco simulate`` (a batch command with worker state)."""
    out = tmp_path / "sim"
    proc = subprocess.Popen(
        [sys.executable, "-m", "draco_em", "simulate", "-o", str(out), "--n-micrographs", "200",
         "--size", "256", "--pixel-size", "4", "--no-movies", "--preset", "classic"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a background child ignores SIGINT when its parent shell did: restore the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "micrographs").is_dir() and time.monotonic() < deadline:
        time.sleep(0.2)  # until the command is working (past the imports)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err, err


@pytest.mark.parametrize("argv", [["pretrain", "--data", "x.star", "-o", "run"]])
def test_ctrl_c_in_process_exits_130(argv, tmp_path, capsys, monkeypatch) -> None:
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(draco_em.train, "run_pretrain", interrupted)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.star").write_text("data_\n")
    code, _, err = draco_in_process(capsys, *argv)
    assert code == 130 and "Traceback" not in err


def test_ctrl_c_outside_a_command_exits_130(monkeypatch) -> None:
    """An interrupt outside typer's command call (start-up) is 130 too (cli.main)."""
    import draco_em.cli as cli
    import draco_em.cli._app as cli_app  # main lives beside app (draco watch calls it too)

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_app, "app", interrupted)
    with pytest.raises(SystemExit) as exc:
        cli.main(["info", os.devnull])
    assert exc.value.code == 130


def test_full_disk_outside_a_batch_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch) -> None:
    """A full disk while pretrain writes a checkpoint: one line naming the file, exit 2."""

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "no space left to write 12.0 MiB", "run/last.pt")

    monkeypatch.setattr(draco_em.train, "run_pretrain", full)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.star").write_text("data_\n")
    code, _, err = draco_in_process(capsys, "pretrain", "--data", "x.star", "-o", "run")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "draco: error: [Errno 28] no space left to write 12.0 MiB: 'run/last.pt'"
    ]
