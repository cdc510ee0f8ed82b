"""AdamW, the lr scaling rule and the warm-up + cosine schedule (MAE recipe; paper §3.3 [INF])."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def scaled_lr(blr: float, effective_batch: int) -> float:
    """lr = blr × effective batch / 256 (the linear scaling rule of MAE / Goyal et al.).

    Args:
        blr: base lr for a batch of 256.
        effective_batch: crops per optimiser step = batch per process × processes × accum.
    """
    return blr * effective_batch / 256


@dataclass(frozen=True)
class WarmupCosine:
    """Multiplier of the peak lr at optimiser step ``s`` (a picklable ``LambdaLR`` lambda).

    Linear warm-up from 0 over ``warmup_steps``, then half a cosine from 1 down to
    ``min_ratio = min_lr / lr`` at ``total_steps``.
    """

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weight matrices/kernels, none on biases, norms, tokens.

    As in MAE (timm ``param_groups_weight_decay``): decaying 1-D parameters (biases, LayerNorm
    scales) or the mask token only pulls them towards 0 for no regularising benefit.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # the fixed sin-cos position embeddings
        if param.ndim <= 1 or name.endswith(".bias") or "token" in name or "pos_embed" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 0.0,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW at peak ``lr`` and its per-step warm-up + cosine ``LambdaLR``."""
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)
    schedule = WarmupCosine(warmup_steps, total_steps, min_lr / lr if lr > 0 else 0.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
