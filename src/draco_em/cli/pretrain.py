"""Pretrain a DRACO model on a dataset manifest (stage 1: MAE, stage 2: DRACO loss, then an
optional denoising fine-tune: ``--stage denoise --init-weights RUNDIR``).

Example:
    draco pretrain --data sim/micrographs.star -o runs/tiny --preset tiny --epochs 50

The same command runs under ``torchrun --nproc-per-node 8 -m draco_em.cli pretrain ...`` and
SLURM ``srun``; see docs/training.md. Resume a stopped run with ``draco pretrain -o RUNDIR
--resume latest``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example
from draco_em.errors import DracoInputError


@app.command(
    epilog=example(
        "draco pretrain --data sim/micrographs.star -o runs/tiny --preset tiny --epochs 50"
    ),
)
def pretrain(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Manifest STAR (draco prepare/simulate); with --stage mae also images "
            "(a file, folder or quoted glob; give --pixel-size for PNG/JPEG)."
        ),
    ] = None,
    data_pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="Å/px of --data images when --data is not a STAR."),
    ] = None,
    preset: Annotated[str, typer.Option(help="tiny|small|base|large|huge.")] = "tiny",
    stage: Annotated[
        str,
        typer.Option(help="mae (stage 1), draco (stage 2) or denoise (N2N fine-tune, mask 0)."),
    ] = "draco",
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs (K crops per micrograph each); default 100, or the run's on --resume.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Crops per step per process.")] = 16,
    accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    blr: Annotated[float, typer.Option(help="Base lr; lr = blr × effective batch / 256.")] = 1.5e-4,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up epochs.")] = 5.0,
    mask_ratio: Annotated[
        float | None, typer.Option(help="γ, fraction masked per view (default 0.75, §2).")
    ] = None,
    crops_per_micrograph: Annotated[
        int, typer.Option(help="K crops per micrograph per epoch.")
    ] = 16,
    crop_size: Annotated[int, typer.Option(help="Crop side after resizing (px).")] = 256,
    crop_angstrom: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Crop side range in Å (instead of 1/16-1/4 of the area).", show_default=False
        ),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Micrographs held back for validation.")
    ] = 0.1,
    resume: Annotated[str | None, typer.Option(help="'latest', 'best' or a checkpoint.")] = None,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda.")] = "auto",
    workers: Annotated[
        int, typer.Option("-j", "--workers", help="DataLoader workers per process.")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    init_weights: Annotated[
        Path | None, typer.Option(help="Start from a stage-1 run or weights.")
    ] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="FSDP2 sharding (large/huge).")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    save_every_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", "-q", "--quiet", help="No progress bar.")
    ] = False,
) -> None:
    """Pretrain a DRACO model; writes config.yaml, run.log, metrics.jsonl and checkpoints/."""
    from draco_em.train import (  # torch: when run
        PretrainConfig,
        epoch_line,
        load_checkpoint,
        run_pretrain,
    )

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = dict(ctx.params)
    options["progress"] = not options.pop("no_progress")
    _choice(stage, ("mae", "draco", "denoise"), "stage")
    _choice(device, ("auto", "cpu", "cuda"), "device")
    saved = out_dir / "config.yaml"
    given = [k for k in ctx.params if _typed(ctx, k)]
    given = ["progress" if k == "no_progress" else k for k in given]
    if resume is not None and saved.is_file():
        # Continue the run: its config.yaml plus only the options typed on this command line.
        options = {**PretrainConfig.load(saved).model_dump(), "max_steps": None,
                   **{k: options[k] for k in given}}  # fmt: skip
    elif resume not in (None, "latest", "best") and Path(resume).is_file():
        # --resume PATH.pt -o NEW: the settings its checkpoint records (data among them; they
        # win in train/pretrain.py, _run_config) plus the options typed here, so that only
        # what was typed can be said to be overridden (every default was, before).
        stored = load_checkpoint(resume).get("config") or {}
        if data is None and not stored.get("data"):
            raise DracoInputError("the checkpoint records no --data: give it", resume)
        known = {k: v for k, v in stored.items() if k in PretrainConfig.model_fields}
        options = {**options, **known, "max_steps": None,
                   **{k: options[k] for k in given}, "out_dir": out_dir}  # fmt: skip
    elif data is None:
        raise DracoInputError("--data is required (except to --resume a run with a config.yaml)")
    if options["epochs"] is None:
        options["epochs"] = 100
    if options.get("mask_ratio") is None:  # the one default: model.draco.MASK_RATIO
        options.pop("mask_ratio", None)
    config = PretrainConfig(**options)  # a rejected value: one line, exit 2 (cli.main)
    result = run_pretrain(config)
    if not result.get("is_main", True):  # torchrun/SLURM: the other ranks print nothing
        return
    metrics = result["metrics"]
    last = f": {epoch_line(metrics, config.epochs)}" if "epoch" in metrics else ""
    typer.echo(f"run folder {result['run_dir']}{last}")


def _typed(ctx: typer.Context, name: str) -> bool:
    """True if option ``name`` was given on the command line (or by environment), not defaulted."""
    source = ctx.get_parameter_source(name)  # typer may vendor click: compare by name
    return getattr(source, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")


def _choice(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise DracoInputError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
