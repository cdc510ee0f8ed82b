"""What every ``draco evaluate`` command hands back: JSON text, or a results file (``-o FILE``).

One writer for all of them. ``.json`` holds the whole result (strict JSON: NaN and infinities
become ``null``, numpy numbers plain ones); ``.csv`` holds its table: the rows a command passes
(``evaluate denoise``: one per scored image), else one row of the result's scalar figures
(``evaluate pick`` and ``evaluate curate``: the pooled figures; lists and the confusion matrix
are in the JSON only). Files are written atomically: a reader never sees half of one.

The standard library only: the command line imports this module at start-up.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from draco_em.errors import DracoInputError
from draco_em.io.atomic import check_not_input, write_text_atomic

#: The results formats, chosen by the file's suffix.
RESULT_SUFFIXES = (".json", ".csv")


def plain(value: Any) -> Any:
    """``value`` with numpy numbers as Python ones and NaN/inf as None, in nested dicts/lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if getattr(value, "ndim", None) == 0:  # a numpy number
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(result: dict) -> str:
    """Strict JSON text of a result (what ``--json`` prints and a ``.json`` file holds)."""
    return json.dumps(plain(result), indent=2)


def check_results_path(path: Path, inputs: Iterable[Path | None] = ()) -> None:
    """Refuse, before any work, a results file that could not or must not be written.

    Raises:
        DracoInputError: another suffix than .json/.csv, a folder, or one of the inputs.
    """
    if path.is_dir():
        raise DracoInputError("-o names a folder: give a .json or .csv file", path)
    if path.suffix.lower() not in RESULT_SUFFIXES:
        raise DracoInputError(
            f"-o writes .json or .csv (by the suffix), not {path.suffix or 'a file without one'}",
            path,
        )
    check_not_input(path, [p for p in inputs if p is not None])


def scalar_row(result: dict) -> dict:
    """The result's scalar figures (numbers, strings, booleans, None): one CSV row."""
    return {k: v for k, v in plain(result).items() if v is None or isinstance(v, str | int | float)}


def write_results(path: Path, result: dict, rows: list[dict] | None = None) -> Path:
    """Write ``result`` to ``path``: JSON, or CSV of ``rows`` (default: :func:`scalar_row`).

    Returns:
        ``path``.
    """
    check_results_path(path)
    if path.suffix.lower() == ".csv":
        table = [plain(r) for r in rows] if rows is not None else [scalar_row(result)]
        columns = list(dict.fromkeys(k for r in table for k in r))  # first seen, first
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")  # missing: empty
        writer.writeheader()
        writer.writerows(table)
        write_text_atomic(path, buffer.getvalue())
    else:
        write_text_atomic(path, json_text(result) + "\n")
    return path
