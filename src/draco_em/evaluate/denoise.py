"""``draco evaluate denoise``: score a folder of denoised images against the clean truth.

Every method (raw, low-pass, Topaz, DRACO) goes through this same code. Predictions are matched
to clean images by file stem (a ``_denoised`` or ``.denoised`` suffix is ignored); a prediction
at another sampling (``--keep-binned``) is Fourier-resized onto the clean grid first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise_metrics import frc_summary, pair_regions, psnr, snr_db, ssim
from draco_em.imaging.fourier import fourier_resize
from draco_em.io.coords import read_coords
from draco_em.io.mrc import read_image

SUFFIXES_IGNORED = ("_denoised", ".denoised", "_EVN", "_ODD")


class EvaluateDenoiseConfig(BaseModel):
    """Options of ``draco evaluate denoise``."""

    pred: Path = Field(description="Folder of denoised MRC images.")
    clean: Path = Field(description="Folder of noise-free MRC images (e.g. simulate's clean/).")
    coords: Path | None = Field(None, description="Folder of per-micrograph coordinate files.")
    radius: float | None = Field(
        None, gt=0, description="SNR disk radius in px (default: from coordinate spacing)."
    )
    exclusion: float | None = Field(
        None,
        gt=0,
        description="Min px from a background disk centre to any particle centre "
        "(particle radius + disk radius; default 2 × radius).",
    )
    n_pairs: int = Field(20, ge=1, description="Signal/background pairs per micrograph (Eq. 11).")


def _stem(path: Path) -> str:
    stem = path.stem
    for suffix in SUFFIXES_IGNORED[:2]:
        stem = stem.removesuffix(suffix)
    return stem


def score_image(
    pred: np.ndarray,
    clean: np.ndarray,
    coords: np.ndarray | None,
    radius: float,
    n_pairs: int,
    exclusion: float | None = None,
) -> dict:
    """PSNR, SSIM, FRC and (with coordinates) the paper's SNR of one prediction."""
    if pred.shape != clean.shape:
        pred = fourier_resize(pred, clean.shape)
    out = {"psnr_db": psnr(pred, clean), "ssim": ssim(pred, clean), **frc_summary(pred, clean)}
    if coords is not None and len(coords):
        pairs = pair_regions(coords, clean.shape, radius, n_pairs, exclusion=exclusion)
        out["snr_db"] = snr_db(pred, pairs, radius)
        out["snr_pairs"] = len(pairs)
    return out


def _default_radius(coords: np.ndarray) -> float:
    """A third of the median nearest-neighbour spacing: inside a particle for packed layouts."""
    if len(coords) < 2:
        return 8.0
    d = np.hypot(coords[:, None, 0] - coords[None, :, 0], coords[:, None, 1] - coords[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return float(max(3.0, np.median(d.min(axis=1)) / 3))


def _coords_for(folder: Path | None, stem: str) -> np.ndarray | None:
    if folder is None:
        return None
    for cand in sorted(folder.glob(f"{stem}*")):
        if cand.suffix.lower() in (".star", ".box", ".txt", ".csv"):
            df = read_coords(cand)
            return df[["x", "y"]].to_numpy(dtype=np.float64)
    return None


def evaluate_denoise(cfg: EvaluateDenoiseConfig) -> dict:
    """Score every prediction with a clean partner; returns per-image rows and their means."""
    for folder in (cfg.pred, cfg.clean):
        if not folder.is_dir():
            raise DracoInputError("not a folder", folder)
    clean = {p.stem: p for p in sorted(cfg.clean.glob("*.mrc"))}
    rows = []
    for path in sorted(cfg.pred.glob("*.mrc")):
        stem = _stem(path)
        if stem not in clean:
            continue
        pred, _ = read_image(path)
        truth, _ = read_image(clean[stem])
        coords = _coords_for(cfg.coords, stem)
        radius = cfg.radius or (_default_radius(coords) if coords is not None else 8.0)
        rows.append(
            {
                "micrograph": stem,
                **score_image(pred, truth, coords, radius, cfg.n_pairs, cfg.exclusion),
            }
        )
    if not rows:
        raise DracoInputError(f"no prediction in {cfg.pred} has a clean image of the same name "
                              f"in {cfg.clean}")  # fmt: skip
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
    return {"n": len(rows), "mean": mean, "per_micrograph": rows}


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of mean metrics, one row per method."""
    cols = ["psnr_db", "ssim", "frc_mean", "snr_db"]
    lines = [f"{'method':<14}" + "".join(f"{c:>12}" for c in cols)]
    for name, res in results.items():
        mean = res["mean"]
        cells = "".join(f"{mean.get(c, float('nan')):>12.3f}" for c in cols)
        lines.append(f"{name:<14}{cells}")
    return "\n".join(lines)


def dump_json(obj: dict) -> str:
    """JSON text with NaN/inf written as null (strict JSON)."""

    def clean(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2)
