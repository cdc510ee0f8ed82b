"""Live processing: re-run a batch command as new files arrive during a collection session.

``draco watch denoise Movies/ -o Denoised/`` runs ``draco denoise`` on the files of ``Movies/``
that have *settled* (their size and time stamp unchanged for ``settle_s`` seconds, so that a
movie still being written or copied is never read), then waits, and runs it again whenever
more files have settled. Each run is an ordinary resumed run (finished outputs are skipped,
inputs that failed are retried), so its output folder, STAR files and ``failures.txt`` always
cover every input seen so far. A file *rewritten* after a run was given it (a movie exported
again, a micrograph rewritten by the upstream job) changes its size or time stamp, so the watch
runs the command again, and the command's own resume does it again, its old outputs kept until
the new ones replace them (:func:`draco_em.io.resume.inputs_changed`). This is crYOLO's
monitor mode and what cryoSPARC Live and RELION's on-the-fly scheduler do, for the commands that
process inputs one by one.

What is watched: the command's folders and globs, expanded as the command expands them (the
same suffixes); a STAR or a plain file given as input is passed as it is, and re-runs the
command when it changes (a RELION STAR that upstream jobs extend). A sum and its
``_EVN``/``_ODD`` halves wait for each other: none is ready while one is still being written.

The watch ends after ``idle_min`` minutes without a new file (0: never), when ``stop_file``
appears, or on Ctrl-C between runs (exit code: the last run's); Ctrl-C during a run stops the
run as usual (130). A command that cannot run ends the watch with its exit code 2: on the first
run (a bad option, a model that does not load), and on a later one when the run before could
not either (a model file of one's own rewritten during the session: the folder's settings
check refuses every run from then on); the files those runs were given are named. Input
failures never end it. The watch holds the ``-o`` folder's lock from start to end, so a
second watch or run into it stops at once.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from draco_em.errors import DracoInputError
from draco_em.io.atomic import visible_files
from draco_em.io.batch import MICROGRAPH_SUFFIXES, PREPARE_SUFFIXES, failures_recorded_since
from draco_em.io.folder_lock import held_elsewhere, lock_folder, releases_folder_locks
from draco_em.io.halves import full_sum_of
from draco_em.io.resume import first_names

#: The commands ``draco watch`` runs, and the files a folder contributes to each.
WATCHABLE: dict[str, tuple[str, ...]] = {
    "prepare": PREPARE_SUFFIXES,
    "denoise": MICROGRAPH_SUFFIXES,
    "pick predict": MICROGRAPH_SUFFIXES,
    "curate predict": MICROGRAPH_SUFFIXES,
}

#: Options that redo every finished output: given to a watch's first run only.
FIRST_RUN_ONLY = ("--overwrite", "--recut")


class WatchConfig(BaseModel):
    """``draco watch``'s own settings."""

    model_config = ConfigDict(extra="forbid")

    settle_s: float = Field(
        30.0, ge=0, description="A file is ready this long after its last write."
    )
    every_s: float = Field(10.0, gt=0, description="Seconds between looks at the inputs.")
    idle_min: float = Field(
        60.0, ge=0, description="End after this long without a new file (0: never)."
    )
    stop_file: Path | None = Field(None, description="End when this file appears.")


#: A file's state: (size, modification time in ns).
Signature = tuple[int, int]


