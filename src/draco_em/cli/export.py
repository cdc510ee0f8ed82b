"""Export a pretraining run's weights as one safetensors file with its config in the metadata.

Example:
    draco export runs/tiny -o tiny.safetensors --which best

The file loads with ``draco_em.model.weights.load_model`` (and every command's ``--weights``);
its metadata holds the preset, patch size, working pixel-size range and normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example
from draco_em.errors import DracoInputError


@app.command(epilog=example("draco export runs/tiny -o tiny.safetensors --which best"))
def export(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder of draco pretrain (or a .pt checkpoint).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Destination .safetensors file.")],
    which: Annotated[
        str,
        typer.Option(
            help="best (validation PSNR; a run without validation: its latest) or latest."
        ),
    ] = "best",
    half: Annotated[
        bool, typer.Option("--half", help="Store float16 weights (half size).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model file at -o.")
    ] = False,
) -> None:
    """Write a run's best or latest weights to a safetensors file."""
    from draco_em.train.checkpoint import export_run, export_source

    if which not in ("best", "latest"):
        raise DracoInputError(f"--which must be best or latest, got {which!r}")
    if out.suffix != ".safetensors":
        raise DracoInputError("the output name must end in .safetensors", out)
    if out.is_dir():
        raise DracoInputError("-o names a folder: give a .safetensors file name", out)
    if out.exists() and not overwrite:  # a model other runs (a curator, a picker) may name
        raise DracoInputError("exists: give another -o, or --overwrite to replace it", out)
    if run_dir.is_file() and run_dir.suffix != ".pt":
        raise DracoInputError(
            "draco export reads a pretrain run folder or its .pt checkpoint; this is a model "
            "file already (every --weights option reads it as it is)",
            run_dir,
        )
    source = export_source(run_dir, which)
    note = ""
    if run_dir.is_dir() and source.stem != which:  # said, never silent: other weights than asked
        note = f" (the run has no {which}.pt: it ran without validation)"
    typer.echo(f"wrote {export_run(run_dir, out, which, half=half)} from {source}{note}")
