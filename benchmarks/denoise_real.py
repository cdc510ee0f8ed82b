"""Denoising on REAL micrographs, scored without a clean image (issue 20).

Every method's output goes through `draco evaluate denoise` with `--raw` and `--coords` (no
`--clean`): the paper's SNR (Eq. 11) on signal disks at particle coordinates and background disks
nearby, clear of every particle (and of contamination where a mask exists). The pairs are made
once from the raw frame + coordinates + seed 0, saved as JSON and reused for every method.

Sets:
- `mce`: the real contaminated micrograph of micrograph_cleaner_em (959 x 927 px, a ~4x binned K2
  sum; its pixel size is unknown, ~4 Å/px assumed) with its 45 RELION autopicks (not verified
  truth; many sit on the ice blob). Particle box 46 px in that frame (the package's own test);
  disks of radius 15 px (diameter 120 Å at the assumed 4 Å/px). Scored twice: with the
  MicrographCleaner mask (>0.5) keeping disks off contamination, and with all picks.
- `particles` (``--particles``): the 7 real particle images of EMPIAR-10076 (E. coli 50S
  assembly intermediates, cryoDRGN's test data; 320 x 320 px at 1.31 Å/px, raw single exposures,
  normalised), each written as its own image with one coordinate at its centre. The only real
  *raw* images here besides `mce` whose pixel size is known. A particle spans ~120-160 px, so the
  disks are fixed at radius 40 px (52 Å) with background centres >= 115 px from the centre
  (particle radius ~70 px + disk radius 40 px + margin): one pair per image, 7 pairs. (ASPIRE's
  17 real 80S particles are not used: their 268 Å box holds no background clear of a ~300 Å
  ribosome.)
- `rings` (``--rings``, session 17): the real MicAssess micrograph of apoferritin-sized rings
  (``pick_micassess_rings.py``: raw, not pre-denoised, Fourier-binned to 494 × 512 at ~7 Å/px,
  8-bit PNG) with that script's template-matching reference as the coordinates (ours, not
  expert picks; 267 rings), diameter 125 Å, the evaluator's default disks.
- `empiar10017`: central 1024² crops of real EMPIAR-10017 micrographs (1.77 Å/px, expert picks,
  particle diameter 190 Å). These JPEGs are ALREADY DENOISED renderings, so "raw" here is a
  denoised image and every method is a second denoiser on top of it.

Methods: raw; Gaussian low-pass 20 Å (cryoSPARC); the simulated-set best Gaussian (σ = 2.0 px at
1.06 Å/px = 2.12 Å, chosen with the clean image in benchmarks/denoise.py); wider Gaussians
(σ in px, to show that Eq. 11 rewards blur); Topaz-Denoise pretrained `unet` (its own venv);
`draco denoise` (bundled weights).

No real set here has odd/even halves, so the blur-punishing metric of these tables is missing on
real data (the half-map FRC needs `_EVN`/`_ODD`); see docs/benchmarks.md, "Denoising on real
micrographs".

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_real.py --work /tmp/denoise_real \
        --topaz-venv /work/venvs/topaz [--empiar 3] [--particles] [--rings] [--speed] \
        [--twin particles=8] [--twin mce=8] [--draco v2=WEIGHTS] \
        [--lowpass-sweep 10 20 40 80 160]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise, format_table
from draco_em.evaluate.denoise_metrics import disk_mask
from draco_em.imaging.filters import gaussian_blur_px, gaussian_lowpass
from draco_em.io.coords import make_coords, read_coords, write_relion_coords
from draco_em.io.mrc import read_image, read_mrc, write_mrc

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MCE = DATA / "micrograph_cleaner_em"
EMPIAR = DATA / "empiar10017"
MCE_PIXEL = 4.0  # assumed: header says 1.0 (placeholder); 959 x 927 = K2 frame / 4
MCE_DIAMETER = 120.0  # Å at the assumed pixel size = 30 px (box 46 px)
EMPIAR_PIXEL, EMPIAR_DIAMETER = 1.77, 190.0
PARTICLES = DATA / "cryodrgn" / "empiar_10076_7.mrc"
PARTICLE_PIXEL = 1.31  # Å/px: rlnDetectorPixelSize 5 µm / rlnMagnification 38168 (its STAR)
PARTICLE_RADIUS_PX, PARTICLE_EXCLUSION_PX = 40.0, 115.0  # fixed before any method was scored
SIM_BEST_SIGMA_A = 2.0 * 1.06  # best Gaussian on the simulated held-out set (docs/benchmarks.md)
WIDE_SIGMAS_PX = (2.0, 4.0, 8.0)


def run(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def draco(
    files: list[Path], out: Path, pixel_size: float, weights: str = "bundled", extra=()
) -> float:
    cmd = [sys.executable, "-m", "draco_em", "denoise", *map(str, files), "-o", str(out),
           "--model", weights, "--pixel-size", str(pixel_size), "--no-skip-existing",
           "--no-progress", "--workers", "0", "--no-bf16", *extra]  # fmt: skip
    # float32, as every earlier row of these tables (bf16 changes PSNR by 0.002 dB; --speed
    # times draco denoise's default).
    return run(cmd)


def topaz(venv: Path, files: list[Path], out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(venv / "bin" / "topaz"), "denoise", "-m", "unet", "-d", "-1", "-o", str(out),
           *map(str, files)]  # fmt: skip
    return run(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"}, stdout=subprocess.DEVNULL)


#: Extra low-pass cut-offs in Å (``--lowpass-sweep``): each written as ``lowpass_{Å}A`` and scored
#: like any method, to measure how Eq. 11 grows with blur on the set itself (session 26).
LOWPASS_SWEEP_A: list[float] = []


def classical(raw: dict[str, np.ndarray], pred: Path, pixel_size: float) -> None:
    for stem, im in raw.items():
        for res in sorted({20.0, *LOWPASS_SWEEP_A}):
            write_mrc(pred / f"lowpass_{res:g}A" / f"{stem}.mrc",
                      gaussian_lowpass(im, pixel_size, res), pixel_size)  # fmt: skip
        sigma = SIM_BEST_SIGMA_A / pixel_size
        write_mrc(pred / "gauss_sim_best" / f"{stem}.mrc", gaussian_blur_px(im, sigma), pixel_size)
        for s in WIDE_SIGMAS_PX:
            write_mrc(pred / f"gauss_{s:g}px" / f"{stem}.mrc", gaussian_blur_px(im, s), pixel_size)


def prepare_mce(work: Path) -> tuple[Path, Path, Path]:
    raw, coords, masks = (work / "mce" / d for d in ("raw", "coords", "masks"))
    for d in (raw, coords, masks):
        d.mkdir(parents=True, exist_ok=True)
    links = {
        raw / "Ucsf_stack_1142_DW.mrc": MCE / "Ucsf_stack_1142_DW.mrc",
        coords / "Ucsf_stack_1142_DW.star": MCE / "Ucsf_stack_1142_DW_autopick.star",
        masks / "Ucsf_stack_1142_DW.mrc": MCE / "Ucsf_stack_1142_DW_mask.mrc",
    }
    for dst, src in links.items():
        if not dst.exists():
            dst.symlink_to(src)
    return raw, coords, masks


def prepare_empiar(work: Path, n: int, crop: int = 1024) -> tuple[Path, Path]:
    """Central ``crop``² of the first ``n`` micrographs as MRC, picks shifted into the crop."""
    raw, coords = work / "empiar" / "raw", work / "empiar" / "coords"
    raw.mkdir(parents=True, exist_ok=True)
    coords.mkdir(parents=True, exist_ok=True)
    for jpg in sorted((EMPIAR / "micrographs").glob("*.jpg"))[:n]:
        im, _ = read_image(jpg, EMPIAR_PIXEL)
        y0, x0 = (im.shape[0] - crop) // 2, (im.shape[1] - crop) // 2
        write_mrc(raw / f"{jpg.stem}.mrc", im[y0 : y0 + crop, x0 : x0 + crop], EMPIAR_PIXEL)
        df = read_coords(next((EMPIAR / "coordinates").glob(f"{jpg.stem}*.star")))
        df["x"], df["y"] = df["x"] - x0, df["y"] - y0
        keep = (df.x >= 0) & (df.x < crop) & (df.y >= 0) & (df.y < crop)
        df = df[keep].assign(micrograph=jpg.stem)
        write_relion_coords(coords / f"{jpg.stem}.star", df)
    return raw, coords


#: Extra ``draco denoise`` weights to score beside the bundled ones ({folder: weights}; --draco).
EXTRA_DRACO: dict[str, str] = {}
EXTRA_ARGS: list[str] = []  # --draco-args: options of the --draco rows


def prepare_particles(work: Path) -> tuple[Path, Path]:
    """Each real EMPIAR-10076 particle image as its own MRC, one coordinate at its centre."""
    raw, coords = work / "particles" / "raw", work / "particles" / "coords"
    raw.mkdir(parents=True, exist_ok=True)
    coords.mkdir(parents=True, exist_ok=True)
    stack = read_mrc(PARTICLES, pixel_size=PARTICLE_PIXEL, ndim=(3,)).data
    for i, im in enumerate(stack, 1):
        stem = f"empiar10076_p{i}"
        write_mrc(raw / f"{stem}.mrc", np.asarray(im, np.float32), PARTICLE_PIXEL)
        ny, nx = im.shape
        write_relion_coords(coords / f"{stem}.star", make_coords(stem, [nx / 2], [ny / 2]))
    return raw, coords


def denoise_all(raw: Path, pred: Path, pixel_size: float, venv: Path | None) -> dict:
    files = sorted(raw.glob("*.mrc"))
    images = {p.stem: read_image(p, pixel_size)[0] for p in files}
    classical(images, pred, pixel_size)
    seconds: dict = {}
    # Denoised outputs already there are reused (a re-run only re-scores); delete to re-time.
    for name, weights in {"draco": "bundled", **EXTRA_DRACO}.items():
        if not all((pred / name / p.name).exists() for p in files):
            extra = EXTRA_ARGS if name in EXTRA_DRACO else ()
            seconds[name] = draco(files, pred / name, pixel_size, weights, extra)
    if venv and not all((pred / "topaz_unet" / p.name).exists() for p in files):
        seconds["topaz_unet"] = topaz(venv, files, pred / "topaz_unet")
    return seconds


def score(pred: Path, raw: Path, coords: Path, pixel_size: float, diameter: float,
          pairs: Path, masks: Path | None = None, radius: float | None = None,
          exclusion: float | None = None) -> dict:  # fmt: skip
    results = {}
    for folder in sorted(p for p in pred.iterdir() if p.is_dir()):
        cfg = EvaluateDenoiseConfig(
            pred=folder, raw=raw, coords=coords, masks=masks, pixel_size=pixel_size,
            diameter=diameter, pairs=pairs, radius=radius, exclusion=exclusion,
        )  # fmt: skip
        results[folder.name] = evaluate_denoise(cfg)
    return results


def figure(
    raw: Path,
    pred: Path,
    out: Path,
    box: tuple[int, int, int],
    pixel_size: float,
    extra: tuple[tuple[str, str], ...] = (),
    extra_before_bundled: bool = False,
    bundled: str = "draco",
) -> None:
    """Raw / low-pass / Topaz / draco (+ ``extra`` (title, prediction folder) panels) on a real
    crop, each panel with its own 1–99 % window. ``bundled``: the prediction folder shown as
    "draco (bundled)" (``draco`` holds the model bundled when the work folder was first made)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x0, y0, size = box
    stem = sorted(raw.glob("*.mrc"))[0].name
    panels = [("raw", raw / stem), ("low-pass 20 Å", pred / "lowpass_20A" / stem),
              ("Topaz-Denoise unet", pred / "topaz_unet" / stem)]  # fmt: skip
    bundled = [("draco (bundled)", pred / bundled / stem)]
    others = [(title, pred / folder / stem) for title, folder in extra]
    panels += others + bundled if extra_before_bundled else bundled + others
    panels = [(n, p) for n, p in panels if p.exists()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.3))
    for ax, (name, path) in zip(axes, panels, strict=True):
        image = read_image(path, pixel_size)[0][y0 : y0 + size, x0 : x0 + size]
        lo, hi = np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    plt.close(fig)