@dataclass
class InputWatcher:
    """Which of a command's input files are ready, and whether any is new since the last run.

    Args:
        tokens: the command's inputs as given (files, STARs, folders, globs).
        suffixes: what a folder contributes (the command's own suffixes).
        settle_s: a file is ready when it is at least this old and was seen unchanged at the
            previous look (the age alone is not trusted: a network filesystem's clock may lag).
    """

    tokens: Sequence[str]
    suffixes: tuple[str, ...]
    settle_s: float
    _seen: dict[Path, Signature] = field(default_factory=dict)  # at the previous look
    _done: dict[Path, Signature] = field(default_factory=dict)  # as the last run saw them
    _ready: dict[Path, Signature] = field(default_factory=dict)  # at the last look
    settling: int = 0  # files of the last look not ready yet (being written, or just seen)
    # Of the last look: ready, and new or changed since the last run (what a run now adds).
    pending: list[Path] = field(default_factory=list)
    # Of the last look: given to a run of this watch, and changed since (said, not acted on:
    # the command's resume redoes them).
    rewritten: list[Path] = field(default_factory=list)

    def missing(self) -> list[str]:
        """Inputs that do not exist yet (an upstream watch makes them): looked for each time."""
        return [t for t in self.tokens if not (Path(t).exists() or glob.has_magic(t))]

    def look(self, now: float | None = None) -> tuple[list[str], int]:
        """(the inputs to give the command now, how many of them are new or changed).

        Files and STARs given by name are passed as given, once ready (a file named as input
        that is being rewritten holds the run back); folders and globs become their ready files.
        """
        now = time.time() if now is None else now
        given: list[str] = []
        found: list[Path] = []
        for token in self.tokens:
            path = Path(token)
            if path.is_file():  # a STAR or a file by name: passed as given
                given.append(token)
                found.append(path)
            elif path.is_dir():
                found += visible_files(path, self.suffixes)
            else:  # a glob; dot-files never match (a temp file being written)
                found += [Path(m) for m in sorted(glob.glob(token))]
        states = {p: s for p in dict.fromkeys(found) if (s := _signature(p)) is not None}
        ready = {
            p
            for p, s in states.items()
            if self._seen.get(p) == s and now - s[1] / 1e9 >= self.settle_s
        }
        # A sum and its halves are one exposure: none is ready before all are. A sum alone
        # would lose its halves (denoise --blend-halves), and a half without its sum would be
        # read as a micrograph of its own (picked, denoised) and stay in the output folder.
        waiting = {full_sum_of(p) or p for p in set(states) - ready}
        ready = {p for p in ready if (full_sum_of(p) or p) not in waiting}
        self._seen = states
        given_paths = {Path(t) for t in given}
        expanded = [str(p) for p in states if p in ready and p not in given_paths]
        inputs = [*given, *expanded]
        self.pending = sorted(p for p in ready if self._done.get(p) != states[p])
        # A STAR names inputs; it is not one whose outputs are redone.
        self.rewritten = [
            p
            for p in sorted(ready)
            if p.suffix.lower() != ".star" and self._done.get(p, states[p]) != states[p]
        ]
        if any(Path(t) not in ready and Path(t) in states for t in given):
            inputs = []  # a named file still being written: wait for it
            self.pending, self.rewritten = [], []
        self._ready = {p: states[p] for p in ready}
        self.settling = len(states) - len(ready)
        return inputs, len(self.pending)

    def upstream_busy(self) -> list[Path]:
        """Input folders another draco run is writing into now (it holds their lock): an
        upstream watch whose last outputs are still to come."""
        folders = [Path(t) if Path(t).is_dir() else Path(t).parent for t in self.tokens]
        return [f for f in dict.fromkeys(folders) if f.is_dir() and held_elsewhere(f)]

    def ran(self) -> None:
        """Record the files of the last :meth:`look` as processed."""
        self._done.update(self._ready)


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:  # gone between the listing and now
        return None
    return st.st_size, st.st_mtime_ns


def _say_rewritten(files: list[Path], echo: Callable[[str], None]) -> None:
    """Name the files rewritten since a run of this watch was given them. The next run's
    resume redoes the outputs they were made from (:func:`draco_em.io.resume.inputs_changed`)
    and says which: not every file is an input of its own (pick and curate leave a sum's
    halves out), so the watch does not claim each is done again."""
    names = first_names([p.name for p in files])
    echo(f"watch: {len(files)} file(s) rewritten since processed (the command redoes the "
         f"outputs made from them): {names}")  # fmt: skip


def _not_processed(left: list[Path]) -> str:
    """``"; N new or changed file(s) not processed: a, b, c, ..."``: what the runs that could
    not run were given, for the watch's last line (empty where there were none)."""
    names = first_names([p.name for p in left])
    return f"; {len(left)} new or changed file(s) not processed: {names}" if left else ""


def _could_not_run(left: list[Path], first: bool, again: bool, echo: Callable[[str], None]) -> bool:
    """Say that a run could not run (the command's own line above says why); whether the
    watch ends. It ends at the first run (a bad option, a model that does not load) and at a
    second run in a row that could not: with the same options each run, that is a refusal every
    later run gets too (a model file of one's own rewritten mid-session no longer matches the
    folder's record). Until session 25 the watch went on, each new file got the refusal, and
    none was processed. Once mid-session it may pass: a file gone between the look and the
    run.
    """
    if first:
        echo("watch: the command could not run (above): done")
    elif again:
        echo(f"watch: the command could not run (above) twice in a row: done"
             f"{_not_processed(left)}")  # fmt: skip
    else:
        echo("watch: the command could not run (above): tried again at the next new file; "
             "a second time in a row ends the watch")  # fmt: skip
    return first or again


