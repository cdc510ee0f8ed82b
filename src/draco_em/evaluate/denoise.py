"""``draco evaluate denoise``: score denoised images, against the clean truth or on real data.

Every method (raw, low-pass, Topaz, DRACO) goes through this same code. Predictions are matched
to clean images by file stem (a ``_denoised`` or ``.denoised`` suffix is ignored); a prediction
at another sampling (``--keep-binned``) is Fourier-resized onto the micrograph's grid first.
Denoised MRC stacks and volumes (tilt series, tomograms) are scored against their clean ones
section by section.

Real micrographs have no clean image: there the paper's SNR (Eq. 11) is computed from particle
coordinates alone, on signal/background disk pairs fixed by the coordinates, the micrograph's
grid and a seed (:mod:`draco_em.evaluate.regions`; saved with ``--pairs`` and reused), and the
half-map FRC between denoised ``X_EVN`` and ``X_ODD`` halves is reported where both exist.
Coordinates are in the micrograph's pixels: the grid is the raw input's, else the clean
image's, else the prediction's mapped back to the micrograph's sampling (``--pixel-size`` or a
``.cs``'s pixel size against the prediction's header).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
from pydantic import BaseModel, Field

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise_metrics import (
    frc_summary,
    half_cross_db,
    half_frc_summary,
    pair_regions,
    psnr,
    snr_db,
    ssim,
)
from draco_em.evaluate.grid import on_frame, prediction_grid, read_scored, stated_pixel_size
from draco_em.evaluate.regions import IMAGE_SUFFIXES as MICROGRAPH_SUFFIXES
from draco_em.evaluate.regions import RegionPairs
from draco_em.imaging.fourier import fourier_resize
from draco_em.io.atomic import visible_files
from draco_em.io.mrc import STACK_SUFFIXES, read_micrograph

SUFFIXES_IGNORED = ("_denoised", ".denoised", "_EVN", "_ODD")


class EvaluateDenoiseConfig(BaseModel):
    """Options of ``draco evaluate denoise``."""

    pred: Path = Field(description="Folder of denoised images (X.mrc; X_EVN/X_ODD halves).")
    clean: Path | None = Field(None, description="Folder of noise-free images (simulated sets).")
    raw: Path | None = Field(
        None, description="Folder of the raw inputs: scored the same way as a reference row."
    )
    coords: Path | None = Field(
        None,
        description="Particle coordinates: a folder of per-micrograph files, or one file that "
        "names its micrographs (particles STAR, Topaz text, cryoSPARC .cs).",
    )
    masks: Path | None = Field(
        None, description="Folder of per-micrograph maps (>0.5 = contamination) disks avoid."
    )
    radius: float | None = Field(
        None,
        gt=0,
        description="SNR disk radius in micrograph px (default: from --diameter, else spacing).",
    )
    diameter: float | None = Field(
        None, gt=0, description="Particle diameter in Å: disk radius = diameter / 2."
    )
    pixel_size: float | None = Field(
        None,
        gt=0,
        description="Å/px of the micrographs, the grid coordinates are in (pictures carry none; "
        "without --raw or --clean it puts coordinates on a --keep-binned prediction).",
    )
    exclusion: float | None = Field(
        None,
        gt=0,
        description="Min px from a background disk centre to any particle centre "
        "(particle radius + disk radius; default 2 × radius).",
    )
    n_pairs: int = Field(20, ge=1, description="Signal/background pairs per micrograph (Eq. 11).")
    seed: int = Field(0, description="Which particles carry the pairs (same seed, same regions).")
    pairs: Path | None = Field(
        None, description="JSON of region pairs: reused when it exists, else written there."
    )


#: Predictions and clean images: micrographs, and MRC stacks or volumes (tilt series).
IMAGE_SUFFIXES = (*MICROGRAPH_SUFFIXES, *STACK_SUFFIXES)


def _stem(path: Path) -> str:
    stem = path.stem
    for suffix in SUFFIXES_IGNORED[:2]:
        stem = stem.removesuffix(suffix)
    return stem


def _index(folder: Path, stacks: bool = True) -> dict[str, dict[str, Path]]:
    """``{micrograph: {"full" | "EVN" | "ODD": path}}`` for the images in a folder.

    ``stacks``: take ``.mrcs``/``.st``/``.ali`` stacks too (not from --raw, where a movie may
    sit beside its sum); a micrograph beside a stack of the same name wins.
    """
    out: dict[str, dict[str, Path]] = {}
    files = visible_files(folder, IMAGE_SUFFIXES if stacks else MICROGRAPH_SUFFIXES)
    for path in sorted(files, key=lambda p: p.suffix.lower() not in STACK_SUFFIXES):
        if not path.is_file():
            continue
        stem, kind = _stem(path), "full"
        for half in ("EVN", "ODD"):
            if stem.endswith(f"_{half}"):
                stem, kind = _stem(Path(stem.removesuffix(f"_{half}"))), half
        out.setdefault(stem, {})[kind] = path
    return out


def score_image(
    pred: np.ndarray,
    clean: np.ndarray | None,
    coords: np.ndarray | None,
    radius: float,
    n_pairs: int,
    exclusion: float | None = None,
    *,
    pairs: list | None = None,
    shape: tuple[int, int] | None = None,
    pixel_size: float | None = None,
) -> dict:
    """PSNR, SSIM, FRC (with a clean image) and the paper's SNR (Eq. 11) of one prediction.

    Args:
        pred: [ny', nx'] prediction; Fourier-resized onto ``shape`` (default: the clean shape).
        clean: [ny, nx] truth, or ``None`` on real data (then only Eq. 11).
        coords: [N, 2] particle centres (x, y) in the ``shape`` frame, used when ``pairs`` is None.
        pairs: precomputed signal/background pairs (so every method is scored on the same ones).
        pixel_size: Å/px of the ``shape`` frame: adds the FRC 0.5 resolution in Å.
    """
    ny, nx = shape or (clean.shape if clean is not None else pred.shape)
    frame = (int(ny), int(nx))
    if pred.shape != frame:
        pred = fourier_resize(pred, frame)
    out: dict = {}
    if clean is not None:
        out = {"psnr_db": psnr(pred, clean), "ssim": ssim(pred, clean),
               **frc_summary(pred, clean, pixel_size)}  # fmt: skip
    if pairs is None and coords is not None and len(coords):
        pairs = pair_regions(coords, frame, radius, n_pairs, exclusion=exclusion)
    if pairs:
        out["snr_db"] = snr_db(pred, pairs, radius)
        out["snr_pairs"] = len(pairs)
    return out


def _half_frc(
    entry: dict[str, Path],
    shape: tuple[int, int],
    raw: dict[str, Path],
    cfg: EvaluateDenoiseConfig,
    px: float | None,
) -> dict:
    """Half-map FRC of a denoised ``EVN``/``ODD`` pair on the micrograph's frame (``px``: its
    Å/px, for the resolutions) and, with the raw halves, the cross score of each denoised half
    against the other raw half ({} without)."""
    if "EVN" not in entry or "ODD" not in entry:
        return {}

    def load(path: Path) -> np.ndarray:
        image, read_px = read_micrograph(path, cfg.pixel_size)
        return on_frame(image, shape, path, stated_pixel_size(path, read_px), px)

    even, odd = load(entry["EVN"]), load(entry["ODD"])
    out = half_frc_summary(even, odd, px)
    if "EVN" in raw and "ODD" in raw:
        out["half_cross_db"] = half_cross_db(even, odd, load(raw["EVN"]), load(raw["ODD"]))
    return out


def _stack_rows(
    stem: str,
    entry: dict[str, Path],
    pred: np.ndarray,
    clean: Path | None,
    cfg: EvaluateDenoiseConfig,
    regions: RegionPairs,
    pred_px: float | None = None,
) -> list[dict]:
    """A denoised stack or volume (a tilt series) against its clean one, section by section:
    one row per section (PSNR, SSIM, FRC); ``pred_px``: the Å/px its file states."""
    path = entry.get("full") or entry.get("EVN") or entry["ODD"]
    if clean is None or "full" not in entry or regions.needed(stem):
        raise DracoInputError(
            f"a stack of {len(pred)} sections is scored against --clean only, section by "
            "section (Eq. 11 from --coords and the EVN/ODD half-map FRC take single micrographs)",
            path,
        )
    truth, stated = read_scored(clean, cfg.pixel_size)
    if truth.ndim != 3 or len(truth) != len(pred):
        found = f"{len(truth)} sections" if truth.ndim == 3 else "one image"
        raise DracoInputError(f"{len(pred)} sections, but its clean {clean.name} has {found}", path)
    px, shape = cfg.pixel_size or stated, (int(truth.shape[1]), int(truth.shape[2]))
    return [
        {"micrograph": stem, "section": k,
         **score_image(on_frame(p, shape, path, pred_px, px), t, None, 0.0, 0, pixel_size=px)}
        for k, (p, t) in enumerate(zip(pred, truth, strict=True))
    ]  # fmt: skip


def _score(
    stem: str,
    entry: dict[str, Path],
    clean: Path | None,
    raw: dict[str, Path],
    cfg: EvaluateDenoiseConfig,
    regions: RegionPairs,
) -> tuple[list[dict], dict | None]:
    """Rows of one micrograph's prediction (none when nothing could be scored), and its raw
    input's row with --raw (else None).

    Everything is scored on the micrograph's grid, the one coordinates are in: the raw input's,
    else the clean image's, else the prediction's mapped back to the micrograph's sampling
    (:func:`~draco_em.evaluate.grid.prediction_grid`).
    """
    first = entry.get("full") or entry.get("EVN") or entry["ODD"]
    pred, stated = read_scored(first, cfg.pixel_size)
    if pred.ndim == 3:
        return _stack_rows(stem, entry, pred, clean, cfg, regions, stated), None
    truth = raw_image = clean_px = None
    if clean is not None:
        truth, px = read_micrograph(clean, cfg.pixel_size)
        px = clean_px = cfg.pixel_size or stated_pixel_size(clean, px)
    if "full" in raw:
        raw_image, px = read_micrograph(raw["full"], cfg.pixel_size)
        px = cfg.pixel_size or stated_pixel_size(raw["full"], px)
    ref = raw_image if raw_image is not None else truth
    if ref is None:
        shape, px = prediction_grid(stem, first, pred.shape, stated, cfg.pixel_size, regions)
    else:
        shape, px = (int(ref.shape[0]), int(ref.shape[1])), px or regions.pixel_size(stem)
    if truth is not None:
        truth = on_frame(truth, shape, cast(Path, clean), clean_px, px)
    pairs, radius = regions.get(stem, shape, px)
    row: dict = {"micrograph": stem}
    if "full" in entry:
        pred = on_frame(pred, shape, first, stated, px)
        row.update(score_image(pred, truth, None, radius, 0, pairs=pairs, shape=shape,
                               pixel_size=px))  # fmt: skip
    row.update(_half_frc(entry, shape, raw, cfg, px))
    raw_row = None
    if raw_image is not None:
        raw_row = {"micrograph": stem,
                   **score_image(raw_image, truth, None, radius, 0, pairs=pairs, pixel_size=px),
                   **_half_frc(raw, shape, raw, cfg, px)}  # fmt: skip
    # neither a clean image nor a pair of regions, nor both halves: not scored
    return ([row] if len(row) > 1 else []), raw_row


def _summary(rows: list[dict]) -> dict:
    """Means over the rows of every figure (None where no row has a value: a resolution not
    reached), and Eq. 11 pooled over all region pairs (``snr_db_pooled``)."""
    keys = sorted({k for r in rows for k, v in r.items() if v is None or isinstance(v, float)})
    mean: dict[str, float | None] = {}
    for k in keys:
        values = [r[k] for r in rows if isinstance(r.get(k), float) and not np.isnan(r[k])]
        mean[k] = float(np.mean(values)) if values else None
    # The paper's Eq. 11 averages over its N region pairs, pooled over micrographs; snr_db is
    # the mean of per-micrograph values: the same when every micrograph has as many pairs.
    pooled = [(r["snr_db"], r["snr_pairs"]) for r in rows if r.get("snr_pairs")]
    if pooled:
        snr, n = np.array(pooled, dtype=np.float64).T
        mean["snr_db_pooled"] = float(np.sum(snr * n) / np.sum(n))
    return {"n": len(rows), "mean": mean, "per_micrograph": rows}


def evaluate_denoise(cfg: EvaluateDenoiseConfig) -> dict:
    """Score every prediction; returns per-image rows, their means and (with --raw) a raw row.

    With ``clean``: PSNR, SSIM and FRC against the truth (stacks section by section). With
    ``coords``: the paper's SNR (Eq. 11) on fixed signal/background pairs, no truth needed.
    Where the prediction folder holds ``X_EVN`` and ``X_ODD``: the half-map FRC between them.
    """
    for folder in (cfg.pred, cfg.clean, cfg.raw, cfg.masks):
        if folder is not None and not folder.is_dir():
            raise DracoInputError("not a folder", folder)
    if cfg.clean is None and cfg.coords is None:
        raise DracoInputError("give --clean (ground truth) or --coords (Eq. 11, real data)")
    preds = _index(cfg.pred)
    clean = {k: v["full"] for k, v in _index(cfg.clean).items() if "full" in v} if cfg.clean else {}
    raw_halves = _index(cfg.raw, stacks=False) if cfg.raw else {}
    regions = RegionPairs(cfg.coords, cfg.pairs, radius=cfg.radius, diameter=cfg.diameter,
                          exclusion=cfg.exclusion, n_pairs=cfg.n_pairs, seed=cfg.seed,
                          masks=cfg.masks)  # fmt: skip
    rows, raw_rows = [], []
    # A folder named like an image (mic_2.mrc/) was skipped without a word ("1 micrograph").
    unscored = [f"{p.name} (a folder, not an image)" for p in _folders_named_as_images(cfg.pred)]
    for stem, entry in sorted(preds.items()):
        if cfg.clean is not None and stem not in clean:
            unscored.append(stem)
            continue
        scored, raw_row = _score(stem, entry, clean.get(stem), raw_halves.get(stem, {}), cfg,
                                 regions)  # fmt: skip
        rows += scored
        if not scored:
            unscored.append(stem)
        if raw_row is not None:
            raw_rows.append(raw_row)
    if not rows:
        raise DracoInputError(_why_nothing_scored(cfg, preds, regions))
    regions.save()
    result = _summary(rows)
    # Named, not dropped in silence: a mean over fewer micrographs than given is not comparable.
    result["unscored"] = unscored
    if raw_rows:
        result["raw"] = _summary(raw_rows)
    if cfg.pairs is not None:
        result["pairs_file"] = str(cfg.pairs)
    return result


def _folders_named_as_images(folder: Path) -> list[Path]:
    """The folders in ``folder`` whose names end like an image's (``mic_00002.mrc/``)."""
    return [p for p in visible_files(folder, IMAGE_SUFFIXES) if p.is_dir()]


