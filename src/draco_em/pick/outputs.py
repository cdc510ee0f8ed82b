"""The files of a ``draco pick predict`` output folder other than the per-micrograph STARs:
each micrograph's candidates (``scores/<stem>.npy``), what a resumed run reads back of an
earlier one (its picks, scores and cut-off), the overlay previews, and the collective files
written over every micrograph at the end (``coordinate_files.star``, ``box/``, Topaz, cryoSPARC,
the score histogram). The batch itself is :mod:`draco_em.pick.run`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path
from draco_em.io.coords import (
    PICKS_CS,
    PICKS_TOPAZ,
    make_coords,
    read_coords,
    write_box,
    write_coordinate_index,
    write_cs,
    write_topaz,
)
from draco_em.io.images import is_raster
from draco_em.io.mrc import read_image, read_mrc
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.predict import Picker
from draco_em.pick.report import save_histogram, save_overlay

SCORES_FOLDER = "scores"  # <stem>.npy: each micrograph's candidates (CANDIDATE_DTYPE)
#: A stored candidate: its place (input px), score, and whether an excluded region dropped it.
#: ``--recut`` cuts a finished micrograph again from these without the network; the histogram
#: counts those not excluded. Folders from before session 23 hold the scores alone (float32).
CANDIDATE_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("score", "<f4"), ("excluded", "?")])


def save_candidates(path: Path, cands: pd.DataFrame, dropped: pd.DataFrame) -> None:
    """``scores/<stem>.npy``: every candidate ≥ the floor (:data:`CANDIDATE_DTYPE`)."""
    arr = np.zeros(len(cands) + len(dropped), CANDIDATE_DTYPE)
    both = pd.concat([cands, dropped], ignore_index=True) if len(dropped) else cands
    for field in ("x", "y", "score"):
        arr[field] = both[field].to_numpy(np.float64) if len(both) else 0
    arr["excluded"][len(cands) :] = True
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)


def stored_candidates(path: Path) -> np.ndarray | None:
    """The stored candidates, a plain score array (older folders), or None without a file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def resumed_scores(path: Path, kept: pd.DataFrame) -> np.ndarray:
    """Candidate scores of a micrograph picked by an earlier run (``scores/<stem>.npy``, those
    outside excluded regions); a folder from before they were kept gives the picks' own scores
    (those above the threshold)."""
    arr = stored_candidates(path)
    if arr is None:
        return pd.to_numeric(kept["score"], errors="coerce").dropna().to_numpy(np.float32)
    if arr.dtype.names:
        return arr["score"][~arr["excluded"]].astype(np.float32)
    return np.asarray(arr, np.float32)


def recut_candidates(path: Path, micrograph: Path) -> pd.DataFrame:
    """A finished micrograph's candidates, all of them (excluded regions are applied again),
    for ``--recut``.

    Raises:
        DracoInputError: the folder kept no positions (picked before session 23).
    """
    arr = stored_candidates(path)
    if arr is None or not arr.dtype.names:
        raise DracoInputError(
            "picked before its candidates were kept: --recut cannot cut it again; pick it "
            "again with --overwrite",
            path,
        )
    return make_coords(str(micrograph), arr["x"], arr["y"], score=arr["score"])


def mark_resumed_threshold(
    cfg: PickPredictConfig, picker: Picker, kept: pd.DataFrame, scores: np.ndarray
) -> None:
    """Set ``kept.attrs`` ``threshold`` and ``pre_denoised_threshold`` of a micrograph picked
    by an earlier run as :func:`pick_one` set them, without reading the image again: its
    preview, the histogram's mark and the summary line would otherwise give the stored
    threshold where the pre-denoised one cut it (or, with ``--expected-particles``, where its
    N-th best score did).

    ``scores``: its candidate scores (``scores/<stem>.npy``); of the picker's two cut-offs, the
    pre-denoised one made the STAR when it, and not the stored one, keeps as many candidates
    as the STAR holds. Where both keep the same picks, either mark is right for them and the
    stored one is given (the summary then does not count that micrograph as pre-denoised).
    """
    n = len(kept)
    if cfg.expected_particles is not None:
        threshold = float(kept["score"].min()) if n else 1.0
    else:
        low, threshold = picker.threshold_predenoised, picker.threshold
        # the low cut keeps exactly the STAR's picks and the stored one does not
        if low is not None and (scores >= low).sum() == n != (scores >= threshold).sum():
            threshold = low
    kept.attrs["threshold"] = threshold
    kept.attrs["pre_denoised_threshold"] = (
        cfg.expected_particles is None and threshold != picker.threshold
    )


