"""RELION's External job: run a draco command as a job of a RELION 4/5 project.

RELION runs an External job from the project folder as::

    EXECUTABLE --o External/jobNNN/ --in_mics CtfFind/job003/micrographs_ctf.star \
        [--LABEL VALUE ...] --j 1 [ADDITIONAL ARGUMENTS]

(``--in_movies`` instead of ``--in_mics`` for a movies input, ``--in_coords`` for picks; one
``--LABEL VALUE`` per row of the job's Params tab, the value split at spaces by the shell;
``--pipeline_control External/jobNNN/`` is added last only where the command line contains
``relion_``: RELION's ``getCommandsExternalJob`` and ``prepareFinalCommand``). It then reads,
in the job folder:

* ``RELION_OUTPUT_NODES.star``: block ``output_nodes``, one row per file later jobs may take
  as input (``rlnPipeLineNodeName``) with its type (``rlnPipeLineNodeTypeLabel``, RELION 4.0
  and later: :data:`MICROGRAPHS`, :data:`COORDINATES`);
* one of the empty files ``RELION_JOB_EXIT_SUCCESS``, ``RELION_JOB_EXIT_FAILURE`` or
  ``RELION_JOB_EXIT_ABORTED``, which ends the job's "running" state in the GUI.

The GUI's Abort button writes ``RELION_JOB_ABORT_NOW`` into the job folder; the program stops,
removes that file and writes ``RELION_JOB_EXIT_ABORTED``.

RELION runs the command line as ``COMMAND >> JOB/run.out 2>> JOB/run.err &`` (``RelionJob::
prepareFinalCommand``) and its GUI shows ``run.err`` apart, in red, as the job's errors; its own
programs draw their progress bars on stdout. So the command runs here with its progress bars on
stdout (:func:`progress_to_stdout`), and errors and warnings stay on stderr.

:func:`run_external_job` runs a draco command line as a child process under that protocol:
the command itself writes its outputs (paths relative to the project folder, as RELION reads
them: :func:`draco_em.io.star.project_path`) and resumes when RELION re-runs the job
("Continue"), so nothing here touches images.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import tqdm.std

from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import failures_recorded_since
from draco_em.io.star import project_path, write_star

#: Node type of a micrographs STAR (optics + micrographs blocks).
MICROGRAPHS = "MicrographGroupMetadata.star.relion"
#: Node type of a coordinate-files STAR (``rlnMicrographName``, ``rlnMicrographCoordinates``).
COORDINATES = "MicrographCoordsGroup.star.relion"

OUTPUT_NODES = "RELION_OUTPUT_NODES.star"
SUCCESS = "RELION_JOB_EXIT_SUCCESS"
FAILURE = "RELION_JOB_EXIT_FAILURE"
ABORTED = "RELION_JOB_EXIT_ABORTED"
ABORT_NOW = "RELION_JOB_ABORT_NOW"


def write_output_nodes(job_dir: Path, nodes: Sequence[tuple[Path, str]]) -> Path:
    """Write ``job_dir/RELION_OUTPUT_NODES.star`` listing ``nodes`` (file, node type)."""
    table = pd.DataFrame(
        {
            "rlnPipeLineNodeName": [project_path(path) for path, _ in nodes],
            "rlnPipeLineNodeTypeLabel": [label for _, label in nodes],
        }
    )
    path = job_dir / OUTPUT_NODES
    write_star(path, {"output_nodes": table})
    return path


def _mark(control: Path, name: str) -> None:
    write_text_atomic(control / name, "")


def mark_failed(control: Path) -> None:
    """End the job as failed before its command could start (a bad task or input option):
    without an exit file RELION's GUI would show it running for ever."""
    control.mkdir(parents=True, exist_ok=True)
    _clear(control)
    _mark(control, FAILURE)


#: Values a RELION Params row may give a yes/no option (RELION always writes a value).
_YES = {"", "1", "true", "yes", "on", "y"}
_NO = {"0", "false", "no", "off", "n"}


