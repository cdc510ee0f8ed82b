"""One training epoch and one validation pass; model-agnostic because the model returns its loss.

``model(batch, mask_ratio, generator)`` must return ``(loss, pred, masks)``: the
:class:`~draco_em.train.stage_model.StageModel` wrapper calls ``DracoMAE.forward`` (stage 'draco')
or ``forward_mae`` (stage 'mae') behind that one signature, so DDP sees a single ``forward``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise_metrics import psnr
from draco_em.infer.denoise import Denoiser
from draco_em.io.model_file import interrupt_after
from draco_em.io.mrc import read_image
from draco_em.model.draco import DracoMAE
from draco_em.runtime import DistContext, all_reduce_mean


@dataclass
class TrainState:
    """Position of the run: ``epoch``, optimiser steps done in it, optimiser steps in total."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def mask_generator(
    seed: int, micro_step: int, rank: int, batch: int, tokens: int
) -> torch.Generator:
    """CPU RNG for the masks of one micro-batch, positioned at this rank's part of the global batch.

    The masks of a global micro-batch are one stream of ``[W·B, L]`` uniforms seeded by
    ``(seed, micro_step)``; rank ``r`` skips the rows of ranks ``< r``. With the step-sharded
    sampler this makes W processes × B crops draw exactly the masks of 1 process × W·B crops,
    and a resumed run the masks of an uninterrupted one.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + micro_step)
    if rank:
        torch.rand(rank * batch, tokens, generator=g)  # skip the lower ranks' rows
    return g


def train_one_epoch(
    model: Any,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ctx: DistContext,
    state: TrainState,
    *,
    accum: int,
    clip_grad: float | None,
    mask_ratio: float,
    seed: int,
    tokens: int,
    amp_dtype: torch.dtype | None = None,
    on_step: Callable[[TrainState, dict[str, float]], bool] | None = None,
    progress: bool = True,
    epochs: int | None = None,
) -> bool:
    """Train until the loader is exhausted; returns True if ``on_step`` asked to stop early.

    One optimiser step = ``accum`` micro-batches; gradients are synchronised across ranks only
    on the last micro-batch (nanoGPT's ``require_backward_grad_sync``). After each optimiser step
    ``state`` advances and ``on_step(state, {"loss", "lr", "grad_norm"})`` runs (checkpoints,
    logs); it returns True to stop.
    """
    model.train()
    autocast = (
        torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )
    # The bar counts micro-batches, not optimiser steps: with gradient accumulation a step can
    # take minutes on a CPU, and a bar at 0 all that time looks hung (issue 16).
    bar = tqdm(
        total=len(loader),
        # 1-based and "of N", as the summary line after it (issue 16).
        desc=f"epoch {state.epoch + 1}" + (f"/{epochs}" if epochs else ""),
        leave=False,
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
    )
    bar.set_postfix_str("reading the first batch")
    running = 0.0
    for micro, batch in enumerate(loader):
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        last = (micro + 1) % accum == 0
        if hasattr(model, "require_backward_grad_sync"):  # DDP: all-reduce on the last only
            model.require_backward_grad_sync = last
        elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter likewise
            model.set_requires_gradient_sync(last)
        micro_step = state.global_step * accum + micro % accum
        g = mask_generator(seed, micro_step, ctx.rank, batch["full"].shape[0], tokens)
        with autocast:
            loss, _, _ = model(batch, mask_ratio, g)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {state.global_step}")
        scaler.scale(loss / accum).backward()
        running += loss.item() / accum
        bar.update(1)
        if not last:
            continue
        scaler.unscale_(optimizer)
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            if clip_grad
            else torch.tensor(0.0)
        )
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        with interrupt_after():  # a Ctrl-C here would save the update without its count
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            state.step_in_epoch += 1
            state.global_step += 1
        stats = {"loss": all_reduce_mean(running, ctx), "lr": lr, "grad_norm": float(grad_norm)}
        running = 0.0
        bar.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{lr:.2e}")
        if on_step is not None and on_step(state, stats):
            bar.close()
            return True
    bar.close()
    return False


def psnr_matched(pred: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image after least-squares scale/offset matching of ``pred`` to ``clean``.

    The model works in normalised units, so ``a·pred + b`` with the least-squares ``a, b`` is
    compared; the peak is the clean image's range (max − min).

    Args:
        pred, clean: [B, 1, H, W].

    Returns:
        [B] PSNR in dB.
    """
    x, y = pred.flatten(1).double(), clean.flatten(1).double()
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    a = (xc * yc).sum(1, keepdim=True) / (xc * xc).sum(1, keepdim=True).clamp_min(1e-30)
    mse = ((a * xc - yc) ** 2).mean(1).clamp_min(1e-30)
    peak = y.amax(1) - y.amin(1)
    return (10 * torch.log10(peak**2 / mse)).float()


@torch.no_grad()
def evaluate(
    model: Any,
    loader: torch.utils.data.DataLoader,
    ctx: DistContext,
    *,
    mask_ratio: float,
    seed: int,
    tokens: int,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation: mean loss with fixed masks; where clean images exist, the matched PSNR of
    mask-ratio-0 denoising of the full crop, and of the raw crop for reference.

    Every rank evaluates the whole (small) validation set, so the result is identical on all
    ranks and no collective is needed. ``model(batch, denoise=True)`` must return the
    mask-ratio-0 prediction of ``batch["full"]``; ``model.last_losses`` the loss parts.
    """
    model.eval()
    autocast = (
        torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )
    losses, n2n, psnr, psnr_raw = [], [], [], []
    for i, batch in enumerate(loader):
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        g = mask_generator(seed + 1, i, 0, 0, tokens)  # the same masks at every validation
        with autocast:
            loss, _, _ = model(batch, mask_ratio, g)
            parts = model.last_losses
            keep = batch["has_clean"]
            if keep.any():
                out = model({"full": batch["full"][keep]}, denoise=True)
        losses.append(float(loss))
        n2n += [parts["n2n"]] if "n2n" in parts else []
        if keep.any():
            psnr += psnr_matched(out.float(), batch["clean"][keep]).tolist()
            psnr_raw += psnr_matched(batch["full"][keep], batch["clean"][keep]).tolist()
    if not losses:
        raise DracoInputError("the validation set is empty")
    metrics: dict[str, float] = {"val_loss": sum(losses) / len(losses)}
    if n2n:
        metrics["val_n2n"] = sum(n2n) / len(n2n)
    if psnr:
        metrics |= {
            "val_psnr": sum(psnr) / len(psnr),
            "val_psnr_raw": sum(psnr_raw) / len(psnr_raw),
        }
    return metrics


@torch.no_grad()
def evaluate_micrographs(
    model: Any,
    records: list,
    working_pixel_size: float,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """PSNR of whole held-back micrographs denoised exactly as ``draco denoise`` does it.

    The crop-level ``val_psnr`` scores 128–256 px crops at the working pixel size, where the raw
    image is already a 2×2 or 4×4 average; users see whole micrographs at their own pixel size.
    Here each record with a clean image goes through :class:`~draco_em.infer.denoise.Denoiser`
    (Fourier crop → DRACO statistics → tiles → blend → back to the input size) and is scored
    with the PSNR of ``draco evaluate denoise``, beside the raw image's.

    Args:
        model: called as ``model({"full": x}, denoise=True)`` (the StageModel, so sharded
            parameters are gathered by its forward hooks).
        records: held-back :class:`~draco_em.train.data.MicrographRecord` s with ``clean``.
        working_pixel_size: Å/px the model works at (the run's ``pixel_size``).

    Returns:
        ``{"val_psnr_mic": mean, "val_psnr_mic_raw": mean}`` ({} without records).
    """
    # Imported here: validation borrows the inference path so that it scores what users get.
    if not records:
        return {}

    class _Predict:  # the two things Denoiser needs from a model
        patch_size = model.model.patch_size

        @staticmethod
        def denoise(x: torch.Tensor) -> torch.Tensor:
            return model({"full": x}, denoise=True)

    model.eval()
    predictor = cast(DracoMAE, _Predict())  # duck-typed: patch_size and denoise only
    denoiser = Denoiser(predictor, working_pixel_size, device=device,
                        bf16=amp_dtype is torch.bfloat16)  # fmt: skip
    scores, raw_scores = [], []
    for rec in records:
        raw, px = read_image(rec.full, pixel_size=rec.pixel_size)
        clean, _ = read_image(rec.clean, pixel_size=rec.pixel_size)
        out, _ = denoiser.denoise_image(raw, px)
        scores.append(psnr(out, clean))
        raw_scores.append(psnr(raw, clean))
    return {
        "val_psnr_mic": float(sum(scores) / len(scores)),
        "val_psnr_mic_raw": float(sum(raw_scores) / len(raw_scores)),
    }
