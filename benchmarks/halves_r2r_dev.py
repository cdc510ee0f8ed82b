"""The halves-calibrated blend without halves: recorrupted pseudo-halves (issue 20; a diagnostic
on the development sets only, it decides nothing).

``draco denoise --blend-halves`` meets issue 20's "+1 dB over the best Gaussian" on every
simulated set, but needs the ``X_EVN``/``X_ODD`` halves; the default output, without them, meets
it at 4 Å only (docs/benchmarks.md). Recorrupted-to-Recorrupted (Pang et al., CVPR 2021) makes
halves from the sum ``y`` alone: with ``z`` Gaussian of the sum's noise covariance Σ,

    a′ = (y + z) / 2,   b′ = (y − z) / 2

have the signal ``s/2`` each, noise of covariance Σ/2 each (as real halves), and noise
cross-covariance (Σ − Σ)/4 = 0, so for Gaussian noise they are distributed as real halves and
the blend's calibration (``infer.halves_blend``) holds. The crux is Σ without halves. Two
versions are measured per micrograph, each as the radial noise power spectrum on the blend's
rings:

* ``oracle``: Σ from the real halves, |F(a − b)|² averaged per ring (the ceiling: what a
  perfect noise model would give);
* ``white``: a flat spectrum at the sum's mean count (Poisson counting noise, before any
  interpolation, camera NPS or dose weighting: what one could assume of a raw sum in counts);
* ``capped``: per ring the lower of that flat level and the sum's own power (signal + noise,
  an upper bound of the noise that is close to it where the signal is weak, at high
  frequencies): needs nothing but the sum in counts;
* ``counts``: the package's model (``infer.pseudo_halves``, ``draco denoise --pseudo-halves``,
  session 19): Poisson at zero frequency, falling as exp(−c f²) to the sum's own power near
  Nyquist;
* ``counts_one_pass``: the ``counts`` pseudo-halves blended with one model pass (D(a′) alone
  against b′; ``draco denoise --blend-passes 1``), half the cost;
* ``counts_v0``: the model as first committed, flat at the band's own level wherever that is
  above the mean (session 19's variant rule replaced it by V1, flat at the mean for 1–1.5 ×).

Scores: correlation SNR with the clean image (``denoise_indep.corr_snr_db``), mean over the
set, beside the model on the sum, the real blend and the best Gaussian (as
``halves_blend_dev.py``). The model's outputs of the pseudo-halves are made with
``draco denoise`` into PRED; ``z`` is drawn with a seed per micrograph.

    OMP_NUM_THREADS=2 python benchmarks/halves_r2r_dev.py --set /work/s23/dev/dev25 \\
        --pred /work/s23/dev/dev25_r2r --json /work/s23/dev/dev25_r2r.json
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from halves_blend_dev import Scores, denoise_missing, read_one, sums_and_halves

from draco_em.imaging.fourier import frequency_grid
from draco_em.infer import halves_blend, pseudo_halves
from draco_em.io.mrc import read_image, write_mrc

NOISE_MODELS = ("oracle", "white", "capped", "counts", "counts_v0")


def ring_means(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Means of ``values`` (on the rfft2 grid of an image of ``shape``, ``[ny, nx // 2 + 1]``)
    over each of the blend's rings, weighted as the full plane counts them."""
    ring, weight = halves_blend._rings(shape)
    weighted = np.broadcast_to(weight, ring.shape).ravel()
    total = np.bincount(ring.ravel(), np.broadcast_to(values, ring.shape).ravel() * weighted)
    return total / np.maximum(np.bincount(ring.ravel(), weighted), 1)


def ring_power(image: np.ndarray) -> np.ndarray:
    """|rfft2|² of ``image`` averaged over each of the blend's rings, per coefficient
    ``[ny, nx // 2 + 1]`` (the ring mean put back on every coefficient of the ring)."""
    ring, weight = halves_blend._rings(image.shape)
    spec = np.fft.rfft2(image - image.mean())
    total = halves_blend._ring_sum(spec, spec, ring, weight)  # the blend's own ring sums
    n = len(total)
    count = np.bincount(ring.ravel(), np.broadcast_to(weight, ring.shape).ravel(), minlength=n)
    return (total / np.maximum(count, 1))[ring]


