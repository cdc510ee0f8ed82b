"""``draco evaluate realism``: how far a simulated set sits from real micrographs.

Four figures, each measured per micrograph and summarised per set (issue 17, item 4):

1. **Power spectrum**: every micrograph loses its padded border
   (:func:`~draco_em.imaging.normalize.padded_border`), is Fourier-resampled to one common
   pixel size (default: the coarsest of all inputs; a finer one is refused, so nothing is
   extrapolated) and standardised with the package's contrast-clipped statistics
   (:func:`~draco_em.imaging.normalize.clip_stats`); its Welch-averaged power spectrum (256-px
   Hann-windowed tiles, as the curation baseline computes it) is averaged over rings. Per set:
   the median curve and its min–max band of log10 power against spatial frequency in 1/Å.
2. **Noise-power-spectrum shape**: the log–log slope of that spectrum over the high-frequency
   band (0.5–0.9 × Nyquist; white noise gives 0, a detector MTF or motion-correction
   interpolation a negative slope) and log10 of the ratio of mean power at 0.05–0.2 × Nyquist to
   that at 0.6–0.9 × Nyquist. The spectrum is that of the whole micrograph; at these
   frequencies and doses it is dominated by the noise.
3. **Intensity histogram after normalisation**: skewness and excess kurtosis of the
   standardised pixels (not clipped, so tails show), and the fraction of pixels at the stored
   minimum or maximum (saturation of 8-bit renderings).
4. **Encoder features**: each micrograph's tiles go through the DRACO encoder exactly as for
   curation (:func:`~draco_em.curate.features.micrograph_tiles` and
   :func:`~draco_em.curate.features.encode_tiles`), pooled over tiles to one ``[E]`` vector.
   Inside when the distance between the set means is at most the real micrographs' RMS
   distance to their own mean (their spread); also reported: each micrograph's distance to the
   real mean and the Fréchet distance with diagonal covariances (few micrographs: a full
   covariance would be singular).

A one-line verdict per figure says whether the simulated set sits inside the real spread: for
the scalar figures, the simulated median inside the real [min, max]; for the spectrum, the
simulated median curve inside the real min–max band (± 0.05 decade) at ≥ 90 % of the
frequency bins (32 bins from 0 to Nyquist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from draco_em.errors import DracoInputError
from draco_em.evaluate.results import write_results
from draco_em.imaging.fourier import fourier_rescale, frequency_grid
from draco_em.imaging.normalize import clip_stats, padded_border, saturated_values
from draco_em.imaging.tiling import TileGrid, tile_image
from draco_em.io.atomic import atomic_path
from draco_em.io.batch import (
    check_picture_pixel_size,
    expand_inputs,
    make_output_folder,
    pixel_sizes,
    placeholder_line,
)
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.halves import drop_halves
from draco_em.io.mrc import header_pixel_size_state, read_image, read_micrograph
from draco_em.model.encoder import curate_input, encode_tiles, encoder_tiles, load_encoder
from draco_em.runtime import resolve_device

#: Welch tile side in px at the common pixel size.
WELCH_TILE = 256
#: Bands as fractions of the common Nyquist frequency.
HIGH_BAND = (0.5, 0.9)
RATIO_LOW, RATIO_HIGH = (0.05, 0.2), (0.6, 0.9)
#: Rings averaged into one frequency bin of the reported spectrum (128 rings → 32 bins): a
#: periodogram ring of a few tiles scatters by ~0.1 decade, too much for a min–max test.
RINGS_PER_BIN = 4
#: The real band is widened by this many decades (12 % in power): a min–max band of a few
#: micrographs is narrower than the scatter of a median, and such gaps mean nothing visible.
SPECTRUM_TOLERANCE = 0.05
#: Share of frequency bins that must lie inside the real band for the spectrum to count inside.
INSIDE_SHARE = 0.9
SETS = ("sim", "real")


class RealismConfig(BaseModel):
    """Options of ``draco evaluate realism``."""

    model_config = ConfigDict(extra="forbid")

    sim: list[str] = Field(description="Simulated micrographs: files, folders, globs or a STAR.")
    real: list[str] = Field(description="Real micrographs: files, folders, globs or a STAR.")
    outdir: Path = Field(description="Output folder (realism.json, realism.png).")
    pixel_size: float | None = Field(None, gt=0, description="Å/px of the real micrographs.")
    sim_pixel_size: float | None = Field(
        None, gt=0, description="Å/px of the simulated ones (default: their headers)."
    )
    common_pixel_size: float | None = Field(
        None,
        gt=0,
        description="Compare at this Å/px (default: the coarsest input; never finer).",
    )
    model: str = Field(
        "bundled", description="DRACO encoder for the feature distance (bundled, file or run)."
    )
    features: bool = Field(True, description="Compute the encoder-feature distance.")
    device: str = Field("auto", description="Device for the encoder.")


@dataclass
class Micrograph:
    """Figures of one micrograph (filled by :func:`measure`)."""

    path: str
    pixel_size: float
    shape: tuple[int, int]
    border: tuple[int, int, int, int]
    saturated_fraction: float
    skewness: float = 0.0
    kurtosis: float = 0.0
    hf_slope: float = 0.0
    low_high_log10: float = 0.0
    freq: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spectrum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(0))
    feature: np.ndarray | None = None
    feature_distance: float | None = None

    def record(self) -> dict:
        """JSON-able per-micrograph figures."""
        return {
            "path": self.path,
            "pixel_size": self.pixel_size,
            "shape": list(self.shape),
            "padded_border": list(self.border),
            "saturated_fraction": self.saturated_fraction,
            "skewness": self.skewness,
            "excess_kurtosis": self.kurtosis,
            "hf_slope": self.hf_slope,
            "low_high_log10": self.low_high_log10,
            "feature_distance": self.feature_distance,
        }


#: Histogram bins of the standardised intensities.
HIST_EDGES = np.linspace(-6.0, 6.0, 61)  # 0.2 wide: coarser than most 8-bit grey steps


def _load(
    paths: list[str], pixel_size: float | None, flag: str = "--pixel-size"
) -> list[tuple[Path, float | None]]:
    """Expand inputs; each with its pixel size (override, STAR row, or header).

    Half sums ``X_EVN``/``X_ODD`` beside their full sum ``X`` are left out (a folder of
    ``draco simulate`` or MotionCor2 output holds all three; the halves are the same exposure
    at half the dose, not micrographs of their own). ``flag`` names the option that gives this
    set's pixel size in the error for a picture file without one.
    """
    inputs, _ = drop_halves(expand_inputs(paths))
    try:
        check_picture_pixel_size(inputs, pixel_size)
    except DracoInputError as exc:
        raise DracoInputError(str(exc).replace("--pixel-size", flag)) from None
    return list(pixel_sizes(inputs, pixel_size).items())


def read_cropped(path: Path, pixel_size: float | None) -> tuple[np.ndarray, float, tuple]:
    """A micrograph without its padded border, its pixel size and the border removed."""
    image, px = read_micrograph(path, pixel_size)
    px = pixel_size or px
    if not px:
        raise DracoInputError("pixel size unknown (header says 0): pass --pixel-size", path)
    border = padded_border(image)
    top, bottom, left, right = border
    image = image[top : image.shape[0] - bottom, left : image.shape[1] - right]
    return image, float(px), border


def radial_spectrum(image: np.ndarray, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged Welch power spectrum of a standardised image.

    Args:
        image: ``[H, W]`` image, already standardised.
        pixel_size: its pixel size in Å.

    Returns:
        ``(freq [B] in 1/Å, power [B])`` for rings 1 … tile/2 (DC left out).
    """
    tile = min(WELCH_TILE, *image.shape)
    tiles = tile_image(image, TileGrid(image.shape, tile, overlap=0))
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)
    power = (np.abs(np.fft.rfft2(tiles * window)) ** 2).mean(axis=0) / float((window**2).sum())
    ky, kx = frequency_grid((tile, tile))
    ring = np.rint(np.hypot(ky, kx) * tile).astype(int)  # ring index in units of 1/tile
    n_rings = tile // 2
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=n_rings + 1)
    counts = np.bincount(ring.ravel(), minlength=n_rings + 1)
    rings = np.arange(1, n_rings + 1)
    return rings / (tile * pixel_size), sums[rings] / counts[rings]


