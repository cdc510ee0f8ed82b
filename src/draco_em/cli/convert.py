"""Convert particle coordinates between RELION STAR, EMAN .box, Topaz text and cryoSPARC .cs.

Coordinates are pixels of the micrograph as stored (x = column, y = row); conventions are in
docs/conventions.md.

Example:
    draco convert picks/particles.txt -o AutoPick/job099 --to star --scale 0.25
    draco convert AutoPick/job099/coordinate_files.star -o picks.cs --to cs \\
        --micrograph-shape 1855x1919 --pixel-size 2.63
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example, exit_batch
from draco_em.errors import counted


@app.command(
    epilog=example(
        "draco convert picks/coordinates -o picks.cs --to cs --micrograph-shape 1024x1024 "
        "--pixel-size 2.0"
    ),
)
def convert(
    inputs: Annotated[
        # readable=False: an unreadable file is one failure in failures.txt, not a usage error
        list[Path], typer.Argument(help="Coordinate files, folders or globs.", readable=False)
    ],
    output: Annotated[
        Path, typer.Option("-o", "--out", help="Folder (star, box) or file (topaz, cs).")
    ],
    to: Annotated[str, typer.Option("--to", help="Target format: star, box, topaz or cs.")],
    from_format: Annotated[
        str | None, typer.Option("--from", help="Input format (default: guessed per file).")
    ] = None,
    scale: Annotated[
        float, typer.Option(help="Multiply x, y: 0.25 maps unbinned to 4x binned.")
    ] = 1.0,
    box_size: Annotated[int | None, typer.Option(help="Box edge in px, for .box output.")] = None,
    micrograph_shape: Annotated[
        str | None,
        typer.Option(
            help="NYxNX of the output micrographs in px, after --scale (.cs output, "
            "--invert-y); "
            "read from the --micrographs STAR's MRC headers when not given."
        ),
    ] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Å/px, written into .cs.")] = None,
    invert_y: Annotated[
        bool, typer.Option(help=".box rows count from the bottom (y -> ny-1-y).")
    ] = False,
    micrographs: Annotated[
        Path | None,
        typer.Option(
            help="Micrographs STAR of these picks: coordinate_files.star names each micrograph "
            "as it does (RELION matches names exactly)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Convert coordinate files; exit 1 if some inputs failed, 2 if all did (failures.txt)."""
    from draco_em.io.convert import ConvertConfig, convert_coords

    config = ConvertConfig(  # a rejected value: one line, exit 2 (draco_em.cli.main)
        inputs=inputs,
        output=output,
        to=to,
        from_format=from_format,
        scale=scale,
        box_size=box_size,
        micrograph_shape=micrograph_shape,
        pixel_size=pixel_size,
        invert_y=invert_y,
        micrographs=micrographs,
    )
    result = convert_coords(config, progress=progress and not quiet)
    typer.echo(
        f"wrote {result.n_particles} particles of {result.n_micrographs} micrographs "
        f"to {len(result.outputs)} file(s) in {config.output}"
    )
    if result.n_outside:
        typer.echo(
            f"warning: {result.n_outside} picks are centred at negative coordinates, off the "
            "micrograph (a flipped axis? box corners read as centres?): written as given",
            err=True,
        )
    if result.unlisted:
        typer.echo(
            f"warning: {counted(len(result.unlisted), 'micrograph')} of the picks not in "
            f"--micrographs (e.g. {result.unlisted[0]}): named <stem>.mrc, which RELION and "
            "cryoSPARC will not match",
            err=True,
        )
    exit_batch(result.n_inputs, result.n_failed, result.failure_log)
