"""Resume that notices rewritten inputs: a batch output is skipped on a re-run only while the
input files it was made from are unchanged.

Each output records the state (name, size, modification time) of its input files in
``OUTDIR/.draco_inputs/`` (:func:`record_inputs`), written after the output; a re-run compares
(:func:`inputs_changed`) and does the item again where one was rewritten, writing the new output
over the old one atomically. Used by ``denoise``, ``pick predict`` and ``prepare``; ``draco
watch`` relies on it for files rewritten during a session.

One rule where such a redo fails (:func:`failed_redo`), or an ``--overwrite`` one: the
earlier output stays on disk (data is never lost) but leaves the batch's lists (a list names
the outputs of the inputs as they are now, and the earlier one was made from another version),
its record is marked so that the next run tries again (:func:`record_failed_redo`: also
after ``--overwrite``/``--recut``, whose record still matches the input), and
``failures.txt`` says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from draco_em.io.atomic import write_text_atomic

#: Hidden folder of a batch's OUTDIR: for each output, the state of the input files it was
#: made from (:func:`record_inputs`), so that a re-run redoes it when one was rewritten.
INPUTS_FOLDER = ".draco_inputs"

#: One input file's state as resume compares it: (name, size in bytes, modification time in
#: ns); size and time are None where the file does not exist (a mask not made yet). By name,
#: not path: a folder of inputs moved elsewhere (``mv`` keeps both) still resumes.
FileState = tuple[str, int | None, int | None]


def input_states(files: Iterable[Path]) -> list[FileState]:
    """The state of the files an output is made from, in the caller's order. Taken before
    they are read, and recorded once the output is written (:func:`record_inputs`): a file
    rewritten while it was being read then differs from its record, and is done again."""
    states: list[FileState] = []
    for path in files:
        try:
            st = Path(path).stat()
            states.append((Path(path).name, st.st_size, st.st_mtime_ns))
        except OSError:
            states.append((Path(path).name, None, None))
    return states


def _inputs_record(outdir: Path, output: Path) -> Path:
    """``OUTDIR/.draco_inputs/<output's path in OUTDIR, '/' as '+'>.json``: one file per
    output, so ``torchrun`` ranks (each writing its own outputs) never write the same one,
    and flat, so the temp sweep of :func:`make_output_folder` reaches a killed write's temp."""
    return outdir / INPUTS_FOLDER / ("+".join(output.relative_to(outdir).parts) + ".json")


def record_inputs(outdir: Path, output: Path, states: Sequence[FileState]) -> None:
    """Record that ``output`` (a file in ``outdir``, just written) was made from ``states``
    (:func:`input_states`, taken before the inputs were read).

    Written atomically after the output: a kill between the two leaves the old record (the
    input is done again) or none (resumed as before), never a new record beside an old output.
    """
    text = json.dumps({"output": output.name, "inputs": [list(s) for s in states]})
    write_text_atomic(_inputs_record(outdir, output), text + "\n")


def record_failed_redo(outdir: Path, output: Path) -> None:
    """Mark ``output`` (an earlier run's, kept on disk) as made from no input as it is now: its
    redo failed, and the next run must do it again, also where its inputs are unchanged (an
    ``--overwrite`` or ``--recut`` redo whose new settings the folder now records)."""
    text = json.dumps({"output": output.name, "inputs": None, "failed_redo": True})
    write_text_atomic(_inputs_record(outdir, output), text + "\n")


def inputs_changed(outdir: Path, output: Path, states: Sequence[FileState]) -> bool:
    """Whether the existing ``output`` was made from other input files than ``states`` (their
    state now): one was rewritten (a micrograph re-made upstream, a movie copied again), or
    one is added or gone. Resume then does it again, writing the new output over the old one.

    False without a record: outputs made before records were kept (or by another tool) are
    resumed as before. A record that cannot be read counts as changed (done again).
    """
    record = _inputs_record(outdir, output)
    try:
        text = record.read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        inputs = json.loads(text)["inputs"]
        if inputs is None:  # a redo that failed (record_failed_redo): do it again
            return True
        recorded = [tuple(s) for s in inputs]
    except (ValueError, KeyError, TypeError):
        return True
    return recorded != [tuple(s) for s in states]


#: What ``failures.txt`` adds to the reason of a failed redo (:func:`failed_redo`).
KEPT_EARLIER = "its earlier output stays on disk, unlisted, until a run succeeds"


def failed_redo(reason: str) -> str:
    """The ``failures.txt`` reason of an input whose redo failed (it changed since its output
    was made, or ``--overwrite``, and this run could not make it again): the reason, and that
    the earlier output stays on disk but out of the batch's lists (the one rule of
    ``denoise``, ``pick predict`` and ``prepare``; the module's docstring)."""
    return f"{reason}; {KEPT_EARLIER}"


def redone_note(names: Sequence[str]) -> str | None:
    """The one wording of "outputs done again because their input changed" (None: none)."""
    if not names:
        return None
    shown = first_names(names)
    return f"{len(names)} redone: input changed since processed ({shown})"


def first_names(names: Sequence[str], shown: int = 3) -> str:
    """``"a, b, c, ..."``: the first ``shown`` names of a list a line reports."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
