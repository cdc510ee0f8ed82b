"""Crystalline-ice texture, real against simulated (issue 19, session 6).

One statistic per micrograph, at 7 Å/px (Fourier-binned where needed), on the central 7/8 of
the field after standardising: ``band`` = the standard deviation of a difference-of-Gaussians
band-pass keeping structure ~100–1000 Å (the grains and blots of crystalline ice; particles
and noise are finer, ice gradients coarser); ``fine`` = that of the residual finer than ~2 px
(noise); fine / band is the slope between them (how much fine noise is left beside the
particle-scale structure). Real MicAssess classes first (18 PNGs, ~7 Å/px) and EMPIAR-10017
(11 denoised JPEGs, 1.77 Å/px), then simulated sets given as ``NAME:LABELS_CSV:LABEL`` (up to
12 micrographs of that label each).

    python benchmarks/crystalline_texture.py old:/work/cur19/val7_noice.csv:crystalline_ice \\
        new:/work/cur19/valxtal7/micrographs.star:crystalline_ice \\
        good:/work/cur19/val7_noice.csv:good

``--renderings NAME:LABELS:LABEL``: the same micrographs rendered as pre-denoised pictures
(``curate.augment.denoised_rendering``) two ways, from the raw sum and from the clean image
plus a residual of the noise (``clean/<name>.mrc`` beside ``micrographs/``), one random stream
(seed 0) alternating between them (issue 19 session 6, step 2)::

    python benchmarks/crystalline_texture.py --renderings "good 2 Å:/work/cur19/val2_noice.csv:good"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from draco_em.curate.augment import denoised_rendering
from draco_em.imaging.fourier import fourier_rescale
from draco_em.io.images import read_raster
from draco_em.io.labels import read_labels
from draco_em.io.mrc import read_image

MICASSESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "micassess"
EMPIAR = MICASSESS.parent / "empiar10017" / "micrographs"  # denoised JPEGs, 1.77 Å/px
EMPIAR_PX = 1.77
PX = 7.0  # Å/px of the statistic (MicAssess's approximate sampling)


def texture(image: np.ndarray, pixel_size: float) -> tuple[float, float]:
    """(band, fine) standard deviations of the standardised image [H, W] at 7 Å/px."""
    a = np.asarray(image, np.float32)
    if abs(pixel_size - PX) > 0.01:
        a, _ = fourier_rescale(a, pixel_size, PX)
    h, w = a.shape
    a = a[h // 16 : h - h // 16, w // 16 : w - w // 16]
    a = (a - a.mean()) / max(float(a.std()), 1e-12)
    # Gaussian σ from a FWHM of 2 × the length: passes ~100–1000 Å.
    band = gaussian_filter(a, 2 * 100 / PX / 2.355) - gaussian_filter(a, 2 * 1000 / PX / 2.355)
    fine = a - gaussian_filter(a, 1.0)
    return float(band.std()), float(fine.std())


def summary(name: str, values: list[tuple[float, float]]) -> str:
    v = np.asarray(values)
    return (
        f"| {name} | {len(v)} | {np.median(v[:, 0]):.2f} ({v[:, 0].min():.2f}–{v[:, 0].max():.2f}) "
        f"| {np.median(v[:, 1]):.2f} | {np.median(v[:, 1] / v[:, 0]):.2f} "
        f"({(v[:, 1] / v[:, 0]).min():.2f}–{(v[:, 1] / v[:, 0]).max():.2f}) |"
    )


def chosen(spec: str) -> tuple[str, list[tuple[Path, float]]]:
    """``NAME:LABELS:LABEL`` → (name, up to 12 (micrograph, pixel size) of that label)."""
    name, path, label = spec.rsplit(":", 2)
    ls = read_labels(path)
    picked = [i for i, lab in enumerate(ls.labels) if lab == label][:12]
    return name, [(ls.paths[i], float(ls.pixel_sizes[i] or PX)) for i in picked]


def renderings(spec: str) -> None:
    """Print the rows of raw-sum and clean-based renderings of one set (module doc)."""
    name, items = chosen(spec)
    rng = np.random.default_rng(0)
    raw_rows, clean_rows = [], []
    for path, px in items:
        image, _ = read_image(path, px)
        clean, _ = read_image(path.parent.parent / "clean" / path.name, px)
        raw_rows.append(texture(denoised_rendering(image, px, rng, 0), px))
        clean_rows.append(texture(denoised_rendering(image, px, rng, 0, clean=clean), px))
    print(summary(f"{name}, rendered from the raw sum", raw_rows))
    print(summary(f"{name}, rendered from clean + residual noise", clean_rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sets", nargs="*", help="NAME:LABELS:LABEL simulated sets")
    ap.add_argument("--micassess", type=Path, default=MICASSESS)
    ap.add_argument("--renderings", nargs="*", default=[], help="NAME:LABELS:LABEL (above)")
    args = ap.parse_args()
    print(
        "| set | n | band 100–1000 Å, median (range) | fine, median | fine / band, median (range) |"
        "\n|---|---|---|---|---|"
    )
    if (args.micassess / "labels.csv").is_file():
        rows = list(csv.DictReader(open(args.micassess / "labels.csv")))
        for cls in sorted({r["class"] for r in rows}):
            vals = [
                texture(read_raster(args.micassess / "micrographs" / f"{r['name']}.png"), PX)
                for r in rows
                if r["class"] == cls
            ]
            print(summary(f"MicAssess (real) {cls}", vals))
    else:
        print(f"(MicAssess not found at {args.micassess}: real rows skipped)")
    if EMPIAR.is_dir():
        vals = [texture(read_raster(f), EMPIAR_PX) for f in sorted(EMPIAR.glob("*.jpg"))]
        print(summary("EMPIAR-10017 (real, denoised renderings) good", vals))
    else:
        print(f"(EMPIAR-10017 not found at {EMPIAR}: its row skipped)")
    for spec in args.sets:
        name, items = chosen(spec)
        print(summary(name, [texture(read_image(p, px)[0], px) for p, px in items]))
    for spec in args.renderings:
        renderings(spec)


if __name__ == "__main__":
    main()
