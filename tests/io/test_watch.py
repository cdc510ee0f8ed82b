"""Live processing (`draco watch`): which files are ready, when the command runs, how it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from draco_em.cli._app import click_command
from draco_em.cli.watch import _run, _split
from draco_em.errors import DracoInputError
from draco_em.io.atomic import write_text_atomic
from draco_em.io.folder_lock import LOCK_FILE
from draco_em.io.mrc import write_mrc
from draco_em.io.watch import InputWatcher, WatchConfig, watch_command
from draco_em.model.weights import save_model
from tests.conftest import draco_in_process
from tests.infer.test_denoise import _tiny_model


def _touch(path: Path, text: str = "x", age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_a_file_is_ready_once_seen_unchanged_and_old_enough(tmp_path):
    a = _touch(tmp_path / "in" / "a.mrc", age_s=100)
    _touch(tmp_path / "in" / "notes.txt", age_s=100)  # not a micrograph: never an input
    w = InputWatcher([str(tmp_path / "in")], (".mrc",), settle_s=30)
    assert w.look() == ([], 0)  # first sight: the next look must see it unchanged
    assert w.look() == ([str(a)], 1)
    w.ran()
    assert w.look() == ([str(a)], 0)  # processed: nothing new
    b = _touch(tmp_path / "in" / "b.mrc")  # just written
    w.look()
    assert w.look() == ([str(a)], 0)  # b is too young
    assert w.look(now=time.time() + 31) == ([str(a), str(b)], 1)
    _touch(b, "longer now", age_s=100)  # still being written between looks
    assert w.look(now=time.time() + 31) == ([str(a)], 0)


def test_a_sum_waits_for_its_halves_and_a_named_star_runs_when_it_changes(tmp_path):
    full = _touch(tmp_path / "in" / "m.mrc", age_s=100)
    even = _touch(tmp_path / "in" / "m_EVN.mrc", age_s=100)
    star = _touch(tmp_path / "mics.star", "a", age_s=100)
    w = InputWatcher([str(tmp_path / "in"), str(star)], (".mrc",), settle_s=10)
    w.look()
    _touch(tmp_path / "in" / "m_ODD.mrc")  # the odd half arrives last
    ready, changed = w.look()
    # Neither the sum nor its ready even half: a half alone would be picked as a micrograph.
    assert ready == [str(star)] and changed == 1
    w.ran()
    ready, changed = w.look(now=time.time() + 11)
    assert ready == [str(star), str(full), str(even), str(even).replace("EVN", "ODD")]
    assert changed == 3  # the sum and both halves, together
    w.ran()
    _touch(star, "a longer star", age_s=100)  # an upstream job added rows
    w.look()
    assert w.look()[1] == 1
    later = InputWatcher([str(tmp_path / "later")], (".mrc",), settle_s=0)  # made upstream
    assert later.missing() == [str(tmp_path / "later")] and later.look() == ([], 0)
    _touch(tmp_path / "later" / "a.mrc", age_s=100)
    later.look()
    assert later.look() == ([str(tmp_path / "later" / "a.mrc")], 1) and later.missing() == []


def _two_arrivals(tmp_path: Path, command: str, argv: list[str]):
    """A watch of ``command`` on a folder where a.mrc is ready, b.mrc arrives at the third
    look and the stop file at the sixth: (exit code, each run's argv, the watch's lines)."""
    folder, stop = tmp_path / "in", tmp_path / "STOP"
    _touch(folder / "a.mrc", age_s=100)
    runs: list[list[str]] = []
    looks = iter(range(100))

    def fake_sleep(_s: float) -> None:
        n = next(looks)
        if n == 2:
            _touch(folder / "b.mrc", age_s=100)
        if n == 5:
            stop.touch()

    cfg = WatchConfig(settle_s=1, every_s=1, idle_min=0, stop_file=stop)
    lines: list[str] = []
    code = watch_command(command, argv, [str(folder)], None, lambda a: runs.append(a) or 0, cfg,
                         lines.append, fake_sleep)  # fmt: skip
    return code, runs, lines


def test_watch_runs_on_new_files_and_ends_at_the_stop_file(tmp_path):
    folder = tmp_path / "in"
    code, runs, lines = _two_arrivals(tmp_path, "denoise", ["-o", "out", "--overwrite"])
    assert code == 0
    assert runs == [  # --overwrite redoes the folder once, then the watch adds new files
        ["denoise", "-o", "out", "--overwrite", "--", str(folder / "a.mrc")],
        ["denoise", "-o", "out", "--", str(folder / "a.mrc"), str(folder / "b.mrc")],
    ]
    assert lines[-1].endswith("found and every file processed: done")
    cfg = WatchConfig(settle_s=1, every_s=1, idle_min=0, stop_file=tmp_path / "STOP")
    with pytest.raises(DracoInputError, match="stop file is there already"):  # a past session's
        watch_command("denoise", [], [str(folder)], None, lambda a: 0, cfg, lines.append,
                      lambda s: None)  # fmt: skip


def test_pick_predict_recut_cuts_the_folder_again_on_the_first_run_only(tmp_path):
    """--recut cut every finished micrograph again at each new file, as --overwrite once
    redid them all: a session's thousands, again at each arrival."""
    argv = ["-o", "out", "--threshold", "0.2", "--recut"]
    code, runs, _ = _two_arrivals(tmp_path, "pick predict", argv)
    assert code == 0 and [r[r.index("--threshold") + 2] for r in runs] == ["--recut", "--"]


