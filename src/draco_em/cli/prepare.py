"""Turn raw movies or motion-corrected micrographs into training triplets and a manifest.

Example:
    draco prepare sim/movies -o triplets/ --gain sim/gain.mrc --dose-per-frame 1.0 -j 2
    draco prepare Movies/*.eer -o triplets/ --gain gain.tiff --eer-grouping 20 --patches 5x5
    draco prepare MotionCorr/job002/corrected_micrographs.star -o triplets/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example, exit_batch


@app.command(
    epilog=example(
        "draco prepare sim/movies -o triplets/ --gain sim/gain.mrc --dose-per-frame 1.0 -j 2"
    ),
)
def prepare(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Movies, micrographs (with _EVN/_ODD halves), folders, globs, STAR."),
    ],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Output folder (resumable).")],
    gain: Annotated[Path | None, typer.Option(help="Gain reference (MRC/TIFF).")] = None,
    gain_rotate: Annotated[int, typer.Option(help="Gain rotation, N × 90° (RELION).")] = 0,
    gain_flip: Annotated[str | None, typer.Option(help="Gain flip: x or y (RELION).")] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(help="Movie pixel size in Å (default: STAR, header); EER: the physical one."),
    ] = None,
    dose_per_frame: Annotated[float | None, typer.Option(help="e⁻/Å² per frame.")] = None,
    eer_grouping: Annotated[int | None, typer.Option(help="Raw EER frames per frame.")] = None,
    eer_upsampling: Annotated[int, typer.Option(help="EER grid: 1, 2 or 4 (super-res).")] = 1,
    hot_pixels: Annotated[bool, typer.Option(help="Replace hot pixels found in each sum.")] = True,
    target_pixel_size: Annotated[
        float | None,
        typer.Option(help="Output pixel size in Å (default: the bundled model's; 0: no crop)."),
    ] = None,
    patches: Annotated[
        str, typer.Option(help="Local motion grid, e.g. 5x5; 1x1 = global.")
    ] = "1x1",
    dose_weighting: Annotated[bool, typer.Option(help="Dose-weight the full sum.")] = False,
    float16: Annotated[
        bool, typer.Option(help="Write float16 MRC (mode 12: RELION 3.1 refuses it).")
    ] = False,
    jobs: Annotated[int, typer.Option("-j", "--workers", help="CPU worker processes.")] = 1,
    device: Annotated[
        str, typer.Option(help="auto, cpu or cuda (torchrun: one per GPU).")
    ] = "auto",
    voltage: Annotated[
        float | None,
        typer.Option(help="kV, for the manifest's optics (default: the input STAR's, else 300)."),
    ] = None,
    cs: Annotated[
        float | None,
        typer.Option(help="Spherical aberration in mm (default: the STAR's, else 2.7)."),
    ] = None,
    amplitude_contrast: Annotated[
        float | None, typer.Option(help="Amplitude contrast (default: the STAR's, else 0.1).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Align movies, write <name>.mrc, <name>_EVN.mrc, <name>_ODD.mrc and triplets.star."""
    from draco_em.prepare.run import PrepareConfig, run_prepare  # one lazy import (torch)

    cfg = PrepareConfig(
        inputs=inputs, outdir=outdir, gain=gain, gain_rotate=gain_rotate, gain_flip=gain_flip,
        pixel_size=pixel_size, dose_per_frame=dose_per_frame, eer_grouping=eer_grouping,
        eer_upsampling=eer_upsampling, hot_pixels=hot_pixels,
        target_pixel_size=target_pixel_size, patches=patches, dose_weighting=dose_weighting,
        float16=float16, jobs=jobs, device=device, voltage=voltage, spherical_aberration=cs,
        amplitude_contrast=amplitude_contrast,
    )  # fmt: skip
    summary = run_prepare(cfg, progress=not quiet)
    if not summary.is_main:  # torchrun/srun: rank 0 reports (and exits by) every rank's inputs
        return
    if summary.manifest is not None:
        typer.echo(
            f"{summary.made} prepared, {summary.skipped} already there, {summary.failed} "
            f"failed; manifest: {summary.manifest}"
        )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    n_inputs = summary.made + summary.skipped + summary.failed
    exit_batch(n_inputs, summary.failed, cfg.outdir / "failures.txt")
