"""Pictures to check curation decisions against: a score histogram, a contact sheet and, with
``--previews``, each micrograph beside its power spectrum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import welch_spectrum
from draco_em.io.atomic import atomic_path
from draco_em.io.mrc import read_image
from draco_em.io.preview import downsample_for_view, to_uint8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Colours of the sheet's and the histogram's groups.
REJECTED, BY_SIGNAL, ACCEPTED = "#c0392b", "#e67e22", "#27ae60"


def _by_signal(result: pd.DataFrame) -> pd.Series:
    """Rows a STAR signal rejected (``decided_by`` other than ``image``; none without it)."""
    return result.get("decided_by", pd.Series("image", index=result.index)) != "image"


def score_histogram(path: Path, result: pd.DataFrame, threshold: float) -> Path:
    """Histogram of ``p_accept`` with the threshold drawn, accepted and rejected stacked.

    Micrographs a STAR signal rejected (``decided_by`` other than ``image``) are a third,
    separately coloured group: their ``p_accept`` is the image head's and often lies above the
    threshold, where a plain "rejected" bar would read as a threshold that did not hold.

    Args:
        path: destination PNG.
        result: the curation table (columns ``p_accept``, ``decision``, optionally
            ``decided_by``).
        threshold: the accept threshold on ``p_accept``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    bins = np.linspace(0, 1, 41)
    by_signal = _by_signal(result)
    rejected = result["decision"] == "reject"
    groups = [
        (rejected & ~by_signal, REJECTED, "rejected by the image head"),
        (rejected & by_signal, BY_SIGNAL, "rejected by STAR signals"),
        (result["decision"] == "accept", ACCEPTED, "accepted"),
    ]
    if not by_signal.any():  # no STAR signal decided: the two-group plot, as before
        groups = [(rejected, REJECTED, "rejected"), groups[2]]
    ax.hist(
        [result.loc[mask, "p_accept"] for mask, _, _ in groups],
        bins=bins,
        stacked=True,
        color=[colour for _, colour, _ in groups],
        label=[f"{label} ({int(mask.sum())})" for mask, _, label in groups],
    )
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    ax.set_xlabel("P(accept)")
    ax.set_ylabel("micrographs")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _thumbnail(path: str, pixel_size: float | None, size: int = 192) -> np.ndarray | None:
    """A view of one micrograph; ``pixel_size`` is needed by picture files (PNG/JPEG/TIFF)."""
    try:
        image, _ = read_image(path, pixel_size)
    except (DracoInputError, OSError, ValueError):
        return None
    return to_uint8(downsample_for_view(image, size))


def _short(name: str, width: int = 26) -> str:
    """Long session names (Leginon, EPU) overlap their neighbours' titles: keep both ends."""
    return name if len(name) <= width else f"{name[: width // 2 - 1]}…{name[-(width // 2) :]}"


