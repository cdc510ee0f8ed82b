"""Visual QC of picks: an overlay PNG per micrograph and one histogram of all scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.io.atomic import atomic_path
from draco_em.io.preview import downsample_for_view, to_uint8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_overlay(
    path: str | Path, image: np.ndarray, picks: pd.DataFrame, radius_px: float,
    max_size: int = 1024,
) -> Path:  # fmt: skip
    """Micrograph with a circle of ``radius_px`` (input px) on each pick, coloured by score."""
    plt = _pyplot()
    small = downsample_for_view(np.asarray(image, np.float32), max_size)
    f = image.shape[0] / small.shape[0]  # block-average factor: input px per preview px
    dpi = 100
    fig = plt.figure(figsize=(small.shape[1] / dpi, small.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(to_uint8(small), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    # Preview pixel k averages input pixels k·f … k·f + f − 1, centred at k·f + (f − 1)/2.
    x = (picks["x"].to_numpy(float) - (f - 1) / 2) / f
    y = (picks["y"].to_numpy(float) - (f - 1) / 2) / f
    score = picks["score"].to_numpy(float) if "score" in picks else np.ones(len(picks))
    ax.scatter(x, y, s=(2 * radius_px / f) ** 2 * 0.6, facecolors="none",
               edgecolors=plt.cm.viridis(np.clip(score, 0, 1)), linewidths=1.0)  # fmt: skip
    ax.set_xlim(-0.5, small.shape[1] - 0.5)
    ax.set_ylim(small.shape[0] - 0.5, -0.5)
    ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


def save_histogram(path: str | Path, scores: np.ndarray, threshold: float) -> Path:
    """Histogram of pick scores with the threshold marked (guides the choice of cut-off)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.hist(np.asarray(scores, float), bins=50, range=(0, 1), color="0.4")
    ax.axvline(threshold, color="C3", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("score")
    ax.set_ylabel("picks")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
