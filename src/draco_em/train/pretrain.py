"""Pretrain DRACO: stage 1 (MAE warm-up), stage 2 (DRACO loss, Eq. 5-10) or the denoising
fine-tune (N2N at mask ratio 0, like the released denoiser), from 1 CPU to N GPUs.

Read top to bottom: config → distributed init → data → model → optimiser → resume → loop
(train, validate, checkpoint). The same code runs as one process or under torchrun / srun.

Launch::

    # CPU or one GPU
    draco pretrain --data sim/micrographs.star -o runs/tiny --preset tiny --epochs 50
    # one node, 8 GPUs
    torchrun --standalone --nproc-per-node 8 -m draco_em.cli pretrain --data ... -o runs/b \\
        --preset base
    # 4 nodes x 8 GPUs (run on every node; HOST = first node)
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-id $JOB --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m draco_em.cli pretrain --data ... -o runs/b --preset base
    # SLURM, one task per GPU (rank from SLURM_PROCID)
    srun python -m draco_em.cli pretrain --data ... -o runs/b --preset base
    # resume a killed run exactly
    draco pretrain -o runs/tiny --resume latest
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader

from draco_em.errors import DracoInputError
from draco_em.io.atomic import copy_atomic, remove_stale_temps, write_text_atomic
from draco_em.io.folder_lock import lock_folder, releases_folder_locks
from draco_em.io.run_folder import (
    CONFIG_FILE,
    absolute_name,
    checkpoint_path,
    run_log,
    write_config,
)
from draco_em.runtime import DistContext, cleanup, die_with_parent, init_distributed
from draco_em.train.checkpoint import (
    load_checkpoint,
    resolve_resume,
    restore_checkpoint,
    save_checkpoint,
)
from draco_em.train.config import PretrainConfig
from draco_em.train.data import (
    CropDataset,
    ResumableSampler,
    load_manifest,
    split_train_val,
    working_pixel_range,
)
from draco_em.train.engine import TrainState, evaluate, evaluate_micrographs, train_one_epoch
from draco_em.train.optim import build_optimizer, scaled_lr
from draco_em.train.stage_model import (
    StageModel,
    build_model,
    check_scale,
    shard_model,
    wrap_model,
)

log = logging.getLogger("draco_em.train")
#: Stages trained on the full sums alone (no odd/even halves needed).
FULL_ONLY = ("mae", "blindspot")
#: What an epoch's metrics hold besides its validation (if any).
EPOCH_KEYS = frozenset({"epoch", "step", "seconds"})


@releases_folder_locks
def run_pretrain(
    config: PretrainConfig,
    on_step: Callable[[TrainState, dict], Any] | None = None,
    go_on: str | None = None,
) -> dict[str, Any]:
    """Train (or continue training) a run; returns the last validation metrics, paths
    and ``is_main`` (this process is the rank that reports).

    Args:
        config: the run's settings.
        on_step: optional hook after every optimiser step (tests use it to simulate a crash).
        go_on: how the Ctrl-C line says to continue (default: ``draco pretrain -o RUN
            --resume latest``; ``denoise --adapt`` runs this and goes on by its own command).
    """
    lock_folder(config.out_dir)  # one run per folder (rank 0 for all), before the temp sweep
    _check_new_run(config)  # every rank, before rank 0 can write config.yaml (after the init)
    remove_stale_temps(config.out_dir)  # e.g. checkpoints/.latest.*.tmp.pt of a killed run
    ctx = init_distributed(config.device)
    finished = False
    try:
        log.setLevel(logging.INFO if ctx.is_main else logging.WARNING)
        # run.log from the start, so that what resuming kept or refused is in it too
        with run_log(config.out_dir, log, enabled=ctx.is_main):
            resume = _resume_point(config)
            config = _run_config(config, ctx, resume)
            result = _train(config, ctx, on_step, resume, go_on)
        result["is_main"] = ctx.is_main  # the rank that reports (rank 0)
        finished = True
        return result
    finally:
        cleanup(ctx, wait=finished)  # after a failure, do not wait for ranks that may be gone


@dataclass
class _Data:
    sampler: ResumableSampler
    loader: DataLoader
    val_loader: DataLoader | None
    val_records: list  # held-back micrographs with clean images, scored whole
    sizes: tuple[int, int, int]  # train micrographs, validation micrographs, crops per epoch
    pixel_range: tuple[float, float]  # working pixel size of the crops, Å


@dataclass
class _Optim:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    lr: float
    total_steps: int
    warmup_steps: int


@dataclass
class _Resume:
    path: Path  # the checkpoint
    ckpt: dict[str, Any]  # its contents, loaded once


def _resume_point(config: PretrainConfig) -> _Resume | None:
    """The checkpoint ``--resume`` names, loaded (None: start fresh)."""
    path = resolve_resume(config.out_dir, config.resume)
    return None if path is None else _Resume(path, load_checkpoint(path))


def _train(
    config: PretrainConfig,
    ctx: DistContext,
    on_step: Callable | None,
    resume: _Resume | None,
    go_on: str | None = None,
) -> dict[str, Any]:
    run_dir = config.out_dir
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    data = _data(config, ctx)
    model, model_config, init_range = build_model(config, resume.ckpt if resume else None)
    stage_model = StageModel(model.to(ctx.device), config.stage, config.blind_radius)
    if config.fsdp and ctx.world_size == 1:  # nothing to shard across (fully_shard raised)
        log.warning("--fsdp shards the model across processes; one process trains it whole")
    elif config.fsdp:
        shard_model(stage_model, ctx)
    opt = _optimisation(config, ctx, stage_model, data.sampler.steps_per_epoch)
    state, best = TrainState(), {"metric": None, "value": None}
    if resume is not None:
        ckpt = resume.ckpt
        restore_checkpoint(ckpt, ctx, stage_model, opt.optimizer, opt.scheduler, opt.scaler,
                           prefix="model.")  # fmt: skip
        state = TrainState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"])
        best = ckpt.get("best", best)
        # 1-based, as the progress bar and the interrupt line count epochs
        log.info("resumed from %s at epoch %d, step %d", resume.path, state.epoch + 1,
                 state.global_step)  # fmt: skip
        if ctx.is_main and resume.path == checkpoint_path(run_dir, "latest"):
            _repair_best(run_dir, ckpt, best)
        if ctx.is_main:
            _trim_metrics(run_dir, state.global_step, ckpt.get("val") is not None)
        if state.epoch >= config.epochs:  # _run_config refused fewer epochs than trained
            log.info("the run has trained its %d epochs: nothing to do (a larger --epochs "
                     "trains on)", config.epochs)  # fmt: skip
            return {"metrics": ckpt.get("val") or {}, "state": state, "run_dir": run_dir,
                    "best": best, "model": model}  # fmt: skip
    train_model = wrap_model(stage_model, config, ctx)
    _log_setup(config, ctx, data, opt)
    check_scale(config, init_range, data.pixel_range)
    px = data.pixel_range
    extra = {"config": config.model_dump(mode="json"), "model_config": model_config.model_dump(),
             "pixel_size_range": list(px), "pixel_size": math.sqrt(px[0] * px[1])}  # fmt: skip

    def save(which: str, val: dict | None = None) -> None:
        info = {"epoch": state.epoch, "step_in_epoch": state.step_in_epoch,
                "global_step": state.global_step, "best": best, "val": val, **extra}  # fmt: skip
        save_checkpoint(checkpoint_path(run_dir, which), ctx, stage_model, opt.optimizer,
                        opt.scheduler, opt.scaler, info, prefix="model.")  # fmt: skip

    epoch_losses: list[float] = []  # this epoch's step losses, for its summary line
    started = time.perf_counter()
    first_epoch = state.epoch

    def after_step(st: TrainState, stats: dict) -> bool:
        epoch_losses.append(float(stats["loss"]))
        if ctx.is_main and st.global_step % config.log_every_steps == 0:
            # the epoch counted from 1, as the epoch records and the progress bar count it
            _log_metrics(run_dir, {"kind": "train", "epoch": st.epoch + 1, "step": st.global_step,
                                   **stats})  # fmt: skip
        stop = config.max_steps is not None and st.global_step >= config.max_steps
        if stop or (config.save_every_steps and st.global_step % config.save_every_steps == 0):
            save("latest")
        if on_step is not None:
            on_step(st, stats)
        return stop

    amp_dtype = torch.bfloat16 if ctx.device.type == "cuda" and config.amp else None
    common = {"mask_ratio": config.mask_ratio, "seed": config.seed,
              "tokens": model_config.grid_size**2, "amp_dtype": amp_dtype}  # fmt: skip
    metrics: dict[str, float] = {}
    try:
        while state.epoch < config.epochs:
            data.sampler.set_epoch(state.epoch, start_batch=state.step_in_epoch * config.accum)
            t0 = time.perf_counter()
            if train_one_epoch(train_model, data.loader, opt.optimizer, opt.scheduler, opt.scaler,
                               ctx, state, accum=config.accum, clip_grad=config.clip_grad,
                               on_step=after_step, progress=config.progress,
                               epochs=config.epochs, **common):  # fmt: skip
                log.info("stopped at step %d (max_steps): continue with --resume latest",
                         state.global_step)  # fmt: skip
                break
            metrics = {"epoch": state.epoch + 1, "step": state.global_step,
                       "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            # The line's training loss (not in metrics: a resumed epoch has only its own steps).
            loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else None
            epoch_losses.clear()
            if data.val_loader is not None:
                metrics |= evaluate(stage_model, data.val_loader, ctx, **common)
            metrics |= evaluate_micrographs(stage_model, data.val_records, extra["pixel_size"],
                                            ctx.device, amp_dtype)  # fmt: skip
            improved = _update_best(best, metrics)
            # The epoch counts as done once validated: a Ctrl-C during validation saves the
            # end of its training, and the resume validates it (it was skipped for good).
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
            save("latest", metrics)
            if ctx.is_main:  # "epoch": an epoch's record without validation (--val-fraction 0)
                kind = "val" if metrics.keys() - EPOCH_KEYS else "epoch"
                _log_metrics(run_dir, {"kind": kind, **metrics})
                per_epoch = (time.perf_counter() - started) / max(1, state.epoch - first_epoch)
                eta = per_epoch * (config.epochs - state.epoch)
                log.info(epoch_line(metrics, config.epochs, eta, loss))  # jsonl: every digit
                if improved:
                    copy_atomic(
                        checkpoint_path(run_dir, "latest"), checkpoint_path(run_dir, "best")
                    )
    except KeyboardInterrupt:  # Ctrl-C: keep the steps done so far, say how to go on
        if ctx.world_size == 1:  # a sharded save needs every rank, which may be gone
            save("latest")
            how = go_on or f"draco pretrain -o {run_dir} --resume latest"
            log.warning("interrupted at epoch %d, step %d: saved %s; continue with %s",
                        state.epoch + 1, state.global_step, checkpoint_path(run_dir, "latest"),
                        how)  # fmt: skip
        raise
    return {"metrics": metrics, "state": state, "run_dir": run_dir, "best": best, "model": model}


def epoch_line(
    metrics: dict[str, float], epochs: int, eta_s: float | None = None, loss: float | None = None
) -> str:
    """One readable line per epoch: ``epoch k/N`` (1-based, as the bar), the mean training
    ``loss``, the validation PSNR with the raw input's beside it, and the time left (issue 16).
    """
    parts = [f"epoch {int(metrics['epoch'])}/{epochs}"]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if "val_loss" in metrics:
        parts.append(f"val loss {metrics['val_loss']:.4f}")
    for key, label in (("val_psnr", "val PSNR"), ("val_psnr_mic", "val PSNR whole micrographs")):
        if key in metrics:
            raw = metrics.get(key + "_raw")
            parts.append(f"{label} {metrics[key]:.2f} dB" + (f" (raw {raw:.2f} dB)" if raw else ""))
    if "seconds" in metrics:
        parts.append(f"{metrics['seconds']:.0f} s")
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}" if eta_s > 0 else "done")
    return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _data(config: PretrainConfig, ctx: DistContext) -> _Data:
    """Training crops (sharded, resumable order) and the fixed validation crops."""
    records = load_manifest(
        config.data, "mae" if config.stage in FULL_ONLY else "draco", config.data_pixel_size
    )
    smallest = min(min(r.shape) for r in records)
    if config.crop_size > smallest:  # before any crop is allocated: crops come from inside one
        raise DracoInputError(
            f"--crop-size {config.crop_size} px exceeds the smallest micrograph side "
            f"({smallest} px)",
            config.data,
        )
    train_recs, val_recs = split_train_val(records, config.val_fraction, config.seed)
    pairs = config.stage not in FULL_ONLY
    crops: dict[str, Any] = {"area": config.crop_area, "angstrom": config.crop_angstrom,
                             "seed": config.seed, "pairs": pairs}  # fmt: skip
    train_ds = CropDataset(train_recs, config.crop_size, config.crops_per_micrograph, **crops)
    sampler = ResumableSampler(len(train_ds), config.batch_size, ctx.world_size, ctx.rank,
                               config.accum, config.seed)  # fmt: skip
    loader = DataLoader(train_ds, config.batch_size, sampler=sampler, num_workers=config.workers,
                        pin_memory=ctx.device.type == "cuda", drop_last=True,
                        persistent_workers=config.workers > 0, worker_init_fn=die_with_parent,
                        generator=torch.Generator().manual_seed(config.seed))  # fmt: skip
    val_loader = None
    if val_recs:  # small: loaded in the main process, its statistics cached once
        val_ds = CropDataset(val_recs, config.crop_size, config.val_crops_per_micrograph,
                             salt=1, with_clean=True, **crops)  # fmt: skip
        val_loader = DataLoader(val_ds, config.batch_size, shuffle=False, num_workers=0)
    px = working_pixel_range(records, config.crop_size, config.crop_area, config.crop_angstrom)
    whole = [r for r in val_recs if r.clean is not None][: config.val_micrographs]
    sizes = (len(train_recs), len(val_recs), len(train_ds))
    return _Data(sampler, loader, val_loader, whole, sizes, px)


def _optimisation(
    config: PretrainConfig, ctx: DistContext, model: nn.Module, steps_per_epoch: int
) -> _Optim:
    """AdamW at lr = blr × effective batch / 256, warm-up + cosine per step, grad scaler."""
    lr = scaled_lr(config.blr, config.batch_size * ctx.world_size * config.accum)
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    optimizer, scheduler = build_optimizer(model, lr, config.weight_decay, config.betas, warmup,
                                           total, config.min_lr)  # fmt: skip
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=False)  # bf16 needs no loss scaling
    return _Optim(optimizer, scheduler, scaler, lr, total, warmup)


def _log_setup(config: PretrainConfig, ctx: DistContext, data: _Data, opt: _Optim) -> None:
    n_train, n_val, n_crops = data.sizes
    eff = config.batch_size * ctx.world_size * config.accum
    log.info(
        f"{n_train} train / {n_val} validation micrographs, {n_crops} crops per epoch; "
        f"{ctx.world_size} processes × batch {config.batch_size} × accum {config.accum} = "
        f"effective batch {eff}; lr {opt.lr:.3g} (blr {config.blr:.3g}); {opt.total_steps} steps "
        f"({opt.warmup_steps} warm-up); working pixel size {data.pixel_range[0]:.2f}-"
        f"{data.pixel_range[1]:.2f} Å on {ctx.device}"
    )


def _repair_best(run_dir: Path, latest: dict, best: dict) -> None:
    """Make best.pt hold the epoch its record names after a kill between the two writes.

    The loop saves latest.pt, then copies it to best.pt when the epoch improved; a kill in
    between leaves best.pt an epoch behind (or missing) while the record says this epoch.
    """
    if best.get("epoch") != latest["epoch"] or latest["step_in_epoch"] != 0:
        return
    path = checkpoint_path(run_dir, "best")
    held = load_checkpoint(path).get("epoch") if path.is_file() else None
    if held != best["epoch"]:
        copy_atomic(checkpoint_path(run_dir, "latest"), path)
        log.warning("best.pt held epoch %s, its record epoch %s: copied latest.pt", held,
                    best["epoch"])  # fmt: skip


def _update_best(best: dict, metrics: dict) -> bool:
    """Select on validation PSNR against clean images (whole micrographs when they are scored,
    else crops); without clean images, on the validation loss. Never on the training loss: a
    self-supervised loss on noisy targets says little about denoising quality (the CAREamics
    lesson)."""
    if "val_psnr_mic" in metrics:
        name, value, better = "val_psnr_mic", metrics["val_psnr_mic"], lambda new, old: new > old
    elif "val_psnr" in metrics:
        name, value, better = "val_psnr", metrics["val_psnr"], lambda new, old: new > old
    elif "val_loss" in metrics:
        name, value, better = "val_loss", metrics["val_loss"], lambda new, old: new < old
    else:
        return False
    if best["value"] is None or best["metric"] != name or better(value, best["value"]):
        best.update(metric=name, value=value, epoch=metrics["epoch"])
        return True
    return False


def _check_new_run(config: PretrainConfig) -> None:
    """Without ``--resume``, refuse a folder that holds a run (its best.pt would be replaced).

    A folder with a ``config.yaml`` but no checkpoint holds nothing to lose (a run that stopped
    before its first step was saved, e.g. on a bad ``--data``): it is started over.
    """
    saved = [checkpoint_path(config.out_dir, which).is_file() for which in ("latest", "best")]
    if config.resume is None and any(saved):
        # Starting over would replace the run's best.pt: continuing or a new folder is asked for.
        raise DracoInputError(
            "this folder holds a pretraining run: pass --resume latest to continue it, or give "
            "a new -o folder",
            config.out_dir,
        )


def _run_config(
    config: PretrainConfig, ctx: DistContext, resume: _Resume | None = None
) -> PretrainConfig:
    """On resume, the run's saved config (except RESUME_MAY_CHANGE fields); else save this one.

    Raises:
        DracoInputError: ``--epochs`` fewer than the resumed run has already started (it would
            train nothing and record the smaller number).
    """
    saved_path = config.out_dir / CONFIG_FILE
    # Files by absolute path, so that --resume works from any working folder.
    paths = {k: Path(absolute_name(str(v))) for k in ("data", "init_weights")
             if (v := getattr(config, k)) is not None}  # fmt: skip
    config = config.model_copy(update=paths)
    saved, where = None, "config.yaml"
    # Only a checkpoint makes a run to continue: a config.yaml without one (a first try that
    # stopped before its first step) gives way to this command, or `--resume latest` would keep
    # a mistyped --data or --crop-size of that try for ever.
    if resume is not None and saved_path.is_file():
        saved = PretrainConfig.load(saved_path)
    elif resume is not None:  # --resume PATH into a new folder: the checkpoint's own
        # settings (this command's defaults built another model: a size-mismatch traceback)
        stored = resume.ckpt.get("config")
        if isinstance(stored, dict):
            try:
                saved, where = PretrainConfig(**stored), f"{resume.path.name}'s settings"
            except ValidationError as exc:
                raise DracoInputError(
                    f"cannot read the run settings it holds ({exc})", resume.path
                ) from None
    if saved is not None:
        config, ignored = config.merged_for_resume(saved)
        if ignored:
            log.warning("resuming: kept the run's %s (%s)", ", ".join(ignored), where)
    if resume is not None:
        started = resume.ckpt["epoch"] + (1 if resume.ckpt["step_in_epoch"] else 0)
        if config.epochs < started:
            raise DracoInputError(
                f"--epochs {config.epochs} is fewer than the {started} epochs this run has "
                "trained or started; give at least that many to continue it",
                resume.path,
            )
    if ctx.is_main:
        write_config(config.out_dir, config)
    return config


def _trim_metrics(run_dir: Path, step: int, has_val: bool) -> None:
    """Drop the ``metrics.jsonl`` records a resume from ``step`` will write again: those of
    later steps (logged before a kill after the checkpoint), and the epoch's record (with its
    validation) at ``step`` unless the checkpoint was saved after it (``has_val``). A line
    cut by a kill goes too."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        at = record.get("step")
        end_of_epoch = record.get("kind") in ("val", "epoch")
        again = at is not None and (at > step or (at == step and end_of_epoch and not has_val))
        if not again:
            keep.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _log_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