@releases_folder_locks
def watch_command(
    command: str,
    argv: Sequence[str],
    inputs: Sequence[str],
    outdir: Path | None,
    run: Callable[[list[str]], int],
    cfg: WatchConfig,
    echo: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run ``draco COMMAND`` whenever its inputs gain ready files; returns the exit code.

    Args:
        command: a key of :data:`WATCHABLE` ("pick predict").
        argv: the command's arguments without its inputs (options and their values).
        inputs: the command's inputs as given.
        outdir: the command's ``-o`` folder (to tell input failures from a command error); the
            watch holds its lock (:mod:`draco_em.io.folder_lock`) until it ends.
        run: runs ``draco ARGV`` and returns its exit code.
        cfg: the watch's settings.
        echo: where the watch's own lines go.
        sleep: waits between looks (tests pass a fake clock).
    """
    if command not in WATCHABLE:
        raise DracoInputError(f"draco watch runs {', '.join(WATCHABLE)}, not {command!r}")
    if cfg.stop_file is not None and cfg.stop_file.exists():  # an earlier session's
        raise DracoInputError("the stop file is there already: remove it first", cfg.stop_file)
    watcher = InputWatcher(list(inputs), WATCHABLE[command], cfg.settle_s)
    for token in watcher.missing():  # said, so that a misspelt name does not wait unseen
        echo(f"watch: {token} does not exist yet: waiting for it")
    # Held between runs too: a second watch or run would interleave its outputs and STAR with
    # ours (each run keeps it). A file named by -o is left to the command to report.
    if outdir is not None and not outdir.is_file():
        lock_folder(outdir)
    ends = [f"after {cfg.idle_min:g} min without a new file"] if cfg.idle_min else []
    if cfg.stop_file is not None:
        ends.append(f"when {cfg.stop_file} appears")
    echo(f"watch: draco {command} on files ready {cfg.settle_s:g} s after their last write; "
         f"ends {' or '.join([*ends, 'on Ctrl-C'])}")  # fmt: skip
    code, runs = 0, 0
    left: list[Path] = []  # given to the runs, since the last that ran, that could not run
    last_new = time.monotonic()
    stopping = False
    try:
        while True:
            if not stopping and cfg.stop_file is not None and cfg.stop_file.exists():
                # The last movies may still be settling, and in a chain of watches the one
                # upstream may still be writing our last inputs: finish them, then end (it
                # ended at once and left them unprocessed, without a word).
                stopping = True
                echo(f"watch: {cfg.stop_file} found: finishing the files still arriving")
            ready, changed = watcher.look()
            if changed:
                echo(f"watch: {changed} new or changed file(s), {len(ready)} in all: "
                     f"draco {command}")  # fmt: skip
                if watcher.rewritten:
                    _say_rewritten(watcher.rewritten, echo)
                started = time.time()
                code = run([*command.split(), *argv, "--", *ready])
                runs += 1
                # --overwrite redoes the folder once (--recut cuts it again); after that, each
                # run only adds the new files (redoing every output at each arrival would never
                # catch up). A redo that failed is still tried again: its record is marked.
                argv = [a for a in argv if a not in FIRST_RUN_ONLY]
                if code == 130:
                    return code
                failed_inputs = outdir is not None and failures_recorded_since(outdir, started)
                could_not_run = code == 2 and not failed_inputs
                again = could_not_run and bool(left)  # the run before could not either
                left = list(dict.fromkeys([*left, *watcher.pending])) if could_not_run else []
                if could_not_run and _could_not_run(left, runs == 1, again, echo):
                    return code
                watcher.ran()
                last_new = time.monotonic()
            elif stopping and not watcher.settling and not watcher.upstream_busy():
                every = "" if left else " and every file processed"
                echo(f"watch: {cfg.stop_file} found{every}: done{_not_processed(left)}")
                break
            elif cfg.idle_min and time.monotonic() - last_new > cfg.idle_min * 60:
                echo(f"watch: no new file for {cfg.idle_min:g} min: done{_not_processed(left)}")
                break
            sleep(cfg.every_s)
    except KeyboardInterrupt:
        echo(f"watch: stopped{_not_processed(left)}")
    for token in watcher.missing():  # a misspelt name waited all along: say so at the end
        echo(f"watch: {token} never appeared")
    return code
