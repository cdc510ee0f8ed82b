"""Curate micrographs: accept or reject each, with the reason, from DRACO encoder features.

Example:
    draco curate predict MotionCorr/job002/corrected_micrographs.star -o curate/
    draco curate train --labels sim/micrographs.star -o runs/curator --epochs 100
    draco curate predict mics/*.mrc -o curate/ --model runs/curator --threshold 0.7
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import typer

from draco_em.cli._app import app, comma_list, example, exit_batch, first_failure, halves_note
from draco_em.curate.config import (
    TRAIN_BLOCKS,
    CuratePredictConfig,
    CurateTrainConfig,
    FeatureConfig,
    SignalRules,
    TrainBlocks,
)
from draco_em.curate.spread import batch_warning, reject_reasons

curate_app = typer.Typer(
    help="Accept or reject micrographs (thick/crystalline ice, contamination, drift, empty, "
    "carbon) with a linear head on DRACO features.",
    no_args_is_help=True,
)
app.add_typer(curate_app, name="curate")

#: ``--features`` choices (typer checks them: a wrong value is one line and exit 2).
Blocks = Enum("Blocks", {b: b for b in get_args(TrainBlocks)}, type=str)  # type: ignore[misc]


@curate_app.command(
    "train",
    epilog=example("draco curate train --labels sim/micrographs.star -o runs/curator --epochs 100"),
)
def curate_train(
    labels: Annotated[
        Path, typer.Option(help="Micrographs STAR with labels, or CSV micrograph,label.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    weights: Annotated[
        str, typer.Option(help="DRACO encoder: file, pretrain run or 'bundled'.")
    ] = "bundled",
    epochs: Annotated[int, typer.Option(help="L-BFGS iterations (epochs with --finetune).")] = 100,
    finetune: Annotated[int, typer.Option(help="Also train the last N encoder blocks.")] = 0,
    label_column: Annotated[str | None, typer.Option(help="Column with the labels.")] = None,
    micrographs: Annotated[
        Path | None,
        typer.Option(help="Folder where a CSV's bare names (no extension) are looked for."),
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names (default: from the labels).")
    ] = None,
    accept: Annotated[str, typer.Option(help="Comma-separated classes that mean accept.")] = "good",
    pixel_size: Annotated[float | None, typer.Option(help="Pixel size in Å of all inputs.")] = None,
    tile: Annotated[int, typer.Option(help="Tile side in px at the working pixel size.")] = 64,
    tile_quantile: Annotated[
        float, typer.Option(help="Upper quantile pooled over tiles (1 = their maximum).")
    ] = 0.95,
    spectrum: Annotated[
        bool,
        typer.Option(
            "--spectrum/--no-spectrum",
            help="Append 8 whole-micrograph power-spectrum features (off: the paper's head).",
        ),
    ] = True,
    features: Annotated[
        Blocks,
        typer.Option(
            help="What the head reads: encoder (pooled DRACO tokens), stats (whole-image "
            "statistics, no encoder pass), both, or auto (the one that cross-validates best "
            "on your labels; the reported cross-validation is then nested)."
        ),
    ] = Blocks(TRAIN_BLOCKS),
    particles: Annotated[
        bool,
        typer.Option(
            "--particles/--no-particles",
            help="Append the bundled picker's particle evidence (8 values: how much of the "
            "field particle-shaped blots cover at 100, 180 and 320 Å; ~1-3 s per micrograph, "
            "cached; needs the pixel size).",
        ),
    ] = False,
    cv: Annotated[
        str,
        typer.Option(
            help="Cross-validation reported in run.log/summary.json: auto (leave-one-out up to "
            "60 micrographs, else 5-fold), loo, or a number of folds (0: off)."
        ),
    ] = "auto",
    l2: Annotated[
        str,
        typer.Option(
            help="L2 penalty of the linear head (frozen fit), or auto: chosen from "
            "1e-3/1e-2/0.1/1 by cross-validation on your labels (nested inside --cv)."
        ),
    ] = "0.001",
    regions: Annotated[
        bool,
        typer.Option(
            help="Also train the per-tile region head from the STAR's _dracoRegions masks "
            "(draco simulate --region-masks), used by draco pick predict --exclude-by-curation."
        ),
    ] = False,
    val_fraction: Annotated[float, typer.Option(help="Share of labels held out.")] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a curation head on labelled micrographs (features are cached in RUNDIR)."""
    from draco_em.cli._join import train_curation

    cfg = CurateTrainConfig(
        labels=labels,
        out_dir=out_dir,
        weights=weights,
        epochs=epochs,
        finetune=finetune,
        label_column=label_column,
        micrographs=micrographs,
        classes=comma_list(classes),
        accept=comma_list(accept) or [],
        pixel_size=pixel_size,
        features=FeatureConfig(
            tile=tile,
            tile_quantile=tile_quantile,
            spectrum=spectrum,
            blocks=features.value,
            particles=particles,
        ),
        cv=int(cv) if cv.lstrip("-").isdigit() else cv,
        l2=l2,  # pydantic parses the number (or "auto")
        regions=regions,
        val_fraction=val_fraction,
        device=device,
        progress=not quiet,
    )
    s = train_curation(cfg)
    acc = ", ".join(f"{k} {s[k]:.3f}" for k in ("train_accuracy", "val_accuracy") if k in s)
    if "cv" in s:
        acc += (
            f"; cross-validation ({s['cv']['folds']}): balanced accuracy "
            f"{s['cv']['balanced_accuracy']:.3f} (per class in run.log)"
        )
    typer.echo(
        f"trained on {s['n_used']} micrographs, classes {s['classes']}; {acc}; "
        f"{s['seconds']} s → {out_dir / 'curator.safetensors'}"
    )
    if s["n_used"] < s["n_labelled"]:  # a label set is small: every dropped one matters
        log_path = out_dir / "failures.txt"
        first = first_failure(log_path)
        typer.echo(
            f"warning: {s['n_labelled'] - s['n_used']} of {s['n_labelled']} labelled micrographs "
            f"could not be used"
            + (f" (the first: {first})" if first else "")
            + f"; listed in {log_path}",
            err=True,
        )


