"""Pick particles with a DRACO-encoder centre-heatmap detector; train or fine-tune it.

Examples:
    draco pick predict MotionCorr/job002/*.mrc -o picks/ --diameter 250 --format star,box,cs
    draco pick train --micrographs mics/ --coords manual/ --diameter 250 -o runs/pick1 \
        --weights bundled --finetune-blocks 2 --epochs 20
    draco pick predict mics/ -o picks_ft/ --model runs/pick1
    draco pick calibrate --micrographs val/ --coords val_picks/ --diameter 250 -o runs/cal
    draco pick predict mics/ -o picks/ --diameter 250 --exclude-by-curation bundled \
        --exclude-classes contamination,carbon_only
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, comma_list, example, exit_batch, halves_note
from draco_em.errors import counted
from draco_em.pick.config import (
    DEFAULT_TTA,
    DetectorConfig,
    PickCalibrateConfig,
    PickPredictConfig,
    PickTrainConfig,
)

pick_app = typer.Typer(
    help="Particle picking: predict, train, calibrate the threshold.", no_args_is_help=True
)
app.add_typer(pick_app, name="pick")


#: `--invert-y` of pick train and pick calibrate (labels that count y from the bottom row).
InvertY = Annotated[
    bool,
    typer.Option(
        help="The labels count y from the bottom row (y -> ny-1-y), as some .box writers do "
        "(pick train warns when the labels sit on particles only when flipped)."
    ),
]


@pick_app.command(
    "predict",
    epilog=example(
        "draco pick predict sim/micrographs.star -o picks/ --diameter 150 --format star,box,cs"
    ),
)
def pick_predict(
    # readable=False: an unreadable micrograph is one failure in failures.txt, not a usage error
    inputs: Annotated[
        list[Path], typer.Argument(help="Micrographs, folders, globs or a STAR.", readable=False)
    ],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Picker run folder/file or 'bundled'.")] = "bundled",
    diameter: Annotated[float | None, typer.Option(help="Particle diameter in Å.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Score cut-off in [0, 1] (default: the picker's stored threshold; its lower "
            "one on micrographs that look pre-denoised)."
        ),
    ] = None,
    expected_particles: Annotated[
        int | None,
        typer.Option(help="Particles per micrograph, roughly: keep each one's N best picks."),
    ] = None,
    diameter_scales: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated multiples of --diameter to pick at (e.g. 1,0.85 for "
            "a diameter quoted as a box size); picks pooled, one per particle. 'auto': one "
            "multiple (1, 0.85 or 0.7) for the data set, chosen on its first 8 micrographs "
            "(default for the bundled picker; a trained one uses its own)."
        ),
    ] = None,
    tta: Annotated[
        int,
        typer.Option(help="Test-time views: scores averaged over 1, 2, 4 or 8 flips/transposes."),
    ] = DEFAULT_TTA,
    fmt: Annotated[str, typer.Option("--format", help="star,box,topaz,cs")] = "star",
    pixel_size: Annotated[
        float | None, typer.Option(help="Input Å/px (default: STAR row, else header).")
    ] = None,
    box_size: Annotated[int | None, typer.Option(help=".box edge in px.")] = None,
    exclude_masks: Annotated[
        Path | None, typer.Option(help="Folder of <stem>.mrc masks; no picks where > 0.5.")
    ] = None,
    exclude_by_curation: Annotated[
        str | None,
        typer.Option(help="Curation model (bundled or RUNDIR): no picks on tiles it flags."),
    ] = None,
    exclude_classes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated curation classes (default: those of contamination, carbon "
            "and carbon_only the model has)."
        ),
    ] = None,
    exclude_threshold: Annotated[
        float, typer.Option(help="Exclude a tile when P(those classes) >= this.")
    ] = 0.5,
    previews: Annotated[bool, typer.Option(help="Overlay PNGs + score histogram.")] = True,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda[:N].")] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Pick every micrograph again (needed when the settings changed).")
    ] = False,
    recut: Annotated[
        bool,
        typer.Option(
            help="Cut finished micrographs again at a new --threshold / --expected-particles "
            "from their stored candidates (no network pass: seconds; others are picked)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Pick particles; write RELION STARs + index, and .box / Topaz / cryoSPARC files."""
    from draco_em.pick.run import predict_all

    cfg = PickPredictConfig(
        inputs=inputs, outdir=outdir, model=model, diameter=diameter, threshold=threshold,
        expected_particles=expected_particles, formats=comma_list(fmt) or [], pixel_size=pixel_size,
        diameter_scales=_scales(diameter_scales), tta=tta,
        box_size=box_size, exclude_masks=exclude_masks, exclude_by_curation=exclude_by_curation,
        exclude_classes=comma_list(exclude_classes), exclude_threshold=exclude_threshold,
        previews=previews, device=device, overwrite=overwrite, recut=recut,
    )  # fmt: skip
    curation, head = None, None
    if cfg.exclude_by_curation:  # curate and pick do not import each other: joined here
        from draco_em.cli._join import exclusion_by_curation

        curation, head = exclusion_by_curation(
            cfg.exclude_by_curation, cfg.exclude_classes, cfg.exclude_threshold, cfg.device
        )
    s = predict_all(cfg, progress=not quiet, curation=curation, curation_stamp=head)
    typer.echo(
        f"{counted(s['picks'], 'pick')} on {counted(s['micrographs'], 'micrograph')} ("
        + (
            f"threshold {s['threshold']:.3f}"
            if s["expected_particles"] is None
            else f"the {s['expected_particles']} best per micrograph"
        )
        + f", diameter {s['diameter']:g} Å"
        + ("" if s["multiplier"] is None else f" {s['multiplier']}")
        + f") → {s['outdir']}"
        + (
            f"; {s['predenoised_micrographs']} looked pre-denoised: threshold "
            f"{s['threshold_predenoised']:.3f} there"
            if s["predenoised_micrographs"] and s["expected_particles"] is None
            else ""
        )
        + ("" if s["excluded"] is None else f"; {s['excluded']} dropped (excluded_picks.txt)")
        + (
            ""
            if s["recut"] is None
            else f"; {s['recut']} cut again from their candidates, "
            f"{s['micrographs'] - s['recut']} picked"
        )
        + halves_note(s["halves_skipped"])
        + (f"; {s['failed']} failed (failures.txt)" if s["failed"] else "")
    )
    for warning in s["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    exit_batch(s["micrographs"] + s["failed"], s["failed"], cfg.outdir / "failures.txt")


def _scales(text: str | None) -> list[str] | str | None:
    """``--diameter-scales``: 'auto', the comma-separated multiples (pydantic checks them), or
    None (the picker's default)."""
    if text is None:
        return None
    return "auto" if text.strip().lower() == "auto" else comma_list(text) or ["1"]


@pick_app.command(
    "train",
    epilog=example(
        "draco pick train --micrographs sim/micrographs --coords sim/coordinates "
        "--diameter 150 -o runs/pick1 --weights bundled --epochs 20"
    ),
)
def pick_train(
    micrographs: Annotated[list[Path], typer.Option(help="Micrographs/folders/globs/STAR.")],
    coords: Annotated[list[Path], typer.Option(help="Coordinate files or folders.")],
    diameter: Annotated[float, typer.Option(help="Particle diameter in Å.")],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Run folder.")],
    weights: Annotated[
        str | None,
        typer.Option(
            help="Start from: picker run/file, 'bundled' (the general picker), or a "
            "DRACO encoder (.safetensors/.pth, or a pretrain run folder; default: random)."
        ),
    ] = None,
    finetune_blocks: Annotated[int, typer.Option(help="Last encoder blocks trained.")] = 2,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 30,
    crops_per_epoch: Annotated[int, typer.Option(help="Random crops per epoch.")] = 64,
    expected_particles: Annotated[
        float | None,
        typer.Option(
            help="Expected particles per micrograph: the PU prior, and the stored threshold "
            "by the PU-corrected F1 (incomplete labels)."
        ),
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option(help="Input Å/px (default: STAR row, else header).")
    ] = None,
    invert_y: InvertY = False,
    junk_masks: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of <stem>.mrc masks, 1 = junk (known negatives); repeatable."),
    ] = None,
    junk_weight: Annotated[float, typer.Option(help="Weight of the junk-mask loss.")] = 1.0,
    negatives: Annotated[
        list[Path] | None,
        typer.Option(
            help="Micrographs with no particle (empty holes, bare carbon, ice only): every "
            "pixel a known negative; files, folders, globs or a STAR list; repeatable."
        ),
    ] = None,
    val_micrographs: Annotated[
        list[Path] | None,
        typer.Option(help="Validation micrographs (picks in --coords) instead of a random 20 %."),
    ] = None,
    background_sigma: Annotated[
        float,
        typer.Option(
            help="New pickers: subtract a Gaussian blur of σ diameters (0 = off; "
            "a picker given to --weights keeps its own)."
        ),
    ] = 1.0,
    auto_scale: Annotated[
        bool,
        typer.Option(
            help="Starting from a picker: train at the multiple (1, 0.85, 0.7) of --diameter "
            "it is most confident at on these micrographs; the run then always picks at it."
        ),
    ] = False,
    refit: Annotated[
        str,
        typer.Option(
            help="none (default) | density | score: after choosing the threshold on the "
            "held-out micrograph(s), train again on every labelled one and keep the same pick "
            "density (density) or the same cut-off (score). A second fine-tune (+60 %)."
        ),
    ] = "none",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda[:N].")] = "auto",
    resume: Annotated[
        str | None,
        typer.Option(
            help="latest: continue the interrupted run in -o from its checkpoint (saved after "
            "each epoch); give the run's other options unchanged."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress bar or per-epoch lines.")
    ] = False,
) -> None:
    """Train a picker (positive-unlabelled loss: partial labels are fine). An interrupted run
    goes on with the same command and --resume latest."""
    from draco_em.pick.train import train_picker

    cfg = PickTrainConfig(
        micrographs=micrographs, coords=coords, diameter=diameter, outdir=outdir,
        weights=weights, finetune_blocks=finetune_blocks, epochs=epochs,
        crops_per_epoch=crops_per_epoch, expected_particles=expected_particles,
        pixel_size=pixel_size, junk_masks=junk_masks or [], junk_weight=junk_weight,
        negatives=negatives or [], val_micrographs=val_micrographs or [], auto_scale=auto_scale,
        refit=refit, seed=seed, device=device, invert_y=invert_y, resume=resume,
    )  # fmt: skip

    path = train_picker(
        cfg, detector_config=DetectorConfig(background_sigma=background_sigma), progress=not quiet
    )
    typer.echo(f"picker written to {path}")


@pick_app.command(
    "calibrate",
    epilog=example(
        "draco pick calibrate --micrographs mics/ --coords manual/ -o runs/pick1_cal "
        "--model runs/pick1"
    ),
)
def pick_calibrate(
    micrographs: Annotated[list[Path], typer.Option(help="Micrographs/folders/globs/STAR.")],
    coords: Annotated[list[Path], typer.Option(help="Their picks: files or folders.")],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="New run folder.")],
    model: Annotated[str, typer.Option(help="Picker run folder/file or 'bundled'.")] = "bundled",
    diameter: Annotated[
        float | None, typer.Option(help="Particle diameter in Å (default: the picker's).")
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option(help="Input Å/px (default: STAR row, else header).")
    ] = None,
    invert_y: InvertY = False,
    expected_particles: Annotated[
        float | None,
        typer.Option(help="Expected particles per micrograph (incomplete labels: PU F1)."),
    ] = None,
    logit_shift: Annotated[
        float, typer.Option(help="Store sigmoid(logit(t) - shift): > 0 lowers the threshold.")
    ] = 0.0,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Re-choose a picker's stored threshold on labelled micrographs (no training); writes a
    new picker (best-F1 plateau middle, as pick train; matched within half a diameter)."""
    from draco_em.pick.calibrate import run_calibrate

    cfg = PickCalibrateConfig(
        model=model, micrographs=micrographs, coords=coords, outdir=outdir, diameter=diameter,
        pixel_size=pixel_size, logit_shift=logit_shift, device=device,
        expected_particles=expected_particles, invert_y=invert_y,
    )  # fmt: skip
    r = run_calibrate(cfg, progress=not quiet)
    v = r["validation"]
    at = v.get("at_threshold") or {"f1": 0.0}
    pu = " by the PU-corrected F1" if "labelled_fraction" in v else ""
    pu_f1 = f"PU-corrected F1 {at['f1_pu']:.3f} at it, " if "f1_pu" in at else ""
    scale = f"{r['diameter']:g} Å"
    if r["scale_chosen"]:
        scale += f" × {r['multiplier']:g} chosen from the data (kept in the picker)"
    elif r["multiplier"] != 1.0:
        scale += f" × {r['multiplier']:g} (the picker's own multiple)"
    typer.echo(
        f"threshold {r['stored']:.3f} (chosen {r['chosen']:.3f}{pu}; the picker's was "
        f"{r['previous']:.3f}) on {v['micrographs']} micrographs at diameter {scale}: {pu_f1}"
        f"F1 {at['f1']:.3f} at it against the labels (best {v['best_f1']:.3f}), AP "
        f"{v['ap']:.3f} → {r['path']}"
    )
