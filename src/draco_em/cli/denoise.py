"""Denoise micrographs, MRC stacks and tilt series with a DRACO model.

Inputs are files, globs, folders or a RELION micrographs STAR; outputs keep the input names
inside OUTDIR, plus ``denoised_micrographs.star`` (input columns kept, names replaced).
Runs resume: finished outputs are skipped. Under ``torchrun`` each rank takes its share.

Example:
    draco denoise MotionCorr/job002/micrographs.star -o Denoised/ --png
    draco denoise "mics/*.mrc" -o denoised/ --adapt    # fine-tune on mics/ first (X_EVN/X_ODD)
    draco denoise "mics/*.mrc" -o denoised/ --blend-halves   # calibrate on X_EVN/X_ODD instead
    draco denoise "sums/*.mrc" -o denoised/ --pseudo-halves  # no halves: recorrupt a pair per sum
    torchrun --nproc-per-node 4 -m draco_em denoise "mics/*.mrc" -o denoised/ --device cuda
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from draco_em.cli._app import app, example, exit_batch
from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError, counted


@app.command(epilog=example("draco denoise sim/micrographs.star -o denoised/ --png"))
def denoise(
    inputs: Annotated[list[str], typer.Argument(help="Files, globs, folders or a STAR.")],
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    weights: Annotated[
        str,
        typer.Option(
            "--model", help="bundled (shipped denoiser), .safetensors, .pth or pretrain run"
        ),
    ] = "bundled",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tile: Annotated[int, typer.Option(help="Tile side in px at the working pixel size.")] = 256,
    overlap: Annotated[int | None, typer.Option(help="Tile overlap in px (tile/8).")] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 8,
    shifts: Annotated[int, typer.Option(help="Patch-grid offsets averaged: 1, 2 or 4.")] = 1,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--no-bf16",
            help="Run the model in bf16 (default: on CUDA and on CPUs with AVX512-BF16/AMX).",
        ),
    ] = None,
    keep_binned: Annotated[bool, typer.Option(help="Write at the working pixel size.")] = False,
    float16: Annotated[
        bool,
        typer.Option(help="Write float16 (MRC mode 12: RELION 3.1 refuses it; mrcfile warns)."),
    ] = False,
    png: Annotated[bool, typer.Option(help="Also write 8-bit PNG previews.")] = False,
    skip_existing: Annotated[bool, typer.Option(help="Skip finished outputs (resume).")] = True,
    workers: Annotated[int, typer.Option("-j", "--workers", help="Reader worker processes.")] = 1,
    pixel_size: Annotated[float | None, typer.Option(help="Override header Å/px.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Redo every output (needed when the settings changed).")
    ] = False,
    blend_halves: Annotated[
        bool,
        typer.Option(
            help="Denoise the X_EVN/X_ODD halves instead and blend them with their sum, ring "
            "by ring, weights fitted on the halves (2 model passes; not with --adapt or "
            "--keep-binned)."
        ),
    ] = False,
    pseudo_halves: Annotated[
        bool,
        typer.Option(
            help="As --blend-halves; sums without halves are blended with pseudo-halves "
            "recorrupted from the sum (raw sums in electron counts only; 2 model passes)."
        ),
    ] = False,
    blend_passes: Annotated[
        int,
        typer.Option(
            help="Model passes of --blend-halves / --pseudo-halves: 2, or 1 (the even half "
            "alone, fitted against the odd: about the plain output's time, 0.03–0.30 dB less)."
        ),
    ] = 2,
    adapt: Annotated[
        bool, typer.Option(help="Fine-tune on these micrographs first (OUTDIR/adapt, reused).")
    ] = False,
    adapt_epochs: Annotated[int, typer.Option(help="Adaptation epochs.")] = 4,
    adapt_crops: Annotated[int, typer.Option(help="Adaptation crops per micrograph.")] = 32,
    adapt_blr: Annotated[
        float, typer.Option(help="Adaptation base lr (lr = blr × batch / 256).")
    ] = 2e-3,
    adapt_stage: Annotated[
        str,
        typer.Option(
            help="auto (Noise2Noise on X_EVN/X_ODD where present, else blindspot), denoise, "
            "blindspot or mae (masked reconstruction: blurs)."
        ),
    ] = "auto",
    adapt_blind_radius: Annotated[
        int | None,
        typer.Option(
            help="blindspot: hide this many px around each pixel (correlated noise); default "
            "1 on data upsampled ≥ 1.5× to the model's pixel size, else 0."
        ),
    ] = None,
    adapt_sampling: Annotated[
        str,
        typer.Option(
            help="Data coarser than the model: native (adapt and run at the data's pixel size) "
            "or model (Fourier-upsample to the model's first); auto: the measured default."
        ),
    ] = "auto",
) -> None:
    """Denoise micrographs and stacks (mask ratio 0 over overlapping tiles)."""
    # One import for both paths (train.adapt re-exports DenoiseConfig; infer may not import
    # train, so the adaptation lives there).
    from draco_em.train.adapt import AdaptConfig, DenoiseConfig, denoise_with_adaptation

    cfg = DenoiseConfig(
        inputs=inputs, outdir=outdir, weights=weights, device=device, tile=tile,
        overlap=overlap, batch_size=batch_size, shifts=shifts, bf16=bf16, keep_binned=keep_binned,
        float16=float16, png=png, skip_existing=skip_existing, workers=workers,
        pixel_size=pixel_size, progress=progress and not quiet, overwrite=overwrite,
        blend_halves=blend_halves, pseudo_halves=pseudo_halves, blend_passes=blend_passes,
    )  # fmt: skip
    tune = None
    if adapt:
        try:
            tune = AdaptConfig(
                epochs=adapt_epochs, crops_per_micrograph=adapt_crops, blr=adapt_blr,
                stage=adapt_stage, blind_radius=adapt_blind_radius, sampling=adapt_sampling,
            )  # fmt: skip
        except ValidationError as exc:  # name the --adapt-* option, not the config field
            field = str(exc.errors()[0]["loc"][0])
            option = "crops" if field == "crops_per_micrograph" else field.replace("_", "-")
            msg = str(exc.errors()[0]["msg"])
            raise DracoInputError(f"invalid --adapt-{option}: {msg}") from None
    try:
        result = denoise_with_adaptation(cfg, tune)
    except KeyboardInterrupt:  # Ctrl-C (exit 130): nothing else tells the user it resumes
        # (the adaptation's own note goes to its run.log only).
        kept = f"the adaptation's steps in {outdir / 'adapt' / 'run'}, " if adapt else ""
        typer.echo(f"interrupted: run the same command again to go on ({kept}finished outputs "
                   "are kept)", err=True)  # fmt: skip
        raise
    if not result.get("is_main", True):  # torchrun/srun: rank 0 reports (and exits by) the job
        return
    if "adapt" in result:
        a = result["adapt"]
        how = "reused" if a["reused"] else f"trained in {a['seconds']} s"
        typer.echo(f"adapted ({a['stage']}, {counted(a['micrographs'], 'micrograph')}, {how}; "
                   f"{a['shifts']} shifts) → {a['weights']}")  # fmt: skip
    typer.echo(
        f"denoised {result['done']}, skipped {result['skipped']} finished, "
        f"failed {result['failed']} → {result['outdir']}"
    )
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if result.get("with_halves") and not adapt:
        typer.echo(
            f"note: {counted(result['with_halves'], 'micrograph')} with X_EVN/X_ODD halves: "
            "--blend-halves scored higher on every simulated set with truth "
            f"({doc_ref('denoising')})",
            err=True,
        )
    if (blend_halves or pseudo_halves) and result["done"]:  # a resume that redid nothing: quiet
        _say_blended(result)
    n_inputs = result["done"] + result["skipped"] + result["failed"]
    exit_batch(n_inputs, result["failed"], outdir / "failures.txt")


def _say_blended(result: dict) -> None:
    """How many outputs were blended with real halves, with pseudo-halves, or not at all."""
    parts = [f"blended with their halves: {result['blended']}"]
    if "pseudo" in result:
        parts.append(f"with pseudo-halves: {result['pseudo']}")
        if result["not_counts"]:
            parts.append(f"{result['not_counts']} not raw sums in counts got the plain output "
                         f"(first: {result['not_counts_first']})")  # fmt: skip
    plain = (
        result["done"] - result["blended"] - result.get("pseudo", 0) - result.get("not_counts", 0)
    )
    if plain:
        parts.append(f"{plain} without X_EVN/X_ODD halves got the plain output")
    typer.echo("; ".join(parts))