def resumed_picks(star, path, pixel_size: float | None) -> pd.DataFrame:
    """Picks of a finished micrograph, with the size and pixel size its outputs need."""
    kept = read_coords(star)
    if is_raster(path):  # a picture file has no header to map: read it
        image, px = read_image(path, pixel_size)
        shape = image.shape
    else:
        mrc = read_mrc(path, pixel_size=pixel_size, mmap=True)
        shape, px = mrc.data.shape[-2:], mrc.pixel_size
    kept["micrograph_ny"], kept["micrograph_nx"] = shape
    kept["pixel_size"] = pixel_size or px
    kept.attrs["pixel_size"] = pixel_size or px
    return kept


def save_preview(path: Path, image: np.ndarray, kept: pd.DataFrame, picker: Picker) -> None:
    """The overlay PNG of one micrograph: its picks as circles of the particle's radius."""
    px = kept.attrs.get("pixel_size")
    radius = picker.diameter / 2 / float(px) if px else 1
    threshold = kept.attrs.get("threshold", picker.threshold)
    save_overlay(path, image, kept, radius, pixel_size=px, threshold=threshold)


def write_collective(cfg, picker: Picker, index: dict, kept: list, scores: list) -> None:
    """The files over every micrograph listed (``index``: picked or resumed in this run). One
    with nothing to list is removed: an earlier run's would list picks this run does not (a
    micrograph whose redo failed, io.resume.failed_redo, or no picks left)."""
    out = cfg.outdir
    if index:
        write_coordinate_index(out / "coordinate_files.star", index)
    else:
        (out / "coordinate_files.star").unlink(missing_ok=True)
    table = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    if "box" in cfg.formats:  # one file per micrograph, empty when nothing was picked
        for path, df in zip(index, kept, strict=True):
            write_box(out / "box" / f"{Path(path).stem}.box", df, box_size(cfg, picker, df))
    if "topaz" in cfg.formats and len(table):
        write_topaz(out / PICKS_TOPAZ, table)
    elif "topaz" in cfg.formats:
        (out / PICKS_TOPAZ).unlink(missing_ok=True)
    if "cs" in cfg.formats and len(table) and "micrograph_ny" in table:
        write_cs(out / PICKS_CS, table)  # each micrograph's own pixel size (pixel_size column)
    elif "cs" in cfg.formats:
        (out / PICKS_CS).unlink(missing_ok=True)
    if cfg.previews and scores:
        threshold = picker.threshold
        if cfg.expected_particles is not None:  # a cut-off per micrograph: mark their median
            cuts = [float(k["score"].min()) for k in kept if len(k)]
            threshold = float(np.median(cuts)) if cuts else threshold
        else:  # the stored and the pre-denoised threshold: mark the median micrograph's
            cuts = [float(k.attrs["threshold"]) for k in kept if "threshold" in k.attrs]
            threshold = float(np.median(cuts)) if cuts else threshold
        save_histogram(out / "score_histogram.png", np.concatenate(scores), threshold)


def box_size(cfg: PickPredictConfig, picker: Picker, df: pd.DataFrame) -> int:
    """Box edge in input px: --box-size, else 1.5 diameters."""
    if cfg.box_size:
        return int(cfg.box_size)
    px = float(df["pixel_size"].iloc[0]) if "pixel_size" in df and len(df) else 1.0
    return max(2, round(1.5 * picker.diameter / px))
