"""Crystalline-ice texture, real against simulated (issue 19, session 6).

One statistic per micrograph, at 7 Å/px (Fourier-binned where needed), on the central 7/8 of
the field after standardising: ``band`` = the standard deviation of a difference-of-Gaussians
band-pass keeping structure ~100–1000 Å (the grains and blots of crystalline ice; particles
and noise are finer, ice gradients coarser); ``fine`` = that of the residual finer than ~2 px
(noise); fine / band is the slope between them (how much fine noise is left beside the
particle-scale structure). Real MicAssess classes first (18 PNGs, ~7 Å/px), then simulated
sets given as ``NAME:LABELS_CSV:LABEL`` (up to 12 micrographs of that label each).

    python benchmarks/crystalline_texture.py old:/work/cur19/val7_noice.csv:crystalline_ice \\
        new:/work/cur19/valxtal7/micrographs.star:crystalline_ice \\
        good:/work/cur19/val7_noice.csv:good
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from draco_em.imaging.fourier import fourier_rescale
from draco_em.io.images import read_raster
from draco_em.io.labels import read_labels
from draco_em.io.mrc import read_image

MICASSESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "micassess"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sets", nargs="*", help="NAME:LABELS:LABEL simulated sets")
    ap.add_argument("--micassess", type=Path, default=MICASSESS)
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
    for spec in args.sets:
        name, path, label = spec.rsplit(":", 2)
        ls = read_labels(path)
        chosen = [i for i, lab in enumerate(ls.labels) if lab == label][:12]
        vals = [
            texture(read_image(ls.paths[i], ls.pixel_sizes[i])[0], float(ls.pixel_sizes[i] or PX))
            for i in chosen
        ]
        print(summary(name, vals))


if __name__ == "__main__":
    main()
