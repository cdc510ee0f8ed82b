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


def sums_and_halves(set_dir: Path) -> tuple[list[Path], dict[Path, tuple[Path, Path]]]:
    """The set's full sums and each one's (EVN, ODD) halves; exits if a sum has none."""
    sums = bench.raw_images(set_dir)
    pairs = {p: find_halves(p) for p in sums}
    if not sums or any(v is None for v in pairs.values()):
        raise SystemExit(f"{set_dir}: needs micrographs with X_EVN/X_ODD halves")
    return sums, pairs  # type: ignore[return-value]


def denoise_missing(files: list[Path], pred: Path, weights: str) -> None:
    """``draco denoise`` every file into ``pred`` unless all outputs are there (it resumes)."""
    if not all((pred / f.name).exists() for f in files):
        subprocess.run([sys.executable, "-m", "draco_em", "denoise", *map(str, files), "-o",
                        str(pred), "--model", weights, "-q"], check=True)  # fmt: skip


def read_one(
    set_dir: Path, pred: Path, path: Path, pairs: dict[Path, tuple[Path, Path]]
) -> tuple[np.ndarray, ...]:
    """(sum, even, odd, clean, and the model's outputs of the sum, even and odd) of one
    micrograph of the set."""
    files = (path, *pairs[path])
    raw = [read_image(p)[0] for p in files]
    clean = read_image(set_dir / "clean" / path.name)[0]
    return (*raw, clean, *(read_image(pred / p.name)[0] for p in files))


class Scores:
    """Correlation SNR (dB) with the clean image per method, over the micrographs of a set."""

    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = {}

    def add(self, name: str, image: np.ndarray, clean: np.ndarray) -> None:
        self.rows.setdefault(name, []).append(corr_snr_db(image, clean))

    def baselines(self, full: np.ndarray, d_full: np.ndarray, clean: np.ndarray) -> None:
        """The raw sum, the Gaussians of :data:`SIGMAS_PX` and the model on the sum."""
        self.add("raw", full, clean)
        for sigma in SIGMAS_PX:
            self.add(f"gauss_{sigma}", gaussian_blur_px(full, sigma), clean)
        self.add("model_on_sum", d_full, clean)

    def mean(self) -> dict[str, float]:
        """Means over the set; of the Gaussians only the best (by correlation SNR)."""
        mean = {k: round(float(np.mean(v)), 3) for k, v in self.rows.items()}
        gauss = {k: v for k, v in mean.items() if k.startswith("gauss_")}
        best = max(gauss, key=lambda k: gauss[k])
        mean = {k: v for k, v in mean.items() if not k.startswith("gauss_")}
        mean[f"best_gaussian ({best})"] = gauss[best]
        return mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("--rings", type=int, nargs="+", default=[1024, 512, 256, 128])
    args = ap.parse_args()
    sums, pairs = sums_and_halves(args.set)
    denoise_missing([f for p in sums for f in (p, *pairs[p])], args.pred, args.weights)
    scores = Scores()
    for path in sums:
        full, even, odd, clean, d_full, d_even, d_odd = read_one(args.set, args.pred, path, pairs)
        scores.baselines(full, d_full, clean)
        scores.add("model_halves_averaged", d_even + d_odd, clean)
        zero = np.zeros_like(even)
        scores.add("halves_wiener", halves_blend.blend_halves(zero, zero, even, odd)[0], clean)
        default = halves_blend.RINGS_TO_NYQUIST
        try:
            for rings in args.rings:
                halves_blend.RINGS_TO_NYQUIST = rings
                width = max(full.shape) / (2 * rings)
                blend = halves_blend.blend_halves(d_even, d_odd, even, odd)[0]
                scores.add(f"blend_ring_{width:g}px", blend, clean)
        finally:
            halves_blend.RINGS_TO_NYQUIST = default
        scores.add("oracle_wiener", bench.oracle_wiener(full, clean), clean)
    print(json.dumps(scores.mean(), indent=1))


if __name__ == "__main__":
    main()
