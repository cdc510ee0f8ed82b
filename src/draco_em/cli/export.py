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
    which: Annotated[str, typer.Option(help="best (validation PSNR) or latest.")] = "best",
    half: Annotated[
        bool, typer.Option("--half", help="Store float16 weights (half size).")
    ] = False,
) -> None:
    """Write a run's best or latest weights to a safetensors file."""
    from draco_em.train.checkpoint import export_run

    if which not in ("best", "latest"):
        raise DracoInputError(f"--which must be best or latest, got {which!r}")
    if out.suffix != ".safetensors":
        raise DracoInputError("the output name must end in .safetensors", out)
    typer.echo(f"wrote {export_run(run_dir, out, which, half=half)}")
