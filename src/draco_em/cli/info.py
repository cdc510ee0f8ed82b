"""Describe cryo-EM files: MRC/TIFF/EER images and movies, STAR, coordinates, model weights.

Example:
    draco info micrographs/mic_0001.mrc coords/mic_0001.star --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, batch_exit_code, example
from draco_em.errors import DracoInputError


@app.command(epilog=example("draco info sim/micrographs/mic_00001.mrc sim/micrographs.star --json"))
def info(
    # readable=False: an unreadable file is one error line beside the others' summaries
    paths: Annotated[list[Path], typer.Argument(help="Files to describe.", readable=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Print shape, dtype, pixel size, frames, statistics or particle counts of each file
    ("bundled": the models the package ships)."""
    # Imported here for start-up time (torch and pandas); every command does the same.
    from draco_em.io.info import describe, format_summary
    from draco_em.model.weights import BUNDLED, bundled_model_files, describe_weights

    # "bundled", as every --model/--weights option takes it: the shipped files, each described
    shipped = [p for p in paths if str(p) == BUNDLED and not p.exists()]
    paths = [f for p in paths for f in (bundled_model_files() if p in shipped else [p])]

    weights = dict.fromkeys((".safetensors", ".pth", ".pt", ".ckpt"), describe_weights)
    results, failures = [], []
    for path in paths:
        try:
            results.append(describe(path, weights))
        except DracoInputError as exc:  # one bad file does not stop the others
            failures.append(str(exc))
    if as_json and results:
        typer.echo(json.dumps(results if len(paths) > 1 else results[0], indent=2))
    else:
        for summary in results:
            typer.echo(format_summary(summary))
    if failures:
        if len(failures) == 1 and not results:
            raise DracoInputError(failures[0])
        for text in failures:
            print(f"draco: error: {text}", file=sys.stderr)
        raise typer.Exit(batch_exit_code(len(paths), len(failures)))  # 1: others described
