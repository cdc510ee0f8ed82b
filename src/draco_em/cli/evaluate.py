"""Score results against ground truth (simulated data): denoising now; curation and picking later.

Example:
    draco evaluate denoise --pred denoised/ --clean sim/clean --coords sim/coordinates --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app

evaluate_app = typer.Typer(help="Score results against ground truth.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("denoise")
def evaluate_denoise(
    pred: Annotated[Path, typer.Option(help="Folder of denoised MRC images.")],
    clean: Annotated[Path, typer.Option(help="Folder of noise-free images (same names).")],
    coords: Annotated[Path | None, typer.Option(help="Coordinates folder, for the SNR.")] = None,
    radius: Annotated[float | None, typer.Option(help="SNR disk radius in px.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """PSNR and SSIM (after scale/offset matching), FRC, and the paper's SNR (Eq. 11)."""
    from draco_em.evaluate.denoise import (
        EvaluateDenoiseConfig,
        dump_json,
        evaluate_denoise,
        format_table,
    )

    cfg = EvaluateDenoiseConfig(pred=pred, clean=clean, coords=coords, radius=radius)
    result = evaluate_denoise(cfg)
    if as_json:
        typer.echo(dump_json(result))
    else:
        typer.echo(format_table({pred.name or str(pred): result}))
        typer.echo(f"({result['n']} micrographs)")
