"""Odd/even half sums of a micrograph: where they are found (one rule for every command).

MotionCor2 (``-SplitSum 1``) and ``draco prepare`` write ``X_EVN`` and ``X_ODD`` beside a full
sum ``X``; a micrographs STAR may name them in ``dracoMicrographEven``/``dracoMicrographOdd``.
``draco denoise --adapt`` trains on them (Noise2Noise) and ``draco denoise --blend-halves``
calibrates its output on them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from draco_em.errors import DracoInputError
from draco_em.io.batch import InputItem, InputSet
from draco_em.io.manifest import EVEN, ODD

#: File-name suffixes of the even- and odd-frame half sums (MotionCor2's).
HALF_SUFFIXES = ("_EVN", "_ODD")


def find_halves(path: Path) -> tuple[Path, Path] | None:
    """``(even, odd)`` sums beside a full sum: ``X_EVN.ext``/``X_ODD.ext``, or None."""
    even, odd = (path.with_name(f"{path.stem}{s}{path.suffix}") for s in HALF_SUFFIXES)
    return (even, odd) if even.is_file() and odd.is_file() else None


def full_sum_of(path: Path) -> Path | None:
    """The full sum ``X.ext`` a half sum ``X_EVN.ext``/``X_ODD.ext`` belongs to; None for a
    file whose name is not a half's."""
    for suffix in HALF_SUFFIXES:
        if path.stem.endswith(suffix):
            return path.with_name(path.stem[: -len(suffix)] + path.suffix)
    return None


def is_half(path: Path, fulls: set[Path]) -> bool:
    """A half sum whose full sum is also an input (the halves belong to it)."""
    return full_sum_of(path) in fulls


def drop_halves(inputs: InputSet) -> tuple[InputSet, int]:
    """``inputs`` less the half sums ``X_EVN``/``X_ODD`` whose full sum ``X`` is an input too,
    and how many were dropped. They are the same exposure as ``X``, not micrographs of their
    own, so picking, curation and a picker's negatives read the full sum only (a folder of
    MotionCor2 ``-SplitSum 1`` or ``draco simulate`` output holds all three)."""
    fulls = {it.path for it in inputs.items}
    kept = [it for it in inputs.items if not is_half(it.path, fulls)]
    return replace(inputs, items=kept), len(inputs.items) - len(kept)


def halves_of(inputs: InputSet, item: InputItem) -> tuple[Path, Path] | None:
    """The ``(even, odd)`` halves of an input: the STAR's columns where it names them, else
    ``X_EVN``/``X_ODD`` files beside ``X``, else None.

    Raises:
        DracoInputError: the STAR names a half sum that does not exist.
    """
    if inputs.table is not None and item.star_row is not None:
        row = inputs.table.micrographs.iloc[item.star_row]
        even, odd = row.get(EVEN), row.get(ODD)
        if isinstance(even, str) and isinstance(odd, str) and even and odd:
            halves = (inputs.table.resolve(even), inputs.table.resolve(odd))
            for half in halves:
                if not half.is_file():
                    raise DracoInputError("the STAR names a missing half sum", half)
            return halves
    return find_halves(item.path)