def eq11_terms(folder: Path, pairs_json: Path, radius: float, pixel_size: float) -> dict:
    """Eq. 11 split into its two terms, each in dB of the output image's own variance:
    contrast = mean 10 log10((μ_s − μ_b)² / var(image)), background = mean 10 log10(v_b /
    var(image)); Eq. 11 = contrast − background. Says whether a method loses on particle
    contrast or on leftover background variance."""
    contrast, background = [], []
    for stem, entry in json.loads(pairs_json.read_text())["micrographs"].items():
        im = read_image(folder / f"{stem}.mrc", pixel_size)[0].astype(np.float64)
        total = im.var()
        for sx, sy, bx, by in entry["pairs"]:
            sig = im[disk_mask(im.shape, sx, sy, radius)]
            bg = im[disk_mask(im.shape, bx, by, radius)]
            contrast.append(10 * np.log10((sig.mean() - bg.mean()) ** 2 / total))
            background.append(10 * np.log10(bg.var() / total))
    return {"contrast_db": float(np.mean(contrast)), "background_db": float(np.mean(background))}


TRANSFER_BANDS_A = ((40, 20), (20, 12), (12, 8), (8, 6), (6, 4.5))  # (coarse, fine) Å


def band_transfer(raw: Path, folder: Path, pixel_size: float) -> list[float]:
    """Per band of :data:`TRANSFER_BANDS_A`, the share of the output's variance in that band
    over the raw image's share (the ring-averaged spectra of ``draco evaluate realism``,
    weighted by ring circumference; mean over images): > 1 where a method keeps relatively more
    of a band than the raw image has, ~0 where it removes it."""
    from draco_em.evaluate.realism import radial_spectrum

    def shares(image: np.ndarray) -> np.ndarray:
        freq, power = radial_spectrum((image - image.mean()) / image.std(), pixel_size)
        weighted = power * freq  # a ring's pixel count grows with its radius
        bands = [weighted[(freq >= 1 / lo) & (freq < 1 / hi)].sum() for lo, hi in TRANSFER_BANDS_A]
        return np.array(bands) / weighted.sum()

    ratios = []
    for f in sorted(raw.glob("*.mrc")):
        r = shares(read_image(f, pixel_size)[0].astype(np.float64))
        ratios.append(shares(read_image(folder / f.name, pixel_size)[0].astype(np.float64)) / r)
    return [float(v) for v in np.mean(ratios, axis=0)]


