"""``draco evaluate denoise``: score denoised images, against the clean truth or on real data.

Every method (raw, low-pass, Topaz, DRACO) goes through this same code. Predictions are matched
to clean images by file stem (a ``_denoised`` or ``.denoised`` suffix is ignored); a prediction
at another sampling (``--keep-binned``) is Fourier-resized onto the clean grid first.

Real micrographs have no clean image: there the paper's SNR (Eq. 11) is computed from particle
coordinates alone, on signal/background disk pairs fixed by the coordinates, the raw frame and a
seed (saved with ``--pairs`` and reused), and the half-map FRC between denoised ``X_EVN`` and
``X_ODD`` halves is reported where both exist.
"""

from __future__ import annotations

import json
from pathlib import Path

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
from draco_em.imaging.fourier import fourier_resize
from draco_em.io.atomic import visible_files, write_text_atomic
from draco_em.io.coords import read_coord_folder
from draco_em.io.mrc import read_image, read_micrograph

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
        None, gt=0, description="SNR disk radius in px (default: from --diameter, else spacing)."
    )
    diameter: float | None = Field(
        None, gt=0, description="Particle diameter in Å: disk radius = diameter / 2."
    )
    pixel_size: float | None = Field(
        None, gt=0, description="Å/px of the raw/clean frame (pictures carry none)."
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


IMAGE_SUFFIXES = (".mrc", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _stem(path: Path) -> str:
    stem = path.stem
    for suffix in SUFFIXES_IGNORED[:2]:
        stem = stem.removesuffix(suffix)
    return stem


def _index(folder: Path) -> dict[str, dict[str, Path]]:
    """``{micrograph: {"full" | "EVN" | "ODD": path}}`` for the images in a folder."""
    out: dict[str, dict[str, Path]] = {}
    for path in visible_files(folder, IMAGE_SUFFIXES):  # not a killed run's hidden temps
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
) -> dict:
    """PSNR, SSIM, FRC (with a clean image) and the paper's SNR (Eq. 11) of one prediction.

    Args:
        pred: [ny', nx'] prediction; Fourier-resized onto ``shape`` (default: the clean shape).
        clean: [ny, nx] truth, or ``None`` on real data (then only Eq. 11).
        coords: [N, 2] particle centres (x, y) in the ``shape`` frame, used when ``pairs`` is None.
        pairs: precomputed signal/background pairs (so every method is scored on the same ones).
    """
    ny, nx = shape or (clean.shape if clean is not None else pred.shape)
    frame = (int(ny), int(nx))
    if pred.shape != frame:
        pred = fourier_resize(pred, frame)
    out: dict = {}
    if clean is not None:
        out = {"psnr_db": psnr(pred, clean), "ssim": ssim(pred, clean), **frc_summary(pred, clean)}
    if pairs is None and coords is not None and len(coords):
        pairs = pair_regions(coords, frame, radius, n_pairs, exclusion=exclusion)
    if pairs:
        out["snr_db"] = snr_db(pred, pairs, radius)
        out["snr_pairs"] = len(pairs)
    return out


def on_frame(image: np.ndarray, frame: tuple[int, int], path: Path) -> np.ndarray:
    """``image`` [ny', nx'] on the [ny, nx] ``frame``: as it is, or Fourier-resized when it is
    the same field at another sampling (``--keep-binned``: one scale on both axes, each side
    within a pixel of it, as :func:`draco_em.imaging.fourier.rescaled_shape` makes them).

    Raises:
        DracoInputError: another aspect ratio (a crop, a transposed or foreign image), which a
            resize would silently distort into a meaningless score.
    """
    (h, w), (ny, nx) = image.shape, frame
    if (h, w) == (ny, nx):
        return image
    if max((h - 1) / ny, (w - 1) / nx) > min((h + 1) / ny, (w + 1) / nx):
        raise DracoInputError(
            f"shape {tuple(image.shape)} is not the {ny} × {nx} micrograph at another sampling "
            "(the aspect ratio differs): not the same field of view",
            path,
        )
    return fourier_resize(image, frame)


def _default_radius(coords: np.ndarray) -> float:
    """A third of the median nearest-neighbour spacing: inside a particle for packed layouts."""
    if len(coords) < 2:
        return 8.0
    d = np.hypot(coords[:, None, 0] - coords[None, :, 0], coords[:, None, 1] - coords[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return float(max(3.0, np.median(d.min(axis=1)) / 3))


def _match_file(folder: Path | None, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file for ``stem`` in ``folder``: ``stem.ext`` or ``stem_anything.ext`` (not stem2)."""
    if folder is None:
        return None
    for cand in sorted(folder.glob(f"{stem}*")):
        rest = cand.name[len(stem) :]
        if cand.suffix.lower() in suffixes and rest[:1] in (".", "_"):
            return cand
    return None


def _avoid_for(folder: Path | None, stem: str, shape: tuple[int, int]) -> np.ndarray | None:
    cand = _match_file(folder, stem, IMAGE_SUFFIXES)
    if cand is None:
        return None
    mask, _ = read_image(cand, 1.0)
    if mask.shape != tuple(shape):
        raise DracoInputError(f"mask shape {mask.shape} differs from the micrograph {shape}", cand)
    return mask > 0.5


class _Regions:
    """Signal/background pairs per micrograph, computed once from raw + coords and kept in JSON.

    The pairs depend only on the coordinates, the raw frame and the seed, never on a method's
    output, so every method (and a later re-run with ``--pairs``) is scored on the same regions.
    """

    def __init__(self, cfg: EvaluateDenoiseConfig) -> None:
        self.cfg = cfg
        self.stored: dict = {}
        self.new = False
        if cfg.pairs is not None and cfg.pairs.is_dir():
            raise DracoInputError("--pairs names a folder; give a .json file", cfg.pairs)
        if cfg.pairs is not None and cfg.pairs.exists():
            try:
                self.stored = json.loads(cfg.pairs.read_text())["micrographs"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DracoInputError(f"not a pairs file ({exc})", cfg.pairs) from exc
        # The one coordinate reader: a folder of per-micrograph files or one file naming its
        # micrographs (a particles STAR, Topaz text, cryoSPARC .cs), keyed by micrograph stem.
        self.coords = read_coord_folder(cfg.coords) if cfg.coords is not None else {}

    def get(self, stem: str, shape: tuple[int, int], px: float | None) -> tuple[list, float]:
        if stem in self.stored:
            entry = self.stored[stem]
            if tuple(entry["shape"]) != tuple(shape):
                raise DracoInputError(
                    f"pairs for {stem} were made on a {entry['shape']} frame, not {list(shape)}",
                    self.cfg.pairs,
                )
            return [((a, b), (c, d)) for a, b, c, d in entry["pairs"]], float(entry["radius"])
        cfg = self.cfg
        picks = self.coords.get(stem)
        if picks is None or not len(picks):
            return [], 0.0
        coords = picks[["x", "y"]].to_numpy(dtype=np.float64)
        if cfg.radius:
            radius = cfg.radius
        elif cfg.diameter:
            if not px:
                raise DracoInputError(f"--diameter needs a pixel size for {stem} (--pixel-size)")
            radius = cfg.diameter / 2 / px
        else:
            radius = _default_radius(coords)
        avoid = _avoid_for(cfg.masks, stem, shape)
        pairs = pair_regions(coords, shape, radius, cfg.n_pairs, cfg.seed, cfg.exclusion, avoid)
        self.stored[stem] = {"shape": list(shape), "radius": radius,
                             "pairs": [[*s, *b] for s, b in pairs]}  # fmt: skip
        self.new = True
        return pairs, radius

    def save(self) -> None:
        if self.cfg.pairs is None or not self.new or self.cfg.pairs.exists():
            return
        doc = {"seed": self.cfg.seed, "n_pairs": self.cfg.n_pairs, "micrographs": self.stored}
        write_text_atomic(self.cfg.pairs, json.dumps(doc, indent=1))


def _half_frc(
    entry: dict[str, Path], shape: tuple[int, int], px: float | None, raw: dict[str, Path]
) -> dict:
    """Half-map FRC of a denoised ``EVN``/``ODD`` pair on the micrograph's frame and, with the
    raw halves, the cross score of each denoised half against the other raw half ({} without)."""
    if "EVN" not in entry or "ODD" not in entry:
        return {}

    def load(path: Path) -> np.ndarray:
        return on_frame(read_micrograph(path, px)[0], shape, path)

    even, odd = load(entry["EVN"]), load(entry["ODD"])
    out = half_frc_summary(even, odd)
    if "EVN" in raw and "ODD" in raw:
        out["half_cross_db"] = half_cross_db(even, odd, load(raw["EVN"]), load(raw["ODD"]))
    return out


def _summary(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
    return {"n": len(rows), "mean": mean, "per_micrograph": rows}


def evaluate_denoise(cfg: EvaluateDenoiseConfig) -> dict:
    """Score every prediction; returns per-image rows, their means and (with --raw) a raw row.

    With ``clean``: PSNR, SSIM and FRC against the truth. With ``coords``: the paper's SNR
    (Eq. 11) on fixed signal/background pairs, no truth needed. Where the prediction folder holds
    ``X_EVN`` and ``X_ODD``: the half-map FRC between them.
    """
    for folder in (cfg.pred, cfg.clean, cfg.raw, cfg.masks):
        if folder is not None and not folder.is_dir():
            raise DracoInputError("not a folder", folder)
    if cfg.clean is None and cfg.coords is None:
        raise DracoInputError("give --clean (ground truth) or --coords (Eq. 11, real data)")
    preds = _index(cfg.pred)
    clean = {k: v["full"] for k, v in _index(cfg.clean).items() if "full" in v} if cfg.clean else {}
    raw_halves = _index(cfg.raw) if cfg.raw else {}
    raw = {k: v["full"] for k, v in raw_halves.items() if "full" in v}
    regions = _Regions(cfg)
    rows, raw_rows, unscored = [], [], []
    for stem, entry in sorted(preds.items()):
        if cfg.clean is not None and stem not in clean:
            unscored.append(stem)
            continue
        # The frame the coordinates live in: the raw input, else the truth, else the prediction.
        frame = (
            raw.get(stem)
            or clean.get(stem)
            or entry.get("full")
            or entry.get("EVN")
            or entry["ODD"]
        )
        ref, px = read_micrograph(frame, cfg.pixel_size)
        shape = (int(ref.shape[0]), int(ref.shape[1]))
        truth = pred = None
        if stem in clean:
            truth = on_frame(read_micrograph(clean[stem], cfg.pixel_size)[0], shape, clean[stem])
        if "full" in entry:
            pred = on_frame(read_micrograph(entry["full"], cfg.pixel_size)[0], shape, entry["full"])
        pairs, radius = regions.get(stem, shape, px)
        row: dict = {"micrograph": stem}
        if pred is not None:
            row.update(score_image(pred, truth, None, radius, 0, pairs=pairs, shape=shape))
        row.update(_half_frc(entry, shape, cfg.pixel_size, raw_halves.get(stem, {})))
        if len(row) > 1:
            rows.append(row)
        else:  # neither a clean image nor a pair of regions, nor both halves
            unscored.append(stem)
        if stem in raw:
            raw_row = {"micrograph": stem}
            raw_row.update(score_image(ref, truth, None, radius, 0, pairs=pairs))
            halves = raw_halves.get(stem, {})
            raw_row.update(_half_frc(halves, shape, cfg.pixel_size, halves))
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


def _why_nothing_scored(cfg: EvaluateDenoiseConfig, preds: dict, regions: _Regions) -> str:
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
    "snr_db": "paper Eq. 11 SNR (dB), higher is better; REWARDS blur (a wide Gaussian scores well)",
    "half_frc_mean": "mean FRC of denoised EVN vs ODD, higher is better; blur-neutral, but "
    "rewards structure put into both halves alike",
    "half_cross_db": "denoised half vs the other RAW half (dB), higher is better; punishes blur "
    "and leftover noise (needs raw EVN/ODD)",
}


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of mean metrics, one row per method, then a legend of directions.

    A result holding a ``"raw"`` summary (from ``--raw``) gets a "raw input" row above it.
    """
    rows: dict[str, dict] = {}
    for name, res in results.items():
        if "raw" in res:
            rows.setdefault("raw input", res["raw"])
        rows[name] = res
    present = {k for res in rows.values() for k in res["mean"]}
    cols = [c for c in DIRECTIONS if c in present] or ["psnr_db", "ssim", "frc_mean", "snr_db"]
    width = max(14, *(len(n) + 2 for n in rows))
    lines = [f"{'method':<{width}}" + "".join(f"{c:>15}" for c in cols)]
    for name, res in rows.items():
        mean = res["mean"]
        cells = "".join(f"{mean.get(c, float('nan')):>15.3f}" for c in cols)
        lines.append(f"{name:<{width}}{cells}")
    lines += [f"  {c}: {DIRECTIONS[c]}" for c in cols if c in DIRECTIONS]
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