def sheet_panels(result: pd.DataFrame, per_row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the contact sheet: (rejected, accepted), at most ``per_row`` each.

    Accepted: highest ``p_accept`` first. Rejected: lowest ``p_accept`` first, the image head's
    rejections and the STAR signals' taking turns while both last. A signal's rejection keeps
    the image head's ``p_accept``, often high: ranked by it with the others, a batch with a
    few image rejections would show none of the micrographs the CTF or motion rejected.
    """
    rejected = result[result["decision"] == "reject"].sort_values("p_accept", kind="stable")
    by_signal = _by_signal(rejected)
    groups = [rejected[~by_signal], rejected[by_signal]]
    turns = [g.index[i] for i in range(per_row) for g in groups if i < len(g)][:per_row]
    accepted = result[result["decision"] == "accept"].nlargest(per_row, "p_accept")
    return result.loc[turns], accepted


def contact_sheet(path: Path, result: pd.DataFrame, per_row: int = 8) -> Path | None:
    """The ``per_row`` most confidently rejected (top row) and accepted (bottom row) micrographs
    (:func:`sheet_panels`).

    Each panel is titled with the micrograph's stem, its reason and ``P(accept)``; a STAR
    signal's rejection is orange, its reason marked ``(STAR)``.

    Args:
        path: destination PNG.
        result: the curation table (``path``, ``micrograph``, ``p_accept``, ``decision``,
            ``reason``, optionally ``decided_by``).
        per_row: panels per row (0: no sheet).

    Returns:
        The path written, or None when ``per_row`` is 0.
    """
    if per_row <= 0:
        return None
    plt = _pyplot()
    rejected, accepted = sheet_panels(result, per_row)
    signal = _by_signal(rejected)
    per_row = max(1, min(per_row, max(len(rejected), len(accepted))))
    fig, axes = plt.subplots(2, per_row, figsize=(1.9 * per_row, 4.6), dpi=110, squeeze=False)
    for r, (label, rows) in enumerate((("rejected", rejected), ("accepted", accepted))):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            row = rows.iloc[c]
            px = row.get("pixel_size")
            thumb = _thumbnail(row["path"], float(px) if pd.notna(px) else None)
            if thumb is not None:
                ax.imshow(thumb, cmap="gray", vmin=0, vmax=255)
            star = label == "rejected" and bool(signal.iloc[c])
            colour = BY_SIGNAL if star else REJECTED if label == "rejected" else ACCEPTED
            ax.set_title(
                f"{_short(Path(str(row['micrograph'])).stem)}\n{row['reason']}"
                f"{' (STAR)' if star else ''} p={row['p_accept']:.2f}",
                fontsize=7,
                color=colour,
            )
        axes[r, 0].text(
            -0.08,
            0.5,
            f"most confidently {label}",
            transform=axes[r, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


#: Resolutions ringed on a preview's power spectrum, Å: the crystalline-ice ring at 3.7 Å (cubic
#: and hexagonal ice's strongest reflection), and 20, 10 and 5 Å to read Thon rings against.
SPECTRUM_RINGS_A = (20.0, 10.0, 5.0, 3.7)


def qc_preview(path: Path, image: np.ndarray, pixel_size: float | None, row: dict) -> Path:
    """One micrograph as a person checks a curation call: the micrograph (binned for view) and
    its power spectrum (Welch-averaged, log scale, rings at :data:`SPECTRUM_RINGS_A`), titled
    with the decision, its reason, P(accept), what decided and the STAR signals' values.

    Drift shows as Thon rings that fade along one direction, crystalline ice as a sharp ring at
    3.7 Å, thick ice or an empty hole as rings that fade early: what the contact sheet's
    thumbnails cannot show (Miffi writes the same pair).

    Args:
        path: destination PNG.
        image: the micrograph [ny, nx] as read.
        pixel_size: its Å/px (None: no rings, no resolution at the edge).
        row: its ``curation.csv`` record.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.8), dpi=100)
    left.imshow(to_uint8(downsample_for_view(image, 768)), cmap="gray", vmin=0, vmax=255)
    left.set_axis_off()
    tile = min(256, *image.shape)  # 256² tiles: enough of them to average, even on a 1k² field
    power = np.log(welch_spectrum(image, tile) + 1e-12)
    lo, hi = np.percentile(power, [1, 99.5])
    half = tile / 2
    right.imshow(power, cmap="gray", vmin=lo, vmax=hi, extent=(-half, half, half, -half))
    px = pixel_size or 0.0  # unknown: no rings
    for res in SPECTRUM_RINGS_A if px else ():
        radius = tile * px / res  # frequency 1/res in cycles per tile
        if radius < half:
            right.add_patch(plt.Circle((0, 0), radius, fill=False, color="C1", lw=0.8, ls="--"))
            right.text(radius * 0.71, -radius * 0.71, f"{res:g} Å", color="C1", fontsize=8)
    edge = f", {2 * pixel_size:.2f} Å" if pixel_size else ""
    right.set_title(f"power spectrum (edge: Nyquist{edge})", fontsize=9)
    right.set_axis_off()
    colour = ACCEPTED if row["decision"] == "accept" else REJECTED
    values = [f"{k} {row[k]:g}" for k in ("motion_A", "ctf_resolution_A", "defocus_um")
              if isinstance(row.get(k), float) and np.isfinite(row[k])]  # fmt: skip
    fig.suptitle(
        f"{_short(Path(str(row['micrograph'])).stem, 60)}: {row['decision']} ({row['reason']}), "
        f"P(accept) {row['p_accept']:.2f}, decided by {row['decided_by']}"
        + (f"\n{', '.join(values)}" if values else ""),
        fontsize=9,
        color=colour,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