def particle_figure(raw: Path, pred: Path, out: Path, rows: tuple[tuple[str, str], ...]) -> None:
    """Every particle image (columns) under raw and each (title, prediction folder) of ``rows``
    that exists, each panel with its own 1–99 % window; the Eq. 11 disks drawn on the raw row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stems = [p.name for p in sorted(raw.glob("*.mrc"))]
    panels = [("raw", raw)] + [(t, pred / f) for t, f in rows if (pred / f).is_dir()]
    fig, axes = plt.subplots(len(panels), len(stems), figsize=(1.6 * len(stems), 1.7 * len(panels)),
                             squeeze=False)  # fmt: skip
    for r, (title, folder) in enumerate(panels):
        for c, stem in enumerate(stems):
            image = read_image(folder / stem, PARTICLE_PIXEL)[0]
            lo, hi = np.percentile(image, [1, 99])
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:  # the signal disk and the first background position pair_regions tries
                ny, nx = image.shape
                for cx in (nx / 2, nx / 2 + PARTICLE_EXCLUSION_PX):
                    ax.add_patch(plt.Circle((cx, ny / 2), PARTICLE_RADIUS_PX, fill=False,
                                            color="yellow", lw=0.6))  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=70)
    plt.close(fig)
    from PIL import Image

    Image.open(out).convert("L").save(out, optimize=True)  # grey: half the bytes in docs/img


def crop_correlations(raw: Path, pred: Path, box: tuple[int, int, int]) -> dict[str, float]:
    """Pearson correlation of each method's output with the raw image on one crop: how much of
    the raw image (noise included) a method keeps (1 = nothing removed)."""
    x0, y0, size = box
    stem = sorted(raw.glob("*.mrc"))[0].name
    ref = read_image(raw / stem)[0][y0 : y0 + size, x0 : x0 + size].ravel()
    out = {}
    for folder in sorted(p for p in pred.iterdir() if (p / stem).exists()):
        im = read_image(folder / stem)[0][y0 : y0 + size, x0 : x0 + size].ravel()
        out[folder.name] = round(float(np.corrcoef(ref, im)[0, 1]), 3)
    return out


def speed(work: Path, weights: str = "bundled") -> dict:
    """Seconds and peak RSS of `draco denoise` on one real 4096² micrograph (EMPIAR JPEG → MRC)."""
    src = sorted((EMPIAR / "micrographs").glob("*.jpg"))[0]
    mrc = work / "speed" / f"{src.stem}.mrc"
    mrc.parent.mkdir(parents=True, exist_ok=True)
    write_mrc(mrc, read_image(src, EMPIAR_PIXEL)[0], EMPIAR_PIXEL)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "draco_em", "denoise", str(mrc), "-o", str(work / "speed_out"),
           "--model", weights, "--pixel-size", str(EMPIAR_PIXEL), "--no-skip-existing",
           "--no-progress", "--workers", "0"]  # fmt: skip
    run(cmd)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    shape = list(read_image(mrc)[0].shape)
    return {"seconds": seconds, "peak_rss_gb": rss, "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0], "shape": shape}  # fmt: skip


RIBOSOME = DATA / "aspire" / "clean70SRibosome_vol_65p.mrc"  # held out from every training set
SIM_PIXEL, SIM_DIAMETER = 1.06, 250.0


def simulated(work: Path, n: int, venv: Path | None, size: int = 1024) -> dict:
    """The same scorer on a simulated set WITH truth and EVN/ODD halves: Eq. 11 beside PSNR
    (punishes blur) and the half-map FRC, for the same methods; shows what Eq. 11 rewards."""
    sim = work / "sim"
    if not (sim / "micrographs.star").exists():
        run([sys.executable, "-m", "draco_em", "simulate", "-o", str(sim), "--preset", "classic",
             "--n-micrographs", str(n), "--size", str(size), "--pixel-size", str(SIM_PIXEL),
             "--dose", "40", "--structures", str(RIBOSOME), "--map-pixel-size", "5.0",
             "--seed", "9200", "--no-movies", "-q"])  # fmt: skip
    pred = work / "sim_pred"
    seconds = denoise_all(sim / "micrographs", pred, SIM_PIXEL, venv)
    disks = {"pixel_size": SIM_PIXEL, "diameter": SIM_DIAMETER}
    out = score_with_truth(pred, sim, work / "sim_pairs.json", "simulated ribosome", disks)
    return {"seconds": seconds, "mean": out}


def score_with_truth(pred: Path, sim: Path, pairs: Path, title: str, disks: dict) -> dict:
    """Every method folder of ``pred`` against the simulated set ``sim``'s clean images (PSNR,
    FRC) and Eq. 11 on its coordinates (``disks``: pixel size and diameter, or radius and
    exclusion); prints the table, returns the means with a ``raw`` row."""
    results = {}
    for folder in sorted(p for p in pred.iterdir() if p.is_dir()):
        cfg = EvaluateDenoiseConfig(
            pred=folder, clean=sim / "clean", raw=sim / "micrographs", coords=sim / "coordinates",
            pairs=pairs, **disks,
        )  # fmt: skip
        results[folder.name] = evaluate_denoise(cfg)
    print(f"== {title} (truth, EVN/ODD)\n{format_table(results)}")
    out = {k: v["mean"] for k, v in results.items()}
    out["raw"] = next(iter(results.values()))["raw"]["mean"]
    return out


#: Simulated twins of the real sets, WITH truth (``--twin NAME=N``): the realistic preset at the
#: real set's pixel size, library structures of about its particle's size, 1024², scored with the
#: real set's disk geometry. (pixel Å, particle size range Å, disk radius px, background
#: exclusion px, seed). ``mce``'s pixel size is the assumed 4 Å and its particle (box 46 px =
#: 184 Å) unknown, hence the wider size range.
TWINS = {
    "particles": (PARTICLE_PIXEL, (180.0, 260.0), PARTICLE_RADIUS_PX, PARTICLE_EXCLUSION_PX, 1400),
    "mce": (
        MCE_PIXEL,
        (120.0, 220.0),
        MCE_DIAMETER / MCE_PIXEL / 2,
        MCE_DIAMETER / MCE_PIXEL,
        1401,
    ),
}


def twin(work: Path, name: str, n: int, venv: Path | None) -> dict:
    """The simulated twin ``name`` of :data:`TWINS` (``n`` micrographs): every method of the real
    set, plus the noise-free image itself as a row (``clean_image``): the Eq. 11 a perfect
    denoiser would get, beside PSNR against it. Says how far Eq. 11 can be reached without blur,
    and (raw row against the real raw row) whether the twin is a fair stand-in."""
    pixel, (lo, hi), radius, exclusion, seed = TWINS[name]
    sim = work / f"twin_{name}"
    if not (sim / "micrographs.star").exists():
        run([sys.executable, "-m", "draco_em", "simulate", "-o", str(sim), "--preset", "realistic",
             "--n-micrographs", str(n), "--size", "1024", "--pixel-size", str(pixel),
             "--particle-size-range", str(lo), str(hi), "--seed", str(seed), "--no-movies",
             "-q"])  # fmt: skip
    pred = work / f"twin_{name}_pred"
    seconds = denoise_all(sim / "micrographs", pred, pixel, venv)
    (pred / "clean_image").mkdir(exist_ok=True)
    for f in sorted((sim / "clean").glob("*.mrc")):
        link = pred / "clean_image" / f.name
        if link.is_symlink() and not link.exists():  # the twin's folder was moved: relink
            link.unlink()
        if not link.exists():
            link.symlink_to(f.resolve())
    disks = {"pixel_size": pixel, "radius": radius, "exclusion": exclusion}
    out = score_with_truth(pred, sim, work / f"twin_{name}_pairs.json",
                           f"simulated twin of the {name} set", disks)  # fmt: skip
    return {"seconds": seconds, "mean": out}


CYLINDRA = DATA / "cylindra"
CYLINDRA_PIXEL = 10.52  # 1.052 nm/voxel


def tomo(work: Path, out_png: Path) -> dict:
    """`draco denoise` on the real sub-tomograms (z-first 8-bit TIFF stacks), section by section.

    Figure: per tomogram, the central z-section (xy) and the central xz cut, raw vs denoised; the
    xz cut shows that sections are denoised independently (no z smoothing).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from draco_em.io.images import read_raster_stack

    files = sorted(CYLINDRA.glob("*.tif"))
    out = work / "tomo"
    seconds = None
    if not all((out / f"{f.stem}.mrc").exists() for f in files):
        seconds = draco(files, out, CYLINDRA_PIXEL)
    fig, axes = plt.subplots(2, 2 * len(files), figsize=(3.0 * 2 * len(files), 6.0))
    shapes, change = {}, {}
    for j, f in enumerate(files):
        raw = read_raster_stack(f)
        den = np.asarray(read_mrc(out / f"{f.stem}.mrc", ndim=(3,)).data, dtype=np.float32)
        shapes[f.name] = list(raw.shape)
        # How much the output differs from the input: correlation with the raw volume, and the
        # std of (denoised − raw, after a least-squares scale/offset fit) over the raw std.
        r, d = raw.astype(np.float64).ravel(), den.astype(np.float64).ravel()
        fit = np.polyval(np.polyfit(d, r, 1), d)
        change[f.name] = {
            "corr_with_raw": round(float(np.corrcoef(r, d)[0, 1]), 4),
            "residual_std_over_raw": round(float((r - fit).std() / r.std()), 4),
        }
        print(f"tomo {f.name}: {change[f.name]}")
        for i, (name, vol) in enumerate((("raw", raw), ("draco", den))):
            for k, (cut, img) in enumerate(
                ((f"xy z={len(vol) // 2}", vol[len(vol) // 2]),
                 (f"xz y={vol.shape[1] // 2}", vol[:, vol.shape[1] // 2, :]))
            ):  # fmt: skip
                ax = axes[k, 2 * j + i]
                lo, hi = np.percentile(img, [1, 99])
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect="equal")
                ax.set_title(f"{f.stem} {name}\n{cut}", fontsize=9)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=60)
    plt.close(fig)
    return {"seconds_both": seconds, "shapes": shapes, "change": change}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/denoise_real"))
    parser.add_argument("--topaz-venv", type=Path, default=None)
    parser.add_argument("--empiar", type=int, default=0, help="EMPIAR-10017 crops to score.")
    parser.add_argument("--sim", type=int, default=0, help="Simulated micrographs with truth.")
    parser.add_argument("--tomo", action="store_true", help="Denoise the cylindra tomograms.")
    parser.add_argument("--no-mce", action="store_true", help="Skip the mce set.")
    parser.add_argument("--particles", action="store_true", help="Real EMPIAR-10076 particles.")
    parser.add_argument("--rings", action="store_true", help="The MicAssess ring micrograph.")
    parser.add_argument(
        "--twin", action="append", default=[],
        help="NAME=N: the simulated twin of a real set (particles, mce) with N micrographs",
    )  # fmt: skip
    parser.add_argument("--speed", action="store_true", help="Time draco on a 4096² micrograph.")
    parser.add_argument(
        "--figure", type=Path, default=None,
        help="default WORK/denoise_real.png; docs/img/denoise_real.png remakes the docs' figure",
    )  # fmt: skip
    parser.add_argument(
        "--draco", action="append", default=[],
        help="NAME=WEIGHTS: also denoise with these weights into pred/NAME (repeatable)",
    )  # fmt: skip
    parser.add_argument("--draco-args", default="", help="extra draco denoise options, quoted")
    parser.add_argument(
        "--lowpass-sweep", type=float, nargs="+", default=[], metavar="Å",
        help="also score the 20 Å-style Gaussian low-pass at these cut-offs (e.g. 10 20 40 80 160)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.figure is None:  # never overwrite the docs' figure from a partial run
        args.figure = args.work / "denoise_real.png"
    work = args.work
    EXTRA_DRACO.update(dict(spec.split("=", 1) for spec in args.draco))
    EXTRA_ARGS.extend(args.draco_args.split())
    LOWPASS_SWEEP_A.extend(args.lowpass_sweep)

    out_json = work / "denoise_real.json"
    info = json.loads(out_json.read_text()) if out_json.exists() else {}
    if not args.no_mce:
        mce(work, args, info)
    if args.particles:
        particles(work, args, info)
    if args.rings:
        rings(work, args, info)
    for spec in args.twin:
        name, n = spec.split("=", 1)
        info[f"twin_{name}"] = twin(work, name, int(n), args.topaz_venv)
    empiar_and_speed(work, args, info)
    if args.sim:
        old = info.get("sim", {}).get("seconds", {})
        info["sim"] = simulated(work, args.sim, args.topaz_venv)
        info["sim"]["seconds"] = old | info["sim"]["seconds"]
    if args.tomo:
        info["tomo"] = tomo(work, args.figure.with_name("denoise_tomo.png"))
    out_json.write_text(json.dumps(info, indent=2))
    print(f"wrote {out_json}")


def mce(work: Path, args: argparse.Namespace, info: dict) -> None:
    raw, coords, masks = prepare_mce(work)
    pred = work / "mce" / "pred"
    info["mce_seconds"] = info.get("mce_seconds", {}) | denoise_all(
        raw, pred, MCE_PIXEL, args.topaz_venv
    )
    for name, mask in (("mce_masked", masks), ("mce_all_picks", None)):
        res = score(pred, raw, coords, MCE_PIXEL, MCE_DIAMETER, work / f"{name}_pairs.json", mask)
        info[name] = {k: v["mean"] | {"n_pairs": v["per_micrograph"][0].get("snr_pairs")}
                      for k, v in res.items()}  # fmt: skip
        info[name]["raw"] = next(iter(res.values()))["raw"]["mean"]
        print(f"== {name}\n{format_table(res)}")
    # A crop clear of the ice blob, with autopicks (lower left of the micrograph).
    extra = tuple((f"draco {name}", name) for name in EXTRA_DRACO)
    figure(raw, pred, args.figure, (80, 560, 320), MCE_PIXEL, extra, extra_before_bundled=True)
    info["mce_crop_corr_with_raw"] = crop_correlations(raw, pred, (80, 560, 320))


def particles(work: Path, args: argparse.Namespace, info: dict) -> None:
    raw, coords = prepare_particles(work)
    pred = work / "particles" / "pred"
    info["particles_seconds"] = info.get("particles_seconds", {}) | denoise_all(
        raw, pred, PARTICLE_PIXEL, args.topaz_venv
    )
    res = score(pred, raw, coords, PARTICLE_PIXEL, 2 * PARTICLE_RADIUS_PX * PARTICLE_PIXEL,
                work / "particles_pairs.json", radius=PARTICLE_RADIUS_PX,
                exclusion=PARTICLE_EXCLUSION_PX)  # fmt: skip
    info["particles"] = {k: v["mean"] for k, v in res.items()}
    info["particles"]["raw"] = next(iter(res.values()))["raw"]["mean"]
    info["particles_snr_per_image"] = {
        k: [r.get("snr_db") for r in v["per_micrograph"]] for k, v in res.items()
    }
    print(f"== particles (EMPIAR-10076, real raw)\n{format_table(res)}")
    pairs = work / "particles_pairs.json"
    folders = {"raw input": raw} | {p.name: p for p in sorted(pred.iterdir()) if p.is_dir()}
    info["particles_eq11_terms"] = {
        name: eq11_terms(folder, pairs, PARTICLE_RADIUS_PX, PARTICLE_PIXEL)
        for name, folder in folders.items()
    }
    for name, t in info["particles_eq11_terms"].items():
        c, b = t["contrast_db"], t["background_db"]
        print(f"{name:16s} contrast {c:7.2f} dB  background {b:7.2f} dB")
    info["particles_band_transfer"] = {"bands_A": [list(b) for b in TRANSFER_BANDS_A]} | {
        p.name: band_transfer(raw, p, PARTICLE_PIXEL) for p in sorted(pred.iterdir()) if p.is_dir()
    }
    print("band transfer (output share / raw share), bands Å:", TRANSFER_BANDS_A)
    for name, v in info["particles_band_transfer"].items():
        if name != "bands_A":
            print(f"{name:16s}", " ".join(f"{x:7.3f}" for x in v))
    rows = (("low-pass 20 Å", "lowpass_20A"), ("Topaz unet", "topaz_unet"), ("draco", "draco"),
            *((f"draco {name}", name) for name in EXTRA_DRACO))  # fmt: skip
    particle_figure(raw, pred, args.figure.with_name("denoise_particles.png"), rows)


def rings(work: Path, args: argparse.Namespace, info: dict) -> None:
    """The MicAssess ring micrograph, its template-matching reference as coordinates."""
    import pick_micassess_rings as ring_set  # beside this script (benchmarks/)

    raw, coords = work / "rings" / "raw", work / "rings" / "coords"
    raw.mkdir(parents=True, exist_ok=True)
    coords.mkdir(parents=True, exist_ok=True)
    png = ring_set.DATA / "micrographs" / f"{ring_set.NAME}.png"
    image = read_image(png, ring_set.PIXEL)[0].astype(np.float32)
    write_mrc(raw / f"{ring_set.NAME}.mrc", image, ring_set.PIXEL, inputs=[png])
    ref, _ = ring_set.reference(image)
    write_relion_coords(coords / f"{ring_set.NAME}.star",
                        make_coords(ring_set.NAME, ref[:, 0], ref[:, 1]))  # fmt: skip
    pred = work / "rings" / "pred"
    info["rings_seconds"] = info.get("rings_seconds", {}) | denoise_all(
        raw, pred, ring_set.PIXEL, args.topaz_venv
    )
    res = score(pred, raw, coords, ring_set.PIXEL, ring_set.DIAMETER, work / "rings_pairs.json")
    info["rings"] = {k: v["mean"] | {"n_pairs": v["per_micrograph"][0].get("snr_pairs")}
                     for k, v in res.items()}  # fmt: skip
    info["rings"]["raw"] = next(iter(res.values()))["raw"]["mean"]
    print(f"== rings (MicAssess, real, ~7 Å/px)\n{format_table(res)}")
    figure(raw, pred, args.figure.with_name("denoise_rings.png"), (120, 120, 200), ring_set.PIXEL)


def empiar_and_speed(work: Path, args: argparse.Namespace, info: dict) -> None:
    if args.empiar:
        raw_e, coords_e = prepare_empiar(work, args.empiar)
        pred_e = work / "empiar" / "pred"
        info["empiar_seconds"] = info.get("empiar_seconds", {}) | denoise_all(
            raw_e, pred_e, EMPIAR_PIXEL, args.topaz_venv
        )
        res = score(pred_e, raw_e, coords_e, EMPIAR_PIXEL, EMPIAR_DIAMETER,
                    work / "empiar_pairs.json")  # fmt: skip
        info["empiar"] = {k: v["mean"] for k, v in res.items()}
        info["empiar"]["raw"] = next(iter(res.values()))["raw"]["mean"]
        info["empiar_pairs"] = [
            r.get("snr_pairs") for r in next(iter(res.values()))["per_micrograph"]
        ]
        print(f"== empiar10017 (pre-denoised JPEG crops)\n{format_table(res)}")

    if args.speed:
        info["speed_4096"] = speed(work)
        print("speed", info["speed_4096"])


if __name__ == "__main__":
    main()
