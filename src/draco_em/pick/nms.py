"""Non-maximum suppression by distance: one pick per particle.

Particles are round and of known size, so NMS needs no boxes or IoU: two picks closer than a
fraction of the diameter are the same particle. :func:`find_peaks` keeps the local maxima of a
score map (max-pool equality, as CenterNet) and :func:`distance_nms` then drops, greedily by
score, any pick within ``min_distance`` of a better one (plateaus and ties give several
maxima in one window).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree


def find_peaks(
    score: np.ndarray, min_distance: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a score map that reach ``threshold``.

    Args:
        score: [H, W] scores in [0, 1].
        min_distance: suppression radius in px; the max-pool window is ``2·r + 1``.
        threshold: minimum score kept.

    Returns:
        (xy [N, 2] float64 pixel positions (x = column, y = row), scores [N]), best first.
    """
    r = max(round(min_distance), 1)
    t = torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32))[None, None]
    pooled = F.max_pool2d(t, 2 * r + 1, stride=1, padding=r)
    keep = ((t == pooled) & (t >= threshold))[0, 0].numpy()
    ys, xs = np.nonzero(keep)
    scores = score[ys, xs].astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    xy = np.stack([xs, ys], axis=1).astype(np.float64)[order]
    return distance_nms(xy, scores[order], min_distance)


def distance_nms(
    xy: np.ndarray, scores: np.ndarray, min_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS: keep picks by falling score, dropping any within ``min_distance`` px.

    Args:
        xy: [N, 2] positions in px.
        scores: [N] scores.
        min_distance: two picks closer than this (strictly) are one particle.

    Returns:
        (xy [M, 2], scores [M]) of the kept picks, best first.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(xy) == 0:
        return xy, scores
    order = np.argsort(-scores, kind="stable")
    xy, scores = xy[order], scores[order]
    tree = cKDTree(xy)
    suppressed = np.zeros(len(xy), bool)
    keep = []
    for i in range(len(xy)):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in tree.query_ball_point(xy[i], r=min_distance):
            if j != i and np.hypot(*(xy[j] - xy[i])) < min_distance:
                suppressed[j] = True
    return xy[keep], scores[keep]