def model_error(full: np.ndarray, even: np.ndarray, odd: np.ndarray) -> dict[str, list[float]]:
    """Per noise model (``counts``, ``white``): the lowest and highest ratio, over the rings up
    to Nyquist, of its noise power to the true one (|F(a − b)|² of the real halves)."""
    shape = full.shape
    fy, fx = frequency_grid(shape)
    inside = ring_means((np.hypot(fy, fx) <= 0.5).astype(np.float64), shape) > 0.999
    true = ring_means(np.abs(np.fft.rfft2(even - odd)) ** 2 / full.size, shape)
    model = pseudo_halves.counting_noise_model(full)
    counts = ring_means(model["level"] * np.exp(-model["c"] * (fy**2 + fx**2)), shape)
    out = {}
    for name, power in (("counts", counts), ("white", np.full_like(true, full.mean()))):
        ratio = (power / true)[inside][1:]  # ring 0 is the mean, removed
        out[name] = [round(float(ratio.min()), 2), round(float(ratio.max()), 2)]
    return out


def recorrupt(
    full: np.ndarray, nps: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(a′, b′) = ((y + z)/2, (y − z)/2), ``z`` Gaussian with power ``nps`` per rfft2
    coefficient (the convention of :func:`ring_power`)."""
    white = rng.standard_normal(full.shape)  # E|rfft2|² = N per coefficient
    z = np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(nps / white.size), s=full.shape)
    return ((full + z) / 2).astype(np.float32), ((full - z) / 2).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--weights", default="bundled")
    args = ap.parse_args()
    sums, pairs = sums_and_halves(args.set)
    work = args.pred / "inputs"
    px = read_image(sums[0])[1] or 1.0
    for path in sums:  # the pseudo-halves, once (seeded per micrograph)
        even_path, odd_path = pairs[path]
        full, even, odd = (read_image(p)[0].astype(np.float64) for p in (path, even_path, odd_path))
        for model in NOISE_MODELS:
            names = [work / f"{path.stem}_{model}_{h}.mrc" for h in ("A", "B")]
            if all(n.exists() for n in names):
                continue
            if model.startswith("counts"):  # the package's model (draco denoise --pseudo-halves)
                params = pseudo_halves.counting_noise_model(full)
                if model == "counts_v0" and params["band_ratio"] >= 1.0:  # before variant V1
                    params = {**params, "level": params["band_ratio"] * float(full.mean())}
                seed = f"{path.stem}:counts"  # the same z for both: only the model differs
                a, b, _ = pseudo_halves.pseudo_halves(full, seed, params)
                for name, half in zip(names, (a, b), strict=True):
                    write_mrc(name, half, px)
                continue
            if model == "oracle":
                nps = ring_power(even - odd)  # the sum's noise power: Var(n_a − n_b) = Σ
            else:
                nps = np.full(np.fft.rfft2(full).shape, full.size * max(full.mean(), 0.0))
                if model == "capped":
                    nps = np.minimum(nps, ring_power(full))
            rng = np.random.default_rng(zlib.crc32(f"{path.stem}:{model}".encode()))
            for name, half in zip(names, recorrupt(full, nps, rng), strict=True):
                write_mrc(name, half, px)
    every = [*sums, *(h for p in sums for h in pairs[p]), *sorted(work.glob("*.mrc"))]
    denoise_missing(every, args.pred, args.weights)
    scores = Scores()
    errors = {}
    for path in sums:
        full, even, odd, clean, d_full, d_even, d_odd = read_one(args.set, args.pred, path, pairs)
        errors[path.stem] = model_error(*(x.astype(np.float64) for x in (full, even, odd)))
        scores.baselines(full, d_full, clean)
        real = halves_blend.blend_halves(d_even, d_odd, even, odd)[0]
        scores.add("blend_real_halves", real, clean)
        for model in NOISE_MODELS:
            a, b = (read_image(work / f"{path.stem}_{model}_{h}.mrc")[0] for h in ("A", "B"))
            da, db = (read_image(args.pred / f"{path.stem}_{model}_{h}.mrc")[0] for h in "AB")
            scores.add(f"blend_r2r_{model}", halves_blend.blend_halves(da, db, a, b)[0], clean)
            if model == "counts":  # the same pseudo-halves, one model pass (D(a′) alone)
                one_pass = halves_blend.blend_halves(da, None, a, b)[0]
                scores.add("blend_r2r_counts_one_pass", one_pass, clean)
    mean = scores.mean()
    print(json.dumps({"noise model / true, per ring [min, max]": errors, "mean": mean}, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"set": str(args.set), "noise_model_ratio": errors, "mean": mean}, indent=1)
    )


if __name__ == "__main__":
    main()
