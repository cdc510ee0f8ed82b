"""Score results against ground truth (simulated data) or, for denoising, on real data too.

Example:
    draco evaluate denoise --pred denoised/ --clean sim/clean --coords sim/coordinates --json
    draco evaluate curate --pred curate/curation.csv --truth sim/micrographs.star
    draco evaluate pick --pred picks/ --truth sim/coordinates --radius 60
    draco evaluate realism --sim sim/micrographs.star --real real/*.jpg --pixel-size 1.77 -o out/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example

evaluate_app = typer.Typer(help="Score results against ground truth.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command(
    "denoise",
    epilog=example(
        "draco evaluate denoise --pred denoised/ --raw mics/ --coords picks/ --diameter 150 "
        "--pixel-size 1.06 --pairs pairs.json"
    ),
)
def evaluate_denoise(
    pred: Annotated[Path, typer.Option(help="Folder of denoised images (X_EVN/X_ODD: halves).")],
    clean: Annotated[
        Path | None, typer.Option(help="Folder of noise-free images (simulated sets).")
    ] = None,
    raw: Annotated[Path | None, typer.Option(help="Folder of the raw inputs (a raw row).")] = None,
    coords: Annotated[
        Path | None,
        typer.Option(help="Coordinates for Eq. 11: a folder of per-micrograph files or one file."),
    ] = None,
    masks: Annotated[
        Path | None, typer.Option(help="Contamination maps (>0.5) that disks avoid.")
    ] = None,
    diameter: Annotated[float | None, typer.Option(help="Particle diameter in Å.")] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Override header Å/px.")] = None,
    radius: Annotated[float | None, typer.Option(help="SNR disk radius in px.")] = None,
    exclusion: Annotated[
        float | None, typer.Option(help="Min px from a background disk to any particle centre.")
    ] = None,
    n_pairs: Annotated[int, typer.Option(help="Region pairs per micrograph.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed choosing the particles of the pairs.")] = 0,
    pairs: Annotated[
        Path | None, typer.Option(help="Region-pairs JSON: reused if present, else written.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """PSNR, SSIM, FRC vs --clean; the paper's SNR (Eq. 11) from --coords; EVN/ODD half FRC.

    Simulated data: --clean sim/clean scores against the noise-free images. Real micrographs
    (no clean image): --raw with --coords, as in the example.
    """
    from draco_em.evaluate.denoise import (
        EvaluateDenoiseConfig,
        dump_json,
        evaluate_denoise,
        format_table,
    )

    cfg = EvaluateDenoiseConfig(
        pred=pred, clean=clean, raw=raw, coords=coords, masks=masks, diameter=diameter,
        pixel_size=pixel_size, radius=radius, exclusion=exclusion, n_pairs=n_pairs, seed=seed,
        pairs=pairs,
    )  # fmt: skip
    result = evaluate_denoise(cfg)
    if as_json:
        typer.echo(dump_json(result))
    else:
        typer.echo(format_table({pred.name or str(pred): result}))
        typer.echo(f"({result['n']} micrographs)")
        if result["unscored"]:
            first = ", ".join(result["unscored"][:3])
            typer.echo(f"{len(result['unscored'])} predictions not scored (no clean image, "
                       f"coordinates or halves of the same name): {first}")  # fmt: skip


@evaluate_app.command(
    "pick",
    epilog=example(
        "draco evaluate pick --pred picks/coordinates --truth sim/coordinates --diameter 250 "
        "--pixel-size 2 --json"
    ),
)
def evaluate_pick(
    pred: Annotated[Path, typer.Option(help="Folder or file of predicted picks.")],
    truth: Annotated[Path, typer.Option(help="Folder or file of true centres.")],
    radius: Annotated[float | None, typer.Option(help="Match radius in px.")] = None,
    diameter: Annotated[
        float | None, typer.Option(help="Particle diameter in Å (radius = d/2; --pixel-size).")
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option(help="Å/px of the micrographs (default: from .cs picks).")
    ] = None,
    diameter_px: Annotated[float | None, typer.Option(help="Particle diameter in px.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Ignore picks scoring below.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision, recall, F1 (one-to-one, greedy by score, within the radius) and AP."""
    from draco_em.evaluate import pick as metrics

    cfg = metrics.EvaluatePickConfig(
        pred=pred,
        truth=truth,
        radius=radius,
        diameter=diameter,
        pixel_size=pixel_size,
        diameter_px=diameter_px,
        threshold=threshold,
    )
    result = metrics.evaluate_pick(cfg)
    typer.echo(metrics.dump_json(result) if as_json else metrics.format_result(result))


@evaluate_app.command(
    "curate",
    epilog=example("draco evaluate curate --pred curate/curation.csv --truth sim/micrographs.star"),
)
def evaluate_curate(
    pred: Annotated[Path, typer.Option(help="curation.csv from `draco curate predict`.")],
    truth: Annotated[Path, typer.Option(help="Labels: micrographs STAR or CSV micrograph,label.")],
    label_column: Annotated[str | None, typer.Option(help="Truth column with the labels.")] = None,
    accept: Annotated[str, typer.Option(help="Comma-separated accept classes.")] = "good",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accuracy, precision, recall, F1 (accept = positive) and the confusion matrix."""
    from draco_em.evaluate.curate import (
        EvaluateCurateConfig,
        dump_json,
        evaluate_curate,
        format_report,
    )

    names = [a.strip() for a in accept.split(",") if a.strip()]
    cfg = EvaluateCurateConfig(pred=pred, truth=truth, label_column=label_column, accept=names)
    result = evaluate_curate(cfg)
    typer.echo(dump_json(result) if as_json else format_report(result))


@evaluate_app.command(
    "realism",
    epilog=example(
        "draco evaluate realism --sim sim/micrographs.star --real real/ --pixel-size 1.77 "
        "-o realism/"
    ),
)
def evaluate_realism(
    sim: Annotated[list[str], typer.Option(help="Simulated micrographs/folder/glob/STAR.")],
    real: Annotated[list[str], typer.Option(help="Real micrographs/folder/glob/STAR.")],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    pixel_size: Annotated[float | None, typer.Option(help="Å/px of the real ones.")] = None,
    sim_pixel_size: Annotated[
        float | None, typer.Option(help="Å/px of the simulated ones (default: header).")
    ] = None,
    common_pixel_size: Annotated[
        float | None,
        typer.Option(help="Compare at this Å/px (default and finest: the coarsest input)."),
    ] = None,
    weights: Annotated[str, typer.Option(help="Encoder weights for the feature distance.")] = (
        "bundled"
    ),
    features: Annotated[bool, typer.Option(help="Compute the encoder-feature distance.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Compare simulated with real micrographs: spectrum, NPS shape, histogram, encoder features.

    Writes OUTDIR/realism.json and OUTDIR/realism.png; prints one verdict line per figure.
    """
    from draco_em.evaluate import realism as measure

    cfg = measure.RealismConfig(
        sim=sim, real=real, outdir=outdir, pixel_size=pixel_size, sim_pixel_size=sim_pixel_size,
        common_pixel_size=common_pixel_size, weights=weights, features=features, device=device,
    )  # fmt: skip
    result = measure.evaluate_realism(cfg, progress=not quiet)
    typer.echo(measure.format_verdicts(result))
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
