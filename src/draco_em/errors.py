"""The one error class for mistakes a user can fix (bad files, bad options).

The CLI turns a :class:`DracoInputError` into one line on stderr and exit code 2; any other
exception is our bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class DracoInputError(Exception):
    """A user error: a missing or corrupt file, an impossible option, inconsistent inputs.

    The message always names the file (when there is one) and what is wrong, on one line.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())  # one line, always
        super().__init__(f"{self.path}: {text}" if self.path else text)


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (or its class name): for our one-liners."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
