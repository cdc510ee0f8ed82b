"""Run draco as an External job of a RELION 4/5 project (docs/conventions.md, "RELION External
jobs").

In RELION's GUI, make an External job with "External executable" ``draco relion pick`` (or
``prepare``, ``denoise``, ``curate``, ``pick-train``), the input micrographs (or movies) STAR,
and draco's own options as Params rows (label ``diameter``, value ``150``). RELION then runs,
from the project folder:

    draco relion pick --o External/job012/ --in_mics CtfFind/job004/micrographs_ctf.star
    --diameter 150 --j 4

The job's outputs become RELION nodes: prepare and denoise a micrographs STAR, pick a
coordinate-files STAR (for Extract), curate the accepted micrographs. pick-train fine-tunes the
bundled picker on a ManualPick job's picks (``--in_coords``); a pick job then takes its folder
as the Params row ``model``. RELION's "Continue" re-runs a job in its folder: the batch tasks
skip what they finished, pick-train goes on from its last finished epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, click_command, example
from draco_em.errors import DracoInputError

#: task → (the draco command, its inputs as (RELION option, draco option or None for the
#: positional input), options it gets unless the Params give them, its outputs for RELION).
TASKS: dict[str, tuple[list[str], list[tuple[str, str | None]], list[str], list[tuple[str, str]]]]
TASKS = {
    "prepare": (["prepare"], [("--in_movies", None)], [], [("triplets.star", "micrographs")]),
    "denoise": (
        ["denoise"], [("--in_mics", None)], [], [("denoised_micrographs.star", "micrographs")]
    ),
    "pick": (
        ["pick", "predict"], [("--in_mics", None)], [], [("coordinate_files.star", "coordinates")]
    ),
    "curate": (
        ["curate", "predict"], [("--in_mics", None)], [],
        [("micrographs_accepted.star", "micrographs")],
    ),
    # Few-shot: a ManualPick job's picks fine-tune the bundled picker; a later
    # `draco relion pick` job uses it with the Params row model = this job's folder.
    "pick-train": (
        ["pick", "train"], [("--in_mics", "--micrographs"), ("--in_coords", "--coords")],
        ["--weights", "bundled"], [],
    ),
}  # fmt: skip


@app.command(
    "relion",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=example(
        "draco relion pick --o External/job012/ --in_mics CtfFind/job004/micrographs_ctf.star "
        "--diameter 150"
    ),
)
def relion(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="prepare, denoise, pick, curate or pick-train.")],
    out: Annotated[Path, typer.Option("--o", help="The job folder (External/jobNNN/).")],
    in_mics: Annotated[
        Path | None, typer.Option("--in_mics", help="Micrographs STAR (denoise, pick, curate).")
    ] = None,
    in_movies: Annotated[
        Path | None, typer.Option("--in_movies", help="Movies STAR (prepare).")
    ] = None,
    in_coords: Annotated[
        Path | None,
        typer.Option("--in_coords", help="Picks, e.g. a ManualPick job's STAR (pick-train)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--j", help="CPU threads (RELION's 'Number of threads').")
    ] = None,
    pipeline_control: Annotated[
        Path | None,
        typer.Option("--pipeline_control", help="Folder of RELION's exit files (default: --o)."),
    ] = None,
) -> None:
    """Run a draco command as a RELION External job: RELION's options, then any of the
    command's own (e.g. draco relion pick --o DIR --in_mics STAR --diameter 150)."""
    from draco_em.io.relion_job import (
        COORDINATES,
        MICROGRAPHS,
        flag_values,
        mark_failed,
        run_external_job,
    )

    control = pipeline_control or out
    if task not in TASKS:
        mark_failed(control)
        raise DracoInputError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    command, wanted, defaults, outputs = TASKS[task]
    given = {"--in_mics": in_mics, "--in_movies": in_movies, "--in_coords": in_coords}
    inputs: list[str] = []
    for relion_option, draco_option in wanted:
        source = given[relion_option]
        if source is None:
            mark_failed(control)
            raise DracoInputError(f"draco relion {task} reads {relion_option} (the job's input)")
        inputs += [str(source)] if draco_option is None else [draco_option, str(source)]
    types = {"micrographs": MICROGRAPHS, "coordinates": COORDINATES}
    nodes = [(out / name, types[kind]) for name, kind in outputs]
    extra = flag_values(ctx.args, _flags(command))
    for name, value in zip(defaults[::2], defaults[1::2], strict=True):
        if name not in extra:
            extra += [name, value]
    argv = [*command, *inputs, "-o", str(out), *extra, *_continued(task, out, extra)]
    code = run_external_job(argv, out, nodes, control=control, threads=threads)
    if code:
        raise typer.Exit(code)


#: task → (the file an interrupted run leaves in the job folder, what RELION's "Continue"
#: then adds). pick train's checkpoint is ``io.run_folder.checkpoint_path(job, "latest")``,
#: named here since io.run_folder imports torch, which the command line leaves to each command
#: (tests/io/test_relion_job.py writes it with checkpoint_path); batch tasks resume by themselves.
CONTINUE = {"pick-train": (Path("checkpoints", "latest.pt"), ["--resume", "latest"])}


def _continued(task: str, job_dir: Path, extra: list[str]) -> list[str]:
    """What RELION's "Continue" (the job run again in its folder) adds to the command line.

    The batch tasks skip what they finished. ``pick train`` does not go on by itself: an
    interrupted training (Abort, a killed job) leaves its checkpoint in the job folder, and a
    run without ``--resume latest`` stops at it, so the job adds it there. Without a
    checkpoint (a first run, one stopped before its first epoch ended) it trains from the
    start; a ``resume`` Params row is left as the user gave it.
    """
    if task not in CONTINUE or any(a.split("=")[0] == "--resume" for a in extra):
        return []
    saved, words = CONTINUE[task]
    return list(words) if (job_dir / saved).is_file() else []


def _flags(command: list[str]) -> dict[str, str | None]:
    """The on/off options of ``draco <command>``: name → its "off" spelling (or None)."""
    node = click_command(command)
    flags: dict[str, str | None] = {}
    for param in node.params:
        if getattr(param, "is_flag", False):
            off = param.secondary_opts[0] if param.secondary_opts else None
            flags.update(dict.fromkeys(param.opts, off))
    return flags
