"""Score results against ground truth (simulated data) or, for denoising, on real data too.

Each prints its scores (``--json``: as JSON) and with ``-o FILE`` writes them to FILE, JSON or
CSV by its suffix (``realism``: ``-o`` is a folder, for its ``realism.json`` and figure).

Example:
    draco evaluate denoise --pred denoised/ --clean sim/clean --coords sim/coordinates -o s.csv
    draco evaluate curate --pred curate/curation.csv --truth sim/micrographs.star
    draco evaluate pick --pred picks/ --truth sim/coordinates --radius 60
    draco evaluate realism --sim sim/micrographs.star --real real/*.jpg --pixel-size 1.77 -o out/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example
from draco_em.evaluate.results import check_results_path, json_text, write_results

evaluate_app = typer.Typer(help="Score results against ground truth.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")

#: ``-o FILE`` of every evaluate command that prints scores.
ResultsFile = Annotated[
    Path | None,
    typer.Option("-o", "--out", help="Also write the results to FILE: .json, or .csv (a table)."),
]


def _report(
    result: dict, text: str, as_json: bool, out: Path | None, rows: list | None = None
) -> None:
    """Print ``text`` (or the JSON with --json) and write the results to ``-o FILE``."""
    if out is not None:
        write_results(out, result, rows)
    typer.echo(json_text(result) if as_json else text)
    if out is not None:
        typer.echo(f"results written to {out}", err=True)


def _check_out(out: Path | None, *inputs: Path | None) -> None:
    """Refuse a bad ``-o FILE`` before the work, not after it."""
    if out is not None:
        check_results_path(out, inputs)


@evaluate_app.command(
    "denoise",
    epilog=example(
        "draco evaluate denoise --pred denoised/ --raw mics/ --coords picks/ --diameter 150 "
        "--pixel-size 1.06 --pairs pairs.json -o scores.csv"
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
    pixel_size: Annotated[
        float | None, typer.Option(help="Å/px of the micrographs (default: the raw/clean header).")
    ] = None,
    radius: Annotated[float | None, typer.Option(help="SNR disk radius in micrograph px.")] = None,
    exclusion: Annotated[
        float | None, typer.Option(help="Min px from a background disk to any particle centre.")
    ] = None,
    n_pairs: Annotated[int, typer.Option(help="Region pairs per micrograph.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed choosing the particles of the pairs.")] = 0,
    pairs: Annotated[
        Path | None, typer.Option(help="Region-pairs JSON: reused if present, else written.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    out: ResultsFile = None,
) -> None:
    """PSNR, SSIM, FRC vs --clean; the paper's SNR (Eq. 11) from --coords; EVN/ODD half FRC.

    Simulated data: --clean sim/clean scores against the noise-free images (stacks and tilt
    series section by section). Real micrographs (no clean image): --raw with --coords, as in
    the example; coordinates are in the micrographs' pixels (--pixel-size says where they fall
    on a --keep-binned prediction).
    """
    from draco_em.evaluate.denoise import (
        EvaluateDenoiseConfig,
        count_line,
        csv_rows,
        evaluate_denoise,
        format_table,
    )

    _check_out(out, pairs)
    cfg = EvaluateDenoiseConfig(
        pred=pred, clean=clean, raw=raw, coords=coords, masks=masks, diameter=diameter,
        pixel_size=pixel_size, radius=radius, exclusion=exclusion, n_pairs=n_pairs, seed=seed,
        pairs=pairs,
    )  # fmt: skip
    result = evaluate_denoise(cfg)
    name = pred.name or str(pred)
    lines = [format_table({name: result}), count_line(result)]
    if result["unscored"]:
        first = ", ".join(result["unscored"][:3])
        lines.append(f"{len(result['unscored'])} predictions not scored (not an image, or no "
                     f"clean image, coordinates or halves of the same name): {first}")  # fmt: skip
    _report(result, "\n".join(lines), as_json, out, csv_rows(result, name))


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
    out: ResultsFile = None,
) -> None:
    """Precision, recall, F1 (one-to-one, greedy by score, within the radius) and AP."""
    from draco_em.evaluate import pick as metrics

    _check_out(out, pred, truth)
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
    _report(result, metrics.format_result(result), as_json, out)


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
    out: ResultsFile = None,
) -> None:
    """Accuracy, precision, recall, F1 (accept = positive) and the confusion matrix."""
    from draco_em.evaluate.curate import EvaluateCurateConfig, evaluate_curate, format_report

    _check_out(out, pred, truth)
    names = [a.strip() for a in accept.split(",") if a.strip()]
    cfg = EvaluateCurateConfig(pred=pred, truth=truth, label_column=label_column, accept=names)
    result = evaluate_curate(cfg)
    _report(result, format_report(result), as_json, out)


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
    model: Annotated[
        str, typer.Option(help="DRACO encoder for the feature distance: bundled, a file or a run.")
    ] = "bundled",
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
        common_pixel_size=common_pixel_size, model=model, features=features, device=device,
    )  # fmt: skip
    result = measure.evaluate_realism(cfg, progress=not quiet)
    typer.echo(measure.format_verdicts(result))
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
