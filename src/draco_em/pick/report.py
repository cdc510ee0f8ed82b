"""Visual QC of picks: an overlay PNG per micrograph and one histogram of all scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.imaging.filters import gaussian_lowpass
from draco_em.io.atomic import atomic_path
from draco_em.io.preview import downsample_for_view, to_uint8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PREVIEW_LOWPASS_A = 20.0  # the display filter cryoSPARC and RELION default to
LEGEND_PX = 110  # width of the score legend right of the micrograph


def save_overlay(
    path: str | Path, image: np.ndarray, picks: pd.DataFrame, radius_px: float,
    max_size: int = 1024, pixel_size: float | None = None, threshold: float | None = None,
) -> Path:  # fmt: skip
    """Micrograph with a circle of ``radius_px`` (input px) on each pick, coloured by score.

    With ``pixel_size`` the micrograph is low-pass filtered (:data:`PREVIEW_LOWPASS_A`, at
    least 4 px) so the particles under the circles show; a colour bar on the right gives the
    score of each colour, with ``threshold`` marked on it.
    """
    plt = _pyplot()
    small = downsample_for_view(np.asarray(image, np.float32), max_size)
    f = image.shape[0] / small.shape[0]  # block-average factor: input px per preview px
    if pixel_size:  # filter the (cheap) preview: its pixels are f input pixels
        view_px = pixel_size * f
        small = gaussian_lowpass(small, view_px, max(PREVIEW_LOWPASS_A, 4 * view_px))
    dpi = 100
    width = small.shape[1] + LEGEND_PX
    fig = plt.figure(figsize=(width / dpi, small.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, small.shape[1] / width, 1])
    ax.imshow(to_uint8(small), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    # Preview pixel k averages input pixels k·f … k·f + f − 1, centred at k·f + (f − 1)/2.
    x = (picks["x"].to_numpy(float) - (f - 1) / 2) / f
    y = (picks["y"].to_numpy(float) - (f - 1) / 2) / f
    score = picks["score"].to_numpy(float) if "score" in picks else np.ones(len(picks))
    # scatter sizes are in points² (1 pt = dpi / 72 px): a circle of the particle's diameter
    ax.scatter(x, y, s=(2 * radius_px / f * 72 / dpi) ** 2, facecolors="none",
               edgecolors=plt.cm.viridis(np.clip(score, 0, 1)), linewidths=1.0)  # fmt: skip
    ax.set_xlim(-0.5, small.shape[1] - 0.5)
    ax.set_ylim(small.shape[0] - 0.5, -0.5)
    ax.axis("off")
    legend = fig.add_axes([(small.shape[1] + 12) / width, 0.1, 16 / width, 0.8])
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="viridis"), cax=legend)
    bar.set_label("score")
    if threshold is not None:
        legend.axhline(threshold, color="C3", linewidth=2)
        legend.text(1.0, threshold, " cut", color="C3", va="center", ha="left",
                    transform=legend.get_yaxis_transform(), fontsize=7)  # fmt: skip
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
    ax.set_ylabel("candidates")  # every peak above the floor, not only the picks kept
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
