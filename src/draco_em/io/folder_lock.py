"""One draco run per output folder at a time.

Two runs writing into one folder (a second terminal, a job submitted twice) would interleave
their outputs, their resume checks and their recorded settings: the settings check and its
write race, and one run deletes the temp files the other is still writing (the stale-temp
sweep of :func:`draco_em.io.atomic.remove_stale_temps`). The first run holds an advisory
``flock`` on ``FOLDER/.draco.lock``; a second one stops with one line naming the holder.

The kernel drops a ``flock`` when its process ends, however it ends (SIGKILL, a node
crash on a local disk), so a lock file a killed run left behind never blocks the next run:
it is taken over. Filesystems without ``flock`` (rare; some FUSE mounts) run unlocked.
Under ``torchrun`` the rank-0 process holds the lock for every rank.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from draco_em.errors import DracoInputError
from draco_em.io.atomic import make_parent
from draco_em.launch import launch_env

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind; draco targets Linux and macOS
    fcntl = None  # type: ignore[assignment]

#: The lock file in an output folder (a dot-file: never an input, never an output).
LOCK_FILE = ".draco.lock"

#: Folders this process holds, resolved path → the lock file's descriptor, in order taken.
_held: dict[Path, int] = {}
#: Those of them this run created: removed again if the run fails and leaves them empty.
_created: set[Path] = set()

P = ParamSpec("P")
R = TypeVar("R")


def lock_folder(folder: str | Path, created: bool | None = None) -> None:
    """Hold ``FOLDER/.draco.lock`` until :func:`release_folder_locks` or the process ends.

    Taking a folder this process holds already is a no-op. The folder is created if needed;
    ``created``: whether this run made it (default: it did not exist), so that a run that
    fails removes it again when it holds nothing (:func:`releases_folder_locks`).

    Raises:
        DracoInputError: another process holds the folder (the line names its PID, host,
            command and start time).
    """
    if fcntl is None or launch_env()[0] != 0:  # rank 0 holds it for a torchrun/srun job
        return
    key = Path(folder).resolve()
    if key in _held:
        return
    if created is None:
        created = not key.exists()
    path = key / LOCK_FILE
    make_parent(path)
    for _ in range(20):  # another run may remove the file between our open and our flock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # cannot create it (read-only folder): the folder check reports that
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DracoInputError(
                f"another draco run is writing into this folder ({holder}): wait for it to "
                "end, or give another -o folder",
                folder,
            ) from None
        except OSError:  # the filesystem has no flock: run unlocked
            os.close(fd)
            return
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # the file we locked is still the one under the name
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we locked it: lock the new one
    else:
        return
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
    if len(command) > 120:  # the command and its first arguments say which run it is
        command = command[:117] + "..."
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    text = f"PID {os.getpid()} on {socket.gethostname()}, `{command}`, since {since}"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode() + b"\n", 0)
    _held[key] = fd
    if created:
        _created.add(key)


def held_elsewhere(folder: str | Path) -> bool:
    """Whether another process holds ``FOLDER/.draco.lock`` now (a draco run writing into it:
    a downstream ``draco watch`` waits for it before it ends). False where there is no lock
    file, this process holds it, or the filesystem has no ``flock``."""
    key = Path(folder).resolve()
    if fcntl is None or key in _held:
        return False
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused only while a run holds it
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the shared lock taken just now
    return False


def release_folder_locks(keep: int = 0) -> None:
    """Release the folders this process took, all but the first ``keep`` (in order taken).

    The file is removed before it is unlocked, so a run waiting on it never holds a lock on a
    file no longer under the name (:func:`lock_folder` checks the inode).
    """
    for key in list(_held)[keep:]:
        fd = _held.pop(key)
        _created.discard(key)
        with contextlib.suppress(OSError):
            os.unlink(key / LOCK_FILE)
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the last descriptor drops the flock


def releases_folder_locks(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command's run function: the folders it locked are released when it returns
    or raises (a Python caller that runs several commands keeps no stale lock)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        before = len(_held)
        ok = False
        try:
            result = func(*args, **kwargs)
            ok = True
            return result
        finally:
            made = [key for key in list(_held)[before:] if key in _created]
            release_folder_locks(keep=before)
            if not ok:  # a run that failed (a user error, Ctrl-C) leaves no empty -o behind
                for key in made:
                    _remove_if_empty(key)

    return wrapper


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it holds only empty files (an empty ``run.log``): nothing of
    the failed run is lost, and the next run does not meet a stale folder."""
    try:
        entries = list(folder.iterdir())
        if all(e.is_file() and not e.is_symlink() and e.stat().st_size == 0 for e in entries):
            for entry in entries:
                entry.unlink()
            folder.rmdir()
    except OSError:
        pass  # another process wrote into it, or it is gone: leave it


atexit.register(release_folder_locks)
