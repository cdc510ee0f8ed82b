"""Atomic writes: write to a temp file in the destination folder, then rename.

A crash never leaves a half-written output under the final name, so batch jobs can resume by
skipping outputs that exist. Inputs are never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from draco_em.errors import DracoInputError

#: What a temp file of :func:`atomic_path` looks like: ``.<stem>.<random>.tmp<suffix>``.
TEMP_GLOB = ".*.tmp*"


def visible_files(folder: str | Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """The files of ``folder`` (sorted, not recursive) a command reads: never dot-files.

    A killed run leaves its hidden temp files (:data:`TEMP_GLOB`); they are not inputs.
    ``suffixes``: keep only these (lower case, with the dot).
    """
    keep = None if suffixes is None else {s.lower() for s in suffixes}
    return sorted(
        p
        for p in Path(folder).iterdir()
        if not p.name.startswith(".") and (keep is None or p.suffix.lower() in keep)
    )


def remove_stale_temps(folder: str | Path, min_age_s: float = 60.0) -> int:
    """Delete the temp files a killed run left in ``folder`` and its subfolders; returns how many.

    Only files matching :data:`TEMP_GLOB` that nobody wrote in the last ``min_age_s`` seconds
    go: a run writing into the same folder right now keeps its temps (younger ones are ignored
    anyway, as dot-files).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now, n = time.time(), 0
    for path in [*folder.glob(TEMP_GLOB), *folder.glob(f"*/{TEMP_GLOB}")]:
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > min_age_s:
                path.unlink()
                n += 1
    return n


def check_not_input(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise if ``path`` is the same file as any of ``inputs`` (never overwrite an input)."""
    target = Path(path).resolve()
    for src in inputs:
        if Path(src).resolve() == target:
            raise DracoInputError("refusing to overwrite an input file", path)


def make_parent(path: str | Path) -> None:
    """Create the folder ``path`` goes into; a file standing where a folder of it should be is
    the user's (``-o run.txt/x``, ``-o`` naming a file): one line, not a traceback."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        message = "cannot write here: a file stands where its folder should be"
        raise DracoInputError(message, path) from exc


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: final destination. Its parent folder is created.
        suffix: suffix of the temp file (defaults to the destination's, so writers that infer
            the format from the extension keep working).
    """
    path = Path(path)
    make_parent(path)
    # The temp name keeps the destination's extension last, so writers that look at it still work.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.",
        suffix=".tmp" + (path.suffix if suffix is None else suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600 files; outputs should get the usual umask-based mode (shared clusters).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        # Again after writing: some writers replace the temp file with a 0600 one of their own.
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy a file atomically (a reader never sees half of ``dst``)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


#: errno values that mean the disk (or the user's quota) is full.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def reserve_disk(path: str | Path, name: str | Path | None = None) -> None:
    """Allocate disk blocks for all of ``path``'s current length before it is written through
    a memory map.

    A memory-mapped file is created sparse; when the disk fills while its pages are written
    back the kernel kills the process with SIGBUS (a whole batch gone, no failures recorded).
    Allocating first turns a full disk into an ``OSError`` here, which batch jobs record per
    file. Where ``posix_fallocate`` is missing or unsupported the file is read and written back
    through ordinary writes instead (same effect, one extra pass).

    Args:
        path: the (temp) file, already at its final length.
        name: the file named in the error (the destination of an atomic write).

    Raises:
        OSError: ENOSPC/EDQUOT with the size needed, when the disk or quota is full.
    """
    path = Path(path)
    label = str(name if name is not None else path)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        try:
            if not hasattr(os, "posix_fallocate"):  # macOS, Windows
                raise OSError(errno.EOPNOTSUPP, "posix_fallocate unavailable")
            os.posix_fallocate(fd, 0, size)
        except OSError as err:
            if err.errno in _FULL:
                raise OSError(
                    err.errno, f"no space left to write {size / 2**20:.1f} MiB", label
                ) from None
            _rewrite(fd, size, label)
    finally:
        os.close(fd)


def _rewrite(fd: int, size: int, label: str) -> None:
    """Read and write back ``size`` bytes of ``fd`` (the fallback of :func:`reserve_disk`):
    writing allocates the sparse file's holes (they read as zeros) and keeps any content."""
    chunk = 2**20
    try:
        for offset in range(0, size, chunk):  # lseek/read/write: os.pread is POSIX-only
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, min(chunk, size - offset))
            os.lseek(fd, offset, os.SEEK_SET)
            os.write(fd, data)
        os.fsync(fd)
    except OSError as err:
        if err.errno in _FULL:
            raise OSError(
                err.errno, f"no space left to write {size / 2**20:.1f} MiB", label
            ) from None
        raise