def spectrum_shape(freq: np.ndarray, power: np.ndarray, pixel_size: float) -> tuple[float, float]:
    """(high-band log–log slope, log10 low/high power ratio); bands in × Nyquist."""
    nyq = 0.5 / pixel_size
    rel = freq / nyq
    hi = (rel >= HIGH_BAND[0]) & (rel <= HIGH_BAND[1])
    slope = float(np.polyfit(np.log10(freq[hi]), np.log10(power[hi]), 1)[0])
    low = (rel >= RATIO_LOW[0]) & (rel <= RATIO_LOW[1])
    high = (rel >= RATIO_HIGH[0]) & (rel <= RATIO_HIGH[1])
    return slope, float(np.log10(power[low].mean() / power[high].mean()))


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Skewness and excess kurtosis of a standardised sample."""
    x = x.astype(np.float64).ravel()
    x = (x - x.mean()) / (x.std() or 1.0)
    return float(np.mean(x**3)), float(np.mean(x**4) - 3.0)


def measure(path: Path, pixel_size: float | None, common: float) -> Micrograph:
    """Spectrum, spectrum shape and histogram figures of one micrograph (no features)."""
    image, px, border = read_cropped(path, pixel_size)
    # saturation as the normalisation sees it: clipping spikes at the stored min/max
    spikes = saturated_values(image)
    sat = float(np.count_nonzero(np.isin(image, spikes))) / image.size if spikes else 0.0
    work = image
    if abs(px - common) > 1e-3:
        work, _ = fourier_rescale(image, px, common)
    mean, std = clip_stats(work)
    work = (np.asarray(work, np.float32) - np.float32(mean)) / np.float32(std)
    freq, power = radial_spectrum(work, common)
    mic = Micrograph(str(path), px, tuple(image.shape), border, sat)
    mic.skewness, mic.kurtosis = _moments(work)
    mic.hf_slope, mic.low_high_log10 = spectrum_shape(freq, power, common)
    mic.freq, mic.spectrum = _rebin(freq), np.log10(_rebin(power))
    hist, _ = np.histogram(np.clip(work, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
    mic.histogram = hist / max(1, hist.sum())
    return mic


def _rebin(x: np.ndarray) -> np.ndarray:
    """Mean over groups of :data:`RINGS_PER_BIN` consecutive rings (a short last group too)."""
    starts = np.arange(0, len(x), RINGS_PER_BIN)
    return np.add.reduceat(x, starts) / np.diff(np.append(starts, len(x)))


#: The encoder's view of a micrograph as ``draco curate`` sees it by default (its FeatureConfig:
#: 64-px tiles, at most 256, clamped at ±10 σ); evaluate sits below curate, so restated here
#: and checked equal by tests/evaluate/test_realism.py.
FEATURE_TILE, FEATURE_MAX_TILES, FEATURE_CLIP_SIGMA = 64, 256, 10.0


def encoder_features(mics: list[Micrograph], weights: str, device: str) -> int:
    """Pooled DRACO-encoder vector of every micrograph (the curation path's tiles); returns E."""
    encoder = load_encoder(weights, resolve_device(device))
    policy = curate_input(FEATURE_CLIP_SIGMA)
    for mic in mics:
        image, px, _ = read_cropped(Path(mic.path), mic.pixel_size)
        tiles = encoder_tiles(
            image, px, encoder.pixel_size, policy, FEATURE_TILE, FEATURE_MAX_TILES
        )
        mic.feature = encode_tiles(encoder, tiles).mean(axis=0)
    return encoder.dim


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {
        "n": int(v.size),
        "min": float(v.min()),
        "median": float(np.median(v)),
        "max": float(v.max()),
        "mean": float(v.mean()),
    }


def _verdict(name: str, sim: dict, real: dict, fmt: str = "{:.3g}") -> dict:
    """Inside when the simulated median lies within the real [min, max]."""
    lo, hi, med = real["min"], real["max"], sim["median"]
    inside = bool(lo <= med <= hi)
    where = "inside" if inside else ("below" if med < lo else "above")
    note = " (1 real micrograph: no spread)" if real["n"] == 1 else ""
    line = (
        f"{name}: sim median {fmt.format(med)} [{fmt.format(sim['min'])}, "
        f"{fmt.format(sim['max'])}] vs real [{fmt.format(lo)}, {fmt.format(hi)}] → "
        f"{where.upper()} the real spread{note}"
    )
    return {"inside": inside, "verdict": line}


def _spectrum_verdict(freq: np.ndarray, sim: np.ndarray, real: np.ndarray) -> dict:
    """Share of frequency bins where the simulated median log-power lies in the real band."""
    s_med = np.median(sim, axis=0)
    r_lo, r_hi = real.min(axis=0) - SPECTRUM_TOLERANCE, real.max(axis=0) + SPECTRUM_TOLERANCE
    ok = (s_med >= r_lo) & (s_med <= r_hi)
    share = float(ok.mean())
    gaps = []
    for side, mask in (("above", s_med > r_hi), ("below", s_med < r_lo)):
        idx = np.flatnonzero(mask)
        for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if idx.size else []:
            gaps.append(
                f"{side} at {freq[run[0]]:.3g}–{freq[run[-1]]:.3g} 1/Å "
                f"(max {np.max(np.abs(s_med[run] - (r_hi if side == 'above' else r_lo)[run])):.2f}"
                " decades)"
            )
    inside = share >= INSIDE_SHARE
    line = (
        f"power spectrum: sim median inside the real min–max band (± {SPECTRUM_TOLERANCE} "
        f"decade) at {100 * share:.0f} % of "
        f"frequencies → {'INSIDE' if inside else 'OUTSIDE'} the real spread"
        + (f"; {'; '.join(gaps[:4])}" if gaps else "")
    )
    return {"inside": inside, "inside_share": share, "gaps": gaps, "verdict": line}


def _feature(mic: Micrograph) -> np.ndarray:
    if mic.feature is None:
        raise ValueError(f"{mic.path}: no encoder feature computed")
    return mic.feature


def _feature_figures(sim: list[Micrograph], real: list[Micrograph]) -> dict:
    rv = np.stack([_feature(m) for m in real]).astype(np.float64)
    sv = np.stack([_feature(m) for m in sim]).astype(np.float64)
    centre = rv.mean(axis=0)
    distance = {id(m): float(np.linalg.norm(_feature(m) - centre)) for m in (*sim, *real)}
    for m in (*sim, *real):
        m.feature_distance = distance[id(m)]
    real_d = _summary([distance[id(m)] for m in real])
    sim_d = _summary([distance[id(m)] for m in sim])
    rms = float(np.sqrt(np.mean(np.sum((rv - centre) ** 2, axis=1))))
    mean_gap = float(np.linalg.norm(sv.mean(axis=0) - centre))
    var_s, var_r = sv.var(axis=0), rv.var(axis=0)
    frechet = float(
        np.sum((sv.mean(axis=0) - centre) ** 2) + np.sum(var_s + var_r - 2 * np.sqrt(var_s * var_r))
    )
    ratio = mean_gap / rms if rms > 0 else None
    inside = ratio is not None and ratio <= 1.0
    out = {
        "inside": inside,
        "verdict": (
            f"encoder features: set means {mean_gap:.3g} apart = "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'}× the real RMS spread {rms:.3g} → "
            f"{'INSIDE' if inside else 'OUTSIDE'} the real spread (distance to the real mean: "
            f"sim {sim_d['min']:.3g}–{sim_d['max']:.3g}, real {real_d['min']:.3g}–"
            f"{real_d['max']:.3g})" + (" (1 real micrograph: no spread)" if len(real) == 1 else "")
        ),
    }
    out.update(
        {
            "sim_distance": sim_d,
            "real_distance": real_d,
            "real_rms_spread": rms,
            "mean_distance": mean_gap,
            "mean_distance_over_real_spread": ratio,
            "frechet_diag": frechet,
        }
    )
    return out


@releases_folder_locks
def evaluate_realism(cfg: RealismConfig, progress: bool = True) -> dict:
    """Measure both sets, write ``realism.json`` and ``realism.png``; returns the result."""
    from tqdm import tqdm

    lists = {
        "sim": _load(cfg.sim, cfg.sim_pixel_size, "--sim-pixel-size"),
        "real": _load(cfg.real, cfg.pixel_size),
    }
    warnings = []
    for name, items in lists.items():  # a 1.0 Å header is often a placeholder (io.batch)
        flagged = [
            p for p, px in items if px is None and header_pixel_size_state(p) == "placeholder"
        ]
        line = placeholder_line(flagged, len(items))
        if line:
            flag = "--sim-pixel-size" if name == "sim" else "--pixel-size"
            warnings.append(f"{name}: {line.replace('--pixel-size', flag)}")
    pixel_sizes = []
    for name, items in lists.items():
        for path, px in items:
            if px is None:
                px = read_image(path)[1]
                if not px:
                    flag = "--sim-pixel-size" if name == "sim" else "--pixel-size"
                    raise DracoInputError(f"pixel size unknown (header says 0): pass {flag}", path)
            pixel_sizes.append(px)
    common = cfg.common_pixel_size or max(pixel_sizes)
    if common < max(pixel_sizes) - 1e-3:  # the finer grid would hold only zero-padding
        raise DracoInputError(
            f"--common-pixel-size {common:g} Å is finer than an input's {max(pixel_sizes):g} Å: "
            "nothing above that input's Nyquist frequency exists to compare; give "
            f"{max(pixel_sizes):g} Å or coarser"
        )
    mics: dict[str, list[Micrograph]] = {}
    for name, items in lists.items():
        mics[name] = [
            measure(path, px, common)
            for path, px in tqdm(items, desc=f"realism {name}", disable=not progress)
        ]
    # a micrograph smaller than one Welch tile at the common pixel size has a coarser
    # spectrum: every spectrum is interpolated (in log power) onto the coarsest grid
    freq = min((m.freq for ms in mics.values() for m in ms), key=len)
    for ms in mics.values():
        for m in ms:
            m.spectrum = np.interp(freq, m.freq, m.spectrum)
    spec = {k: np.stack([m.spectrum for m in ms]) for k, ms in mics.items()}
    summaries = {
        k: {
            key: _summary([getattr(m, attr) for m in ms])
            for key, attr in (
                ("hf_slope", "hf_slope"),
                ("low_high_log10", "low_high_log10"),
                ("skewness", "skewness"),
                ("excess_kurtosis", "kurtosis"),
                ("saturated_fraction", "saturated_fraction"),
            )
        }
        for k, ms in mics.items()
    }
    figures = {"power_spectrum": _spectrum_verdict(freq, spec["sim"], spec["real"])}
    labels = {
        "hf_slope": f"NPS high-band slope ({HIGH_BAND[0]}–{HIGH_BAND[1]} Nyquist, white = 0)",
        "low_high_log10": "NPS log10 low/high power",
        "skewness": "histogram skewness",
        "excess_kurtosis": "histogram excess kurtosis",
        "saturated_fraction": "saturated fraction",
    }
    for key, label in labels.items():
        figures[key] = _verdict(label, summaries["sim"][key], summaries["real"][key])
    if cfg.features:
        dim = encoder_features([*mics["sim"], *mics["real"]], cfg.model, cfg.device)
        figures["encoder_features"] = _feature_figures(mics["sim"], mics["real"])
        figures["encoder_features"]["embed_dim"] = dim
    result = {
        "common_pixel_size": common,
        "nyquist_per_A": 0.5 / common,
        "sets": {
            k: {
                "n": len(ms),
                "inputs": getattr(cfg, k),
                "summary": summaries[k],
                "micrographs": [m.record() for m in ms],
            }
            for k, ms in mics.items()
        },
        "spectrum": {
            "freq_per_A": freq.tolist(),
            **{
                k: {
                    "median_log10": np.median(v, axis=0).tolist(),
                    "min_log10": v.min(axis=0).tolist(),
                    "max_log10": v.max(axis=0).tolist(),
                }
                for k, v in spec.items()
            },
        },
        "figures": figures,
        "verdicts": [f["verdict"] for f in figures.values()],
        "warnings": warnings,
    }
    make_output_folder(cfg.outdir)
    write_results(cfg.outdir / "realism.json", result)
    plot(result, mics, cfg.outdir / "realism.png")
    return result


def plot(result: dict, mics: dict[str, list[Micrograph]], out: Path) -> Path:
    """2×2 figure: spectrum bands, NPS shape scatter, histograms, feature PCA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"sim": "tab:orange", "real": "tab:blue"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    ax = axes[0, 0]
    freq = np.asarray(result["spectrum"]["freq_per_A"])
    for k in SETS:
        s = result["spectrum"][k]
        ax.fill_between(freq, s["min_log10"], s["max_log10"], color=colours[k], alpha=0.25)
        ax.plot(freq, s["median_log10"], color=colours[k], label=f"{k} (n={len(mics[k])})")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("log10 power (standardised)")
    ax.set_title(f"power spectrum at {result['common_pixel_size']:.3g} Å/px")
    ax.legend()
    ax = axes[0, 1]
    for k in SETS:
        ax.scatter(
            [m.hf_slope for m in mics[k]],
            [m.low_high_log10 for m in mics[k]],
            color=colours[k],
            label=k,
            s=18,
        )
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("high-band log–log slope (white = 0)")
    ax.set_ylabel("log10 low/high power")
    ax.set_title("noise-power-spectrum shape")
    ax.legend()
    ax = axes[1, 0]
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    for k in SETS:
        h = np.stack([m.histogram for m in mics[k]])
        ax.fill_between(centres, h.min(0) + 1e-7, h.max(0) + 1e-7, color=colours[k], alpha=0.25)
        ax.plot(centres, np.median(h, 0) + 1e-7, color=colours[k], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("standardised intensity")
    ax.set_ylabel("fraction of pixels")
    ax.set_title("intensity histogram after normalisation")
    ax.legend()
    ax = axes[1, 1]
    feats = [m.feature for k in SETS for m in mics[k] if m.feature is not None]
    if len(feats) == sum(len(mics[k]) for k in SETS) and len(feats) >= 2:
        x = np.stack(feats).astype(np.float64)
        x -= x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T
        n_sim = len(mics["sim"])
        for k, sel in (("sim", slice(0, n_sim)), ("real", slice(n_sim, None))):
            ax.scatter(xy[sel, 0], xy[sel, 1], color=colours[k], label=k, s=18)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend()
    ax.set_title("DRACO encoder features (pooled tiles, PCA)")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out


def format_verdicts(result: dict) -> str:
    """The verdict lines, one per figure."""
    head = (
        f"sim n={result['sets']['sim']['n']} vs real n={result['sets']['real']['n']} at "
        f"{result['common_pixel_size']:.3g} Å/px"
    )
    return "\n".join([head, *result["verdicts"]])
