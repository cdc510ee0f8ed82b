"""Atomic writes: write to a temp file in the destination folder, then rename.

A crash never leaves a half-written output under the final name, so batch jobs can resume by
skipping outputs that exist. Inputs are never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from draco_em.errors import DracoInputError


def check_not_input(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise if ``path`` is the same file as any of ``inputs`` (never overwrite an input)."""
    target = Path(path).resolve()
    for src in inputs:
        if Path(src).resolve() == target:
            raise DracoInputError("refusing to overwrite an input file", path)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: final destination. Its parent folder is created.
        suffix: suffix of the temp file (defaults to the destination's, so writers that infer
            the format from the extension keep working).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