def flag_values(args: Sequence[str], flags: dict[str, str | None]) -> list[str]:
    """RELION's ``--LABEL VALUE`` pairs as the draco command reads them.

    RELION appends every Params row as ``--label value``; for an on/off option (``flags``:
    its name → its "off" spelling, or None) the value says yes or no instead of being an
    argument: ``--blend-halves true`` → ``--blend-halves``, ``--png false`` → ``--no-png``
    (dropped where the option has no "off" spelling, as ``-q``). A label written RELION's way,
    with underscores (``blend_halves``, as RELION's own options are spelt), is draco's hyphened
    option (no draco option has an underscore). Other pairs pass unchanged.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "_" in arg:
            arg = "--" + arg[2:].replace("_", "-")
        value = args[i + 1] if i + 1 < len(args) else None
        if arg in flags:
            word = (value or "").strip().lower()
            has_value = value is not None and (word in _YES or word in _NO)
            off = has_value and word in _NO
            if not off:
                out.append(arg)
            elif flags[arg]:
                out.append(str(flags[arg]))
            i += 2 if has_value else 1
            continue
        out.append(arg)
        i += 1
    return out


def _clear(control: Path) -> None:
    """Remove the exit files of an earlier run (RELION's "Continue" re-runs the job)."""
    for name in (SUCCESS, FAILURE, ABORTED, ABORT_NOW):
        (control / name).unlink(missing_ok=True)


#: The command's process: ``python -m draco_em ARGV`` with :func:`progress_to_stdout` first.
_COMMAND = (
    "import runpy; from draco_em.io.relion_job import progress_to_stdout; progress_to_stdout(); "
    "runpy.run_module('draco_em', run_name='__main__', alter_sys=True)"
)


def progress_to_stdout() -> None:
    """From now on, progress bars (tqdm) are drawn on stdout unless told where (the ``file``
    argument): RELION's run.out, not run.err (module docstring)."""
    init = tqdm.std.tqdm.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) < 5 and kwargs.get("file") is None:  # file: the fifth parameter
            kwargs["file"] = sys.stdout
        init(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = __init__


def _sigint_default() -> None:
    """In the command's process, before it starts: SIGINT does its default again.

    RELION's GUI starts a job through a shell with ``&``, and a shell starts such a job with
    SIGINT ignored; a Python started so never raises KeyboardInterrupt, so the SIGINT that
    Abort sends would be lost and the command would run to its end.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_external_job(
    argv: Sequence[str],
    job_dir: Path,
    nodes: Sequence[tuple[Path, str]],
    control: Path | None = None,
    threads: int | None = None,
    poll_s: float = 1.0,
) -> int:
    """Run ``argv`` (a draco command line) as RELION's External job ``job_dir``.

    Args:
        argv: the command, run from the current (project) folder with this Python, its
            progress bars on stdout (run.out) and its errors on stderr (run.err).
        job_dir: the job folder (``--o``); made if missing.
        nodes: the outputs (file, node type) written into ``RELION_OUTPUT_NODES.star`` when
            the command succeeds; those missing then are left out (none at all is a failure,
            unless the task has no RELION output, as a trained picker).
        control: the folder of the exit files (``--pipeline_control``; default ``job_dir``).
        threads: RELION's "Number of threads" (``--j``): the command's CPU threads.
        poll_s: how often the abort file is looked for, in seconds.

    Returns:
        The exit code: the command's, 130 when aborted. A batch in which some inputs failed
        (exit 1, each listed in the job's ``failures.txt``) still ends in success when its
        outputs exist, as RELION's own jobs go on past a bad micrograph. An exit 1 without
        a fresh ``failures.txt`` is an uncaught error (Python exits 1 on a traceback): a
        failure, though an earlier run's outputs are there ("Continue").
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    control = control or job_dir
    control.mkdir(parents=True, exist_ok=True)
    _clear(control)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    aborted = False
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMMAND, *argv], env=env, preexec_fn=_sigint_default
    )
    try:
        while True:
            try:
                code = proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                if (control / ABORT_NOW).exists() and not aborted:
                    aborted = True  # the command stops as on Ctrl-C: finished outputs stay
                    proc.send_signal(signal.SIGINT)
    except KeyboardInterrupt:
        aborted = True
        proc.send_signal(signal.SIGINT)
        proc.wait()
        code = 130
    made = [(path, label) for path, label in nodes if path.is_file()]
    if aborted or code == 130:
        (control / ABORT_NOW).unlink(missing_ok=True)
        _mark(control, ABORTED)
        return 130
    ran = code == 0 or (code == 1 and failures_recorded_since(job_dir, started))
    if ran and (made or not nodes):
        if made:
            write_output_nodes(job_dir, made)
        _mark(control, SUCCESS)
        return 0
    if ran:  # ran, but made no output a later job could read
        print(f"draco: error: no output for RELION in {job_dir}", file=sys.stderr)
        code = 2
    _mark(control, FAILURE)
    return code
