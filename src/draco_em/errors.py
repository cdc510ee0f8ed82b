"""The one error class for mistakes a user can fix (bad files, bad options), the one
"did you mean" rule its messages use (:func:`close_names`), and how a message counts things
(:func:`counted`: "1 micrograph", "3 micrographs") and names a config field's option
(:func:`option_name`).

The CLI turns a :class:`DracoInputError` into one line on stderr and exit code 2; any other
exception is our bug and keeps its traceback.
"""

from __future__ import annotations

from difflib import SequenceMatcher
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


def close_names(typo: str, names: list[str], cutoff: float = 0.6) -> list[str]:
    """The ``names`` nearest to ``typo`` (at most 3, best first), none when nothing is near.

    The one "did you mean" rule of the package (options, ``draco docs`` topics). A name that
    begins the typo or that the typo begins (``tile-size``: ``tile``; ``pick``: ``picking``) is
    nearer than any other; among the rest, those of similarity ratio ``cutoff`` and above. Only
    those within 0.1 of the best ratio are named.
    """
    if not typo.strip():  # every name begins with "": none is nearer than another
        return []
    related = [n for n in names if typo.startswith(n) or n.startswith(typo)]
    scored = sorted(((SequenceMatcher(None, typo, n).ratio(), n) for n in related or names),
                    key=lambda s: -s[0])  # fmt: skip
    floor = 0.0 if related else cutoff
    if not scored or scored[0][0] < floor:
        return []
    return [n for r, n in scored if r >= max(floor, scored[0][0] - 0.1)][:3]


def counted(n: int, noun: str) -> str:
    """``1 micrograph``, ``3 micrographs``: a count in a message (a plain ``s`` plural)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


#: Config fields whose command-line option has another name (``dose_range``: the realistic
#: preset's range that ``draco simulate --dose`` fixes).
OPTION_NAMES = {"from_format": "from", "out_dir": "out", "outdir": "out", "output": "out",
                "jobs": "workers", "data_pixel_size": "pixel_size",
                "dose_range": "dose"}  # fmt: skip


def option_name(field: str) -> str:
    """The command-line option of a config field, as a message names it: ``crops_per_epoch``
    → ``--crops-per-epoch``, ``outdir`` → ``--out`` (:data:`OPTION_NAMES`)."""
    return "--" + OPTION_NAMES.get(field, field).replace("_", "-")
