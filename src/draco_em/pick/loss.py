"""Training targets and the sparse-label loss of the picker.

Targets (CenterNet): a Gaussian centre heatmap on the stride-4 cell grid, σ set by the particle
diameter, equal to 1 exactly at each particle's cell; and the sub-cell offset of the true centre
at those cells (cell geometry in :mod:`draco_em.pick.detector`).

Loss: users label only some particles (Topaz's setting, Bepler et al. 2019), so every cell that
is not a labelled centre is *unlabelled*, not negative. We use the non-negative PU risk
estimator (nnPU, Kiryo et al. 2017) with CenterNet's focal terms:

    R = π·R_p⁺ + max(0, R_u⁻ − π·R_p⁻)

* R_p⁺ = mean over labelled centres of −(1 − p)^α log p (positives called positive),
* R_p⁻ = mean over labelled centres of −p^α log(1 − p) (positives called negative),
* R_u⁻ = mean over unlabelled cells of −(1 − Y)^β p^α log(1 − p) (Y: the Gaussian target,
  which spares the cells next to a centre, as CenterNet's penalty reduction),
* π = the class prior: the share of cells that hold a particle centre, from the expected
  particle count per micrograph (Topaz's ``--num-particles``).

The unlabelled risk counts the hidden positives as negatives; subtracting π·R_p⁻ removes their
expected share, and the max(0, ·) stops the estimate going negative when the model overfits the
few labels. Dividing R by π gives CenterNet's normalisation (loss per labelled particle), which
keeps the gradient scale independent of the tile size.

Known negatives (junk masks, :mod:`draco_em.pick.data`): cells on contamination are not
unlabelled but negative. They leave the unlabelled risk and add

    λ · R_n⁻,   R_n⁻ = Σ over junk cells of −p^α log(1 − p) / (number of labelled centres),

CenterNet's negative term normalised per labelled particle like R/π, with weight λ
(``junk_weight``). In the PU risk a confident pick on an ice ball costs one cell's share of a
mean over every unlabelled cell, diluted further by the π·R_p⁻ correction; here it costs as
much as missing a particle.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from draco_em.pick.detector import CELL_CENTRE

ALPHA = 2.0  # focal exponent (CenterNet)
BETA = 4.0  # penalty-reduction exponent (CenterNet)
STRIDE = 4


def make_targets(
    xy: np.ndarray, shape: tuple[int, int], sigma_px: float, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap and offset targets for one crop.

    Args:
        xy: [N, 2] particle centres (x = column, y = row) in working px of the crop.
        shape: (H, W) of the crop in working px (multiples of ``stride``).
        sigma_px: Gaussian σ in working px.
        stride: heatmap stride in px.

    Returns:
        (heatmap [h, w] float32 in [0, 1], offsets [2, h, w] float32 (dx, dy) in cells,
        centre mask [h, w] bool: True at the cell of each particle inside the crop).
    """
    h, w = shape[0] // stride, shape[1] // stride
    heat = np.zeros((h, w), np.float32)
    offsets = np.zeros((2, h, w), np.float32)
    centres = np.zeros((h, w), bool)
    s = sigma_px / stride
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2):
        u, v = (x - CELL_CENTRE) / stride, (y - CELL_CENTRE) / stride
        j, i = round(u), round(v)
        if not (0 <= i < h and 0 <= j < w):
            continue  # the centre is outside this crop: no positive, but keep its halo
        g = np.exp(-((xx - j) ** 2 + (yy - i) ** 2) / (2 * s * s))
        np.maximum(heat, g, out=heat)
        heat[i, j] = 1.0
        centres[i, j] = True
        offsets[:, i, j] = (u - j, v - i)
    _halo_outside(heat, xy, shape, s, stride)
    return heat, offsets, centres


def _halo_outside(heat: np.ndarray, xy: np.ndarray, shape: tuple[int, int], s: float,
                  stride: int) -> None:  # fmt: skip
    """Add the Gaussian halo of centres just outside the crop (their edge cells are not
    negatives: part of the particle is visible there)."""
    h, w = heat.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2):
        u, v = (x - CELL_CENTRE) / stride, (y - CELL_CENTRE) / stride
        if 0 <= round(v) < h and 0 <= round(u) < w:
            continue
        np.maximum(heat, np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * s * s)), out=heat)


def pu_focal_loss(
    logits: torch.Tensor, heat: torch.Tensor, centres: torch.Tensor, prior: float,
    junk: torch.Tensor | None = None, junk_weight: float = 1.0,
) -> torch.Tensor:  # fmt: skip
    """The nnPU focal loss (module docstring), per labelled particle.

    Args:
        logits: [B, 1, h, w] heatmap logits.
        heat: [B, 1, h, w] Gaussian targets in [0, 1].
        centres: [B, 1, h, w] bool, True at labelled centres.
        prior: π, the expected share of cells holding a particle centre (0 < π < 1).
        junk: [B, 1, h, w] bool known-negative cells (never a labelled centre), or None.
        junk_weight: λ of the known-negative term.

    Returns:
        Scalar loss.
    """
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    neg = junk.float() if junk is not None else torch.zeros_like(logits)
    pos, unl = centres.float(), (~centres).float() * (1 - neg)
    n_pos, n_unl = pos.sum().clamp(min=1.0), unl.sum().clamp(min=1.0)
    r_pos_plus = -(((1 - p) ** ALPHA) * log_p * pos).sum() / n_pos
    r_pos_minus = -((p**ALPHA) * log_not_p * pos).sum() / n_pos
    r_unl_minus = -(((1 - heat) ** BETA) * (p**ALPHA) * log_not_p * unl).sum() / n_unl
    risk = prior * r_pos_plus + torch.clamp(r_unl_minus - prior * r_pos_minus, min=0.0)
    r_junk = -((p**ALPHA) * log_not_p * neg).sum() / n_pos
    return risk / prior + junk_weight * r_junk


def offset_loss(pred: torch.Tensor, target: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true offsets [B, 2, h, w] at labelled centres [B, 1, h, w]."""
    mask = centres.float()
    n = mask.sum().clamp(min=1.0)
    return ((pred - target).abs() * mask).sum() / (2 * n)


def class_prior(particles_per_image: float, image_px: float, stride: int = STRIDE) -> float:
    """π: expected particle centres per heatmap cell for ``image_px`` working pixels."""
    cells = max(image_px / stride**2, 1.0)
    return float(np.clip(particles_per_image / cells, 1e-5, 0.5))