def test_a_command_that_cannot_start_ends_the_watch_but_failed_inputs_do_not(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    _touch(folder / "a.mrc", age_s=100)
    cfg = WatchConfig(settle_s=0, every_s=1, idle_min=0, stop_file=tmp_path / "STOP")
    calls = []

    def bad_option(argv: list[str]) -> int:
        calls.append(argv)
        return 2

    code = watch_command("denoise", [], [str(folder)], out, bad_option, cfg, print, lambda s: None)
    assert code == 2
    assert len(calls) == 1

    def every_input_failed(argv: list[str]) -> int:
        _touch(out / "failures.txt")  # recorded per input: a corrupt first movie, say
        calls.append(argv)
        if len(calls) == 2:
            (tmp_path / "STOP").touch()
        return 2

    calls.clear()
    looks = iter(range(100))

    def sleep(_s: float) -> None:
        if next(looks) == 2:
            _touch(folder / "b.mrc", age_s=100)

    code = watch_command("denoise", [], [str(folder)], out, every_input_failed, cfg, print, sleep)
    assert code == 2 and len(calls) == 2  # went on to the next file


def test_a_model_file_rewritten_mid_session_ends_the_watch(tmp_path, capsys):
    """A model file of one's own rewritten during a watch (a pretrain run saving its best
    checkpoint) no longer matches the version the folder records, so denoise refuses every run
    from then on (exit 2). The watch went on: each new file got the refusal, one per arrival,
    and was never processed. It now ends at the second refusal in a row, naming what it left."""
    folder, out, stop = tmp_path / "mics", tmp_path / "den", tmp_path / "STOP"
    mine = tmp_path / "mine.safetensors"
    rng = np.random.default_rng(0)
    write_mrc(folder / "a.mrc", rng.random((128, 128), np.float32), pixel_size=2.0)
    save_model(mine, *_tiny_model(0), {"pixel_size": 2.0})
    looks = iter(range(100))

    def sleep(_s: float) -> None:
        n = next(looks)
        if n == 1:  # after the first run: the model trained on, and a new micrograph
            save_model(mine, *_tiny_model(1), {"pixel_size": 2.0})
            write_mrc(folder / "b.mrc", rng.random((128, 128), np.float32), pixel_size=2.0)
        if n in (4, 7):
            name = "c.mrc" if n == 4 else "d.mrc"
            write_mrc(folder / name, rng.random((128, 128), np.float32), pixel_size=2.0)
        if n == 10:
            stop.touch()

    cfg = WatchConfig(settle_s=0, every_s=1, idle_min=0, stop_file=stop)
    lines: list[str] = []
    argv = ["-o", str(out), "--model", str(mine), "-q"]
    code = watch_command("denoise", argv, [str(folder)], out, _run, cfg, lines.append, sleep)
    err = capsys.readouterr().err
    assert code == 2 and err.count("this folder was made with other settings (model_file") == 2
    assert sum("could not run (above): tried again at the next new file" in x for x in lines) == 1
    assert lines[-1] == (
        "watch: the command could not run (above) twice in a row: done; 2 new or changed file(s) "
        "not processed: b.mrc, c.mrc"
    )
    assert sorted(p.name for p in out.glob("*.mrc")) == ["a.mrc"]


def test_a_later_run_that_could_not_run_once_is_tried_again(tmp_path):
    """Once mid-session a run may fail and the next pass (a half whose other half was still
    being copied): the watch goes on, runs again at the next file, and names at its end what
    the last run, if it could not run, was given."""
    folder, stop = tmp_path / "in", tmp_path / "STOP"
    _touch(folder / "a.mrc", age_s=100)
    codes = iter([0, 2, 0, 2])
    looks = iter(range(100))

    def sleep(_s: float) -> None:
        n = next(looks)
        if n in (1, 3, 5):
            _touch(folder / f"{'bcd'[n // 2]}.mrc", age_s=100)
        if n == 7:
            stop.touch()

    cfg = WatchConfig(settle_s=0, every_s=1, idle_min=0, stop_file=stop)
    lines: list[str] = []
    out = tmp_path / "out"
    code = watch_command("denoise", [], [str(folder)], out, lambda a: next(codes), cfg,
                         lines.append, sleep)  # fmt: skip
    assert code == 2
    assert sum("tried again at the next new file" in x for x in lines) == 2
    assert (
        lines[-1]
        == "watch: " + str(stop) + " found: done; 1 new or changed file(s) not processed: d.mrc"
    )


def test_the_command_line_is_split_into_options_and_inputs():
    cmd = click_command(["denoise"])
    options, inputs = _split(cmd, ["a.mrc", "-o", "out", "--png", "--tile", "128", "b/"])
    assert options == ["-o", "out", "--png", "--tile", "128"] and inputs == ["a.mrc", "b/"]
    options, inputs = _split(click_command(["pick", "predict"]), ["--diameter=120", "--", "-x.mrc"])
    assert options == ["--diameter=120"] and inputs == ["-x.mrc"]
    curate = click_command(["curate", "predict"])  # an option with two values
    options, inputs = _split(curate, ["mics/", "-o", "out", "--defocus-range", "0.5", "3"])
    assert options == ["-o", "out", "--defocus-range", "0.5", "3"] and inputs == ["mics/"]
    with pytest.raises(DracoInputError, match="-o needs a value"):
        _split(cmd, ["mics/", "-q", "-o"])  # not "" (the current folder)
    with pytest.raises(DracoInputError, match=r"no such option: --settle \(draco watch's own"):
        _split(cmd, ["mics/", "-o", "out", "--settle", "60"])  # not an input named 60
    with pytest.raises(DracoInputError, match=r"no such option: --blend-halves \(prepare\)"):
        _split(click_command(["prepare"]), ["mov/", "--blend-halves"], "prepare")


def test_draco_watch_denoises_a_folder(tmp_path, capsys):
    folder, out = tmp_path / "mics", tmp_path / "den"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_mrc(folder / f"{name}.mrc", rng.random((128, 128), np.float32), pixel_size=4.0)
    code, _, err = draco_in_process(
        capsys, "watch", "--settle", "0", "--every", "0.2", "--idle", "0.01",
        "denoise", folder, "-o", out, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.mrc")) == ["a.mrc", "b.mrc"]
    assert "2 new or changed file(s), 2 in all: draco denoise" in err
    assert "no new file for 0.01 min: done" in err
    misspelt = tmp_path / "Mics"  # waited for, and said at the start and at the end
    code, _, err = draco_in_process(
        capsys, "watch", "--every", "0.2", "--idle", "0.005", "denoise", misspelt, "-o", out
    )
    assert code == 0 and "Mics does not exist yet" in err and "Mics never appeared" in err
    code, _, err = draco_in_process(capsys, "watch", "export", "run/", "-o", "x")
    assert code == 2 and "draco watch runs prepare, denoise" in err
    code, _, err = draco_in_process(
        capsys, "watch", "--settle", "0", "--every", "0.2", "--idle", "0.01",
        "denoise", folder, "-o", out, "-q", "--weights", "bundled",
    )  # fmt: skip
    assert code == 0 and "--weights is now --model" in err  # denoise's old spelling


def test_a_watch_holds_its_output_folder_between_runs(tmp_path):
    folder, out, stop = tmp_path / "mics", tmp_path / "den", tmp_path / "STOP"
    _touch(folder / "a.mrc", age_s=100)
    tries: list[subprocess.CompletedProcess] = []

    def sleep(_s: float) -> None:  # another process tries the folder between the watch's runs
        take = (
            "import sys; from draco_em.io.folder_lock import lock_folder; lock_folder(sys.argv[1])"
        )
        tries.append(subprocess.run([sys.executable, "-c", take, str(out)], capture_output=True))
        stop.touch()

    cfg = WatchConfig(settle_s=0, every_s=1, idle_min=0, stop_file=stop)
    code = watch_command("denoise", [], [str(folder)], out, lambda a: 0, cfg, print, sleep)
    assert code == 0 and len(tries) == 2  # the stop file ends it after one more look
    assert tries[0].returncode != 0
    assert "another draco run is writing into this folder" in tries[0].stderr.decode()
    assert not (out / LOCK_FILE).exists()  # released when the watch ends


def test_at_the_stop_file_a_watch_finishes_what_its_upstream_still_writes(tmp_path):
    """In a chain of watches one stop file ends all; the downstream one ended at once, while
    the upstream one was still writing its last output, and left that file unprocessed. It
    now waits while another run holds its input folder, and for files still settling."""
    import fcntl

    folder, stop = tmp_path / "trip", tmp_path / "STOP"
    _touch(folder / "a.mrc", age_s=100)
    upstream = os.open(_touch(folder / LOCK_FILE), os.O_RDWR)  # the prepare watch's lock
    fcntl.flock(upstream, fcntl.LOCK_EX)
    runs: list[list[str]] = []
    looks = iter(range(100))

    def fake_sleep(_s: float) -> None:
        n = next(looks)
        if n == 2:
            stop.touch()  # the user ends the session; prepare is still on its last movie
        if n == 6:
            _touch(folder / "b.mrc", age_s=100)  # ... which it writes now, and ends
            os.close(upstream)

    def run(argv: list[str]) -> int:
        runs.append(argv)
        return 0

    cfg = WatchConfig(settle_s=1, every_s=1, idle_min=0, stop_file=stop)
    lines: list[str] = []
    code = watch_command("denoise", [], [str(folder)], None, run, cfg, lines.append, fake_sleep)
    assert code == 0 and runs[-1][-1] == str(folder / "b.mrc")
    assert lines[-1].endswith("every file processed: done")


def _resumed_copy(out: Path, seen: list[str]):
    """A command that resumes as denoise does (:mod:`draco_em.io.batch`): ``out/<name>`` (here
    a copy of the input) is made where it is missing or its input changed since; ``seen`` gets
    what each output held just before it was written (None: there was none)."""
    from draco_em.io.resume import input_states, inputs_changed, record_inputs

    def run(argv: list[str]) -> int:
        out.mkdir(exist_ok=True)
        for src in map(Path, argv[argv.index("--") + 1 :]):
            dst, state = out / src.name, input_states([src])
            if dst.exists() and not inputs_changed(out, dst, state):
                continue
            seen.append(dst.read_text() if dst.exists() else None)
            write_text_atomic(dst, src.read_text())
            record_inputs(out, dst, state)
        return 0

    return run


def test_a_file_rewritten_after_it_was_processed_is_done_again(tmp_path):
    """Resume skipped a file rewritten after it was processed (a movie exported again). The
    watch then deleted the command's output before the next run (io.watch.finished_marks):
    gone until the run wrote it anew, and only under a watch. Now the command's own resume
    redoes it (io.resume.inputs_changed), the old output kept until the new one replaces it."""
    folder, out, stop = tmp_path / "in", tmp_path / "out", tmp_path / "STOP"
    a = _touch(folder / "a.mrc", "first", age_s=100)
    b = _touch(folder / "b.mrc", "b", age_s=100)
    looks = iter(range(100))

    def sleep(_s: float) -> None:
        n = next(looks)
        if n == 2:
            _touch(a, "second version", age_s=50)  # rewritten by the upstream job
        if n == 6:
            stop.touch()

    cfg = WatchConfig(settle_s=1, every_s=1, idle_min=0, stop_file=stop)
    lines: list[str] = []
    seen: list[str | None] = []
    code = watch_command("denoise", [], [str(folder)], out, _resumed_copy(out, seen), cfg,
                         lines.append, sleep)  # fmt: skip
    assert code == 0 and (out / "a.mrc").read_text() == "second version"
    assert seen == [None, None, "first"]  # the old output was there until replaced
    assert any(
        "1 file(s) rewritten since processed (the command redoes the outputs made from them): a.mrc"
        in x
        for x in lines
    )
    assert not (out / ".draco_watch.json").exists()  # the command keeps the record now
    a_made = (out / "a.mrc").stat().st_mtime_ns  # unchanged files are resumed as before
    # A watch started later: the command redoes what was rewritten in between, and only that.
    _touch(b, "b again", age_s=50)
    stop.unlink()
    looks = iter(range(100))
    seen.clear()

    def stop_soon(_s: float) -> None:
        if next(looks) == 4:
            stop.touch()

    code = watch_command("denoise", [], [str(folder)], out, _resumed_copy(out, seen), cfg,
                         lines.append, stop_soon)  # fmt: skip
    assert code == 0 and (out / "b.mrc").read_text() == "b again" and seen == ["b"]
    assert (out / "a.mrc").stat().st_mtime_ns == a_made


def test_draco_watch_prepares_a_rewritten_pair_again(tmp_path, capsys):
    """End to end with a real command: prepare's resume redoes the triplet of a rewritten
    half, in a watch started after the rewrite too."""
    folder, out = tmp_path / "mics", tmp_path / "trip"
    rng = np.random.default_rng(0)
    for half in ("EVN", "ODD"):
        write_mrc(folder / f"m_{half}.mrc", rng.random((64, 64), np.float32), pixel_size=2.0)
    watch = ["watch", "--settle", "0", "--every", "0.2", "--idle", "0.01", "prepare", folder,
             "-o", out, "-q"]  # fmt: skip
    code, _, err = draco_in_process(capsys, *watch)
    assert code == 0, err
    first = (out / "m.mrc").read_bytes()
    write_mrc(folder / "m_EVN.mrc", rng.random((64, 64), np.float32), pixel_size=2.0)
    code, _, err = draco_in_process(capsys, *watch)
    assert code == 0 and "1 redone: input changed since processed (m)" in err, err
    second = (out / "m.mrc").read_bytes()
    assert second != first
    code, _, err = draco_in_process(capsys, *watch)  # nothing rewritten: resumed, untouched
    assert code == 0 and "redone" not in err and (out / "m.mrc").read_bytes() == second
