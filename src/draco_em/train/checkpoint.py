"""Resumable training checkpoints (``RUNDIR/checkpoints/{latest,best}.pt``) and their export.

A checkpoint holds everything a run needs to continue exactly: the model, optimiser, lr
scheduler and grad-scaler states, the RNG states of every rank (torch, CUDA, numpy, python),
the epoch, the optimiser steps done in that epoch (the sampler position) and the global step.
Contents are plain types and tensors, so ``torch.load(weights_only=True)`` reads them. Files are
written atomically by rank 0: a run killed while saving keeps its previous checkpoint.

The model and optimiser states go through ``torch.distributed.checkpoint.state_dict`` with full
(unsharded) state dicts, so the same code saves plain, DDP and FSDP2 models.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path
from draco_em.io.model_file import read_torch_file
from draco_em.io.run_folder import checkpoint_path, run_checkpoint
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.weights import run_metadata, save_model
from draco_em.runtime import DistContext, all_gather_objects


def rng_state() -> dict[str, Any]:
    """This process's RNG states as plain types and tensors (weights_only-loadable)."""
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, gauss = legacy
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    path: Path,
    ctx: DistContext,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    extra: dict[str, Any],
    prefix: str = "",
) -> None:
    """Gather the full state on rank 0 and write it atomically (every rank must call this).

    Args:
        path: destination ``.pt``.
        model: the model the optimiser was built on (not the DDP/compile wrapper; FSDP2
            modules are fine).
        prefix: removed from the model's parameter names (a wrapper's ``model.``), so the
            stored weights carry the plain ``DracoMAE`` names.
        extra: epoch, step_in_epoch, global_step, config, model_config, ... (plain types).
    """
    # Imported here: torch.distributed.checkpoint costs 0.5 s (it pulls in sympy), and every
    # command that reaches draco_em.train (draco denoise, for --adapt) would pay it.
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state, optim_state = get_state_dict(model, optimizer, options=full)
    model_state = {k.removeprefix(prefix): v for k, v in model_state.items()}
    rngs = all_gather_objects(rng_state(), ctx)  # every rank's RNG, so each resumes its own
    if not ctx.is_main:
        return
    state = {
        "model": model_state,
        "optimizer": optim_state,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rngs,
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU)."""
    state = read_torch_file(path, "training checkpoint")
    if not isinstance(state, dict):
        raise DracoInputError(f"not a training checkpoint (holds a {type(state).__name__})", path)
    return state


def restore_checkpoint(
    state: dict[str, Any],
    ctx: DistContext,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    prefix: str = "",
) -> None:
    """Load model, optimiser, scheduler, scaler and this rank's RNG states in place."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model_state = {prefix + k: v for k, v in state["model"].items()}
    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
    # Not strict: a parameter that never had a gradient (the mask token in the Noise2Noise
    # stage, which masks nothing) has no Adam state to save, and gets none back, as in the
    # uninterrupted run; strict loading refused every such resume.
    set_optimizer_state_dict(
        model, optimizer, state["optimizer"],
        options=StateDictOptions(full_state_dict=True, strict=False),
    )  # fmt: skip
    # Keep this run's lr schedule (a resumed run may have more epochs) at the saved step.
    sched = dict(state["scheduler"])
    if "lr_lambdas" in sched:  # LambdaLR: None = leave that lambda as built for this run
        sched["lr_lambdas"] = [None] * len(sched["lr_lambdas"])
    scheduler.load_state_dict(sched)
    for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs,
                               getattr(scheduler, "lr_lambdas", ()), strict=False):  # fmt: skip
        group["lr"] = base * fn(scheduler.last_epoch)
    scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    set_rng_state(rngs[ctx.rank % len(rngs)])


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None to start fresh.

    'latest'/'best' name ``RUNDIR/checkpoints/<which>.pt``; a fresh run folder with no
    checkpoint yet starts from scratch (so a preempted job can be resubmitted unchanged). Any
    other value is a path that must exist.
    """
    if resume is None:
        return None
    if resume in ("latest", "best"):
        path = checkpoint_path(run_dir, resume)
        return path if path.is_file() else None
    if not Path(resume).is_file():
        raise DracoInputError("--resume checkpoint not found", resume)
    return Path(resume)


def export_source(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint :func:`export_run` reads: ``which`` of a run folder, else its latest (a
    run without a validation set writes no best.pt; its latest is the best it has), or the
    ``.pt`` file itself."""
    run_dir = Path(run_dir)
    return run_checkpoint(run_dir, which) if run_dir.is_dir() else run_dir


def export_run(
    run_dir: str | Path, out: str | Path, which: str = "best", half: bool = False
) -> Path:
    """Write a run's weights to a safetensors file with their config in the metadata.

    Args:
        run_dir: a ``draco pretrain`` run folder (or a checkpoint ``.pt`` file).
        out: destination ``.safetensors``.
        which: 'best' (highest validation PSNR, else lowest validation loss) or 'latest'.
        half: store the weights as float16 (half the file size).

    Returns:
        The written path.
    """
    path = export_source(run_dir, which)
    state = load_checkpoint(path)
    if "model_config" not in state or "model" not in state:
        raise DracoInputError("not a draco pretrain checkpoint (no model_config)", path)
    config = DracoConfig(**state["model_config"])
    model = DracoMAE(config)
    model.load_state_dict(state["model"])
    cfg = state.get("config", {})
    metadata = {
        **run_metadata(state),
        "training": {
            "stage": cfg.get("stage"), "epoch": state.get("epoch"),
            "step": state.get("global_step"), "val": state.get("val"),
            "best": state.get("best"), "crop_size": cfg.get("crop_size"), "source": str(path),
        },
    }  # fmt: skip
    save_model(out, model, config, metadata, half=half)
    return Path(out)