@curate_app.command(
    "predict",
    epilog=example(
        "draco curate predict sim/micrographs.star -o curate/ --model runs/curator --threshold 0.7"
    ),
)
def curate_predict(
    inputs: Annotated[
        list[str], typer.Argument(help="Micrographs: files, globs, folders or a STAR.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Run folder, curator file or 'bundled'.")] = "bundled",
    weights: Annotated[str | None, typer.Option(help="Use this encoder instead.")] = None,
    threshold: Annotated[float, typer.Option(help="Accept when P(accept) >= this.")] = 0.5,
    pixel_size: Annotated[float | None, typer.Option(help="Pixel size in Å of all inputs.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    signals: Annotated[
        bool,
        typer.Option("--signals/--no-signals", help="Use the STAR's motion/CTF/ice columns."),
    ] = True,
    max_motion: Annotated[
        float, typer.Option(help="Reject (drift) above this accumulated motion, Å (0: off).")
    ] = 100.0,
    max_ctf_resolution: Annotated[
        float, typer.Option(help="Reject (ctf_fit) when the CTF fit is worse, Å (0: off).")
    ] = 10.0,
    defocus_range: Annotated[
        tuple[float, float],
        typer.Option(help="Reject (defocus) outside MIN MAX µm (0 0: off)."),
    ] = (0.1, 8.0),
    max_astigmatism: Annotated[
        float, typer.Option(help="Reject (astigmatism) above |dU-dV| µm (0: off, default).")
    ] = 0.0,
    max_ice_ring_density: Annotated[
        float,
        typer.Option(help="Reject (thick_ice) above this rlnCtfIceRingDensity (0: off, default)."),
    ] = 0.0,
    previews: Annotated[
        bool,
        typer.Option(help="Write previews/<stem>.png: each micrograph beside its power spectrum."),
    ] = False,
    voltage: Annotated[
        float | None,
        typer.Option(help="kV in the STAR lists' optics block, for plain-file inputs (300)."),
    ] = None,
    cs: Annotated[
        float | None,
        typer.Option(help="Spherical aberration in mm, for plain-file inputs (2.7)."),
    ] = None,
    amplitude_contrast: Annotated[
        float | None, typer.Option(help="Amplitude contrast, for plain-file inputs (0.1).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score micrographs; write accepted/rejected STARs and text lists, curation.csv, PNGs.

    With a STAR input its motion (rlnAccumMotionTotal, draco prepare's motion), CTF fit
    resolution, defocus and ice columns are checked against the thresholds too
    (docs/curation.md; `draco docs curation`).
    """
    from draco_em.cli._join import predict_curation_with_evidence

    cfg = CuratePredictConfig(
        inputs=inputs,
        out_dir=out_dir,
        model=model,
        weights=weights,
        threshold=threshold,
        pixel_size=pixel_size,
        device=device,
        progress=not quiet,
        previews=previews,
        voltage=voltage,
        spherical_aberration=cs,
        amplitude_contrast=amplitude_contrast,
        signals=SignalRules(
            enabled=signals,
            max_motion=max_motion or None,
            max_ctf_resolution=max_ctf_resolution or None,
            defocus_range=defocus_range if any(defocus_range) else None,
            max_astigmatism=max_astigmatism or None,
            max_ice_ring_density=max_ice_ring_density or None,
        ),
    )
    res = predict_curation_with_evidence(cfg)
    decisions, reasons = list(res.table["decision"]), list(res.table["reason"])
    n_acc = decisions.count("accept")
    n_sig = int((res.table["decided_by"] != "image").sum())
    why = ", ".join(f"{r} {n}" for r, n in reject_reasons(decisions, reasons))
    typer.echo(
        f"{n_acc} accepted, {len(res.table) - n_acc} rejected ({n_sig} by STAR signals"
        + (f"; {why}" if why else "")
        + f"), {res.n_failed} failed; table: {res.outputs['csv']}"
        + halves_note(res.halves_skipped)
    )
    for warning in (batch_warning(decisions, reasons), *res.warnings):
        if warning:
            typer.echo(f"warning: {warning}", err=True)
    exit_batch(len(res.table) + res.n_failed, res.n_failed, cfg.out_dir / "failures.txt")
