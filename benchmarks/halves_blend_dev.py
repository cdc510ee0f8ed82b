"""Development sets of the halves-calibrated blend (issue 20, session 10; docs/benchmarks.md).

For one set in ``draco simulate``'s layout with ``X_EVN``/``X_ODD`` halves and clean images,
scores by correlation SNR with the clean image (``denoise_indep.corr_snr_db``), mean over the
set: raw, the best Gaussian σ *by correlation SNR*, the bundled model on the sum and on the
halves averaged, the halves-Wiener (the blend with zero denoised inputs), the blend
(``infer.halves_blend``) at several ring widths (``RINGS_TO_NYQUIST``; the package uses 128),
and the oracle radial Wiener filter (fitted with the clean image). The model's outputs of every
file (sums and halves) are made with ``draco denoise`` into PRED when missing.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/halves_blend_dev.py --set /work/s15/dev25 \\
        --pred /work/s15/dev25_pred [--rings 1024 512 256 128]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import denoise as bench
from denoise_indep import corr_snr_db

from draco_em.imaging.filters import gaussian_blur_px
from draco_em.infer import halves_blend
from draco_em.io.halves import find_halves
from draco_em.io.mrc import read_image

SIGMAS_PX = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("--rings", type=int, nargs="+", default=[1024, 512, 256, 128])
    args = ap.parse_args()
    sums = bench.raw_images(args.set)
    pairs = {p: find_halves(p) for p in sums}
    if not sums or any(v is None for v in pairs.values()):
        raise SystemExit(f"{args.set}: needs micrographs with X_EVN/X_ODD halves")
    every = [f for p in sums for f in (p, *pairs[p])]  # type: ignore[misc]
    if not all((args.pred / f.name).exists() for f in every):
        subprocess.run([sys.executable, "-m", "draco_em", "denoise", *map(str, every), "-o",
                        str(args.pred), "--model", args.weights, "-q"], check=True)  # fmt: skip
    rows: dict[str, list[float]] = {}

    def add(name: str, image: np.ndarray, clean: np.ndarray) -> None:
        rows.setdefault(name, []).append(corr_snr_db(image, clean))

    for path in sums:
        even_path, odd_path = pairs[path]  # type: ignore[misc]
        full, even, odd = (read_image(p)[0] for p in (path, even_path, odd_path))
        clean = read_image(args.set / "clean" / path.name)[0]
        d_full, d_even, d_odd = (read_image(args.pred / p.name)[0]
                                 for p in (path, even_path, odd_path))  # fmt: skip
        add("raw", full, clean)
        for sigma in SIGMAS_PX:
            add(f"gauss_{sigma}", gaussian_blur_px(full, sigma), clean)
        add("model_on_sum", d_full, clean)
        add("model_halves_averaged", d_even + d_odd, clean)
        zero = np.zeros_like(even)
        add("halves_wiener", halves_blend.blend_halves(zero, zero, even, odd)[0], clean)
        default = halves_blend.RINGS_TO_NYQUIST
        try:
            for rings in args.rings:
                halves_blend.RINGS_TO_NYQUIST = rings
                width = max(full.shape) / (2 * rings)
                blend = halves_blend.blend_halves(d_even, d_odd, even, odd)[0]
                add(f"blend_ring_{width:g}px", blend, clean)
        finally:
            halves_blend.RINGS_TO_NYQUIST = default
        add("oracle_wiener", bench.oracle_wiener(full, clean), clean)
    mean = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    gauss = {k: v for k, v in mean.items() if k.startswith("gauss_")}
    best = max(gauss, key=lambda k: gauss[k])
    mean = {k: v for k, v in mean.items() if not k.startswith("gauss_")}
    mean[f"best_gaussian ({best})"] = gauss[best]
    print(json.dumps(mean, indent=1))


if __name__ == "__main__":
    main()