def _why_nothing_scored(cfg: EvaluateDenoiseConfig, preds: dict, regions: RegionPairs) -> str:
    """The one line saying why no prediction got a score."""
    if not preds:
        return f"no image ({', '.join(IMAGE_SUFFIXES)}) in --pred {cfg.pred}"
    if cfg.clean is not None:
        return f"no prediction in {cfg.pred} has a clean image of the same name in {cfg.clean}"
    named = set(regions.coords) & set(preds)
    if not named:
        return (
            f"no micrograph of --coords {cfg.coords} has a prediction of the same name in "
            f"{cfg.pred} (coordinates: {', '.join(sorted(regions.coords)[:3]) or 'none'}; "
            f"predictions: {', '.join(sorted(preds)[:3])})"
        )
    if not any(len(regions.coords[k]) for k in named):
        return f"--coords {cfg.coords} holds no particle for the predictions' micrographs"
    return (
        "no signal/background pair (Eq. 11) fits inside the images: coordinates outside the "
        "micrograph, or a --radius / --exclusion too large for it"
    )


# Every column, which way is better, and what it rewards: the table prints this legend.
DIRECTIONS = {
    "psnr_db": "PSNR vs clean (dB; peak = clean max − min) of the least-squares fit a·pred + b, "
    "higher is better; punishes blur",
    "ssim": "SSIM vs clean of the same fit, higher is better",
    "frc_mean": "mean FRC vs clean, higher is better",
    "frc_0.5_resolution_A": "Å where the FRC vs clean first drops below 0.5 (the criterion "
    "against a noise-free reference), lower is better",
    "snr_db": "paper Eq. 11 SNR (dB), mean of the per-micrograph values, higher is better; "
    "REWARDS blur (a wide Gaussian scores well)",
    "snr_db_pooled": "Eq. 11 over all region pairs of all micrographs pooled, as the paper "
    "averages its N pairs (= snr_db when every micrograph has as many pairs)",
    "half_frc_mean": "mean FRC of denoised EVN vs ODD, higher is better; blur-neutral, but "
    "rewards structure put into both halves alike",
    "half_frc_0.143_resolution_A": "Å where the EVN/ODD FRC first drops below 0.143: the full "
    "sum's resolution by the gold-standard half-map criterion, lower is better",
    "half_frc_0.5_resolution_A": "the same at 0.5 (the older, conservative half-map criterion)",
    "half_cross_db": "denoised half vs the other RAW half (dB), higher is better; punishes blur "
    "and leftover noise (needs raw EVN/ODD)",
}


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of mean metrics, one row per method, then a legend of directions.

    A result holding a ``"raw"`` summary (from ``--raw``) gets a "raw input" row above it. A
    resolution that no micrograph reached by Nyquist reads "not reached" (null in the JSON);
    means of resolutions are over the micrographs that reached them.
    """
    rows: dict[str, dict] = {}
    for name, res in results.items():
        if "raw" in res:
            rows.setdefault("raw input", res["raw"])
        rows[name] = res
    present = {k for res in rows.values() for k in res["mean"]}
    cols = [c for c in DIRECTIONS if c in present] or ["psnr_db", "ssim", "frc_mean", "snr_db"]
    widths = [max(12, len(c) + 2) for c in cols]
    width = max(14, *(len(n) + 2 for n in rows))
    head = "".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    lines = [f"{'method':<{width}}{head}"]
    for name, res in rows.items():
        mean = res["mean"]
        cells = [
            f"{'not reached':>{w}}" if c in mean and mean[c] is None
            else f"{mean.get(c, float('nan')):>{w}.3f}"
            for c, w in zip(cols, widths, strict=True)
        ]  # fmt: skip
        lines.append(f"{name:<{width}}{''.join(cells)}")
    lines += [f"  {c}: {DIRECTIONS[c]}" for c in cols if c in DIRECTIONS]
    return "\n".join(lines)


def count_line(result: dict) -> str:
    """``(N micrographs)``, or with stacks how many of their sections were scored."""
    rows = result["per_micrograph"]
    stacks = {r["micrograph"] for r in rows if "section" in r}
    mics = len({r["micrograph"] for r in rows}) - len(stacks)
    said = [f"{mics} micrograph{'s' * (mics != 1)}"] if mics or not stacks else []
    if stacks:
        sections = sum("section" in r for r in rows)
        said.append(f"{sections} sections of {len(stacks)} stack{'s' * (len(stacks) != 1)}")
    return f"({', '.join(said)})"


def csv_rows(result: dict, method: str) -> list[dict]:
    """The rows of ``-o FILE.csv``: one per scored image (``method`` names the prediction; the
    raw input's rows, with --raw, come first as "raw input")."""
    raw = result.get("raw", {}).get("per_micrograph", [])
    return [{"method": "raw input", **r} for r in raw] + [
        {"method": method, **r} for r in result["per_micrograph"]
    ]
