"""Look at the ``realistic`` preset next to a real micrograph (figures for docs/simulator.md).

Makes (or reuses) 6 realistic and 2 classic 1024² micrographs at 2 Å/px (``--no-movies``) and
compares them with the real UCSF K2 sum in ``../shared/data/micrograph_cleaner_em`` (4× binned,
~4 Å/px, dose-weighted, arbitrary intensity scale):

* ``docs/img/simulator_realistic.png``: a clean 1800 Å crop of the real micrograph, the 6
  realistic ones and one classic, all at 8 Å/px (Fourier cropping), 1–99 % percentile stretch;
* ``docs/img/simulator_realistic_spectra.png``: radially averaged power spectra at 4 Å/px,
  each relative to its own mean power at 0.09–0.125 Å⁻¹ (the real image's intensities are
  rescaled, so only shapes compare), and the noise power spectrum (full − clean) of each
  simulation at its working pixel size;
* a table on stdout: per micrograph its draws and the noise colour (NPS at 0.4–0.5 over
  0.03–0.12 cycles/px).

Usage:
    PYTHONPATH=src python benchmarks/simulate_realism.py [--out /tmp/draco-realism]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRACO_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL = SHARED / "micrograph_cleaner_em" / "Ucsf_stack_1142_DW.mrc"
REAL_PIXEL_SIZE = 4.0  # 4× binned K2 frame (README of that folder); the header says 1.0


def simulate(out: Path, preset: str, n: int, seed: int) -> None:
    if (out / "micrographs.star").exists():
        return
    cmd = [sys.executable, "-m", "draco_em", "simulate", "-o", str(out), "--preset", preset]
    cmd += ["--n-micrographs", str(n), "--size", "1024", "--pixel-size", "2.0", "--no-movies"]
    cmd += ["--seed", str(seed), "-q"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def radial_power(img: np.ndarray, pixel_size: float, bins: int = 48):
    """Radially averaged power spectrum: (frequency in 1/Å, power) in ``bins`` rings."""
    p = np.abs(np.fft.rfft2(img - img.mean())) ** 2
    fy = np.fft.fftfreq(img.shape[0], pixel_size)[:, None]
    fx = np.fft.rfftfreq(img.shape[1], pixel_size)[None, :]
    q = np.hypot(fy, fx)
    nyq = 0.5 / pixel_size
    idx = np.minimum((q / nyq * bins).astype(int), bins)
    power = np.bincount(idx.ravel(), p.ravel(), bins + 1)[:bins]
    count = np.bincount(idx.ravel(), None, bins + 1)[:bins]
    return (np.arange(bins) + 0.5) / bins * nyq, power / np.maximum(count, 1)


def display(img: np.ndarray, edge: int) -> np.ndarray:
    """Centre crop to ``edge`` and clip to the 1st–99th percentile, as 0..1."""
    h, w = img.shape
    top, left = (h - edge) // 2, (w - edge) // 2
    crop = img[top : top + edge, left : left + edge]
    lo, hi = np.percentile(crop, [1, 99])
    return np.clip((crop - lo) / max(hi - lo, 1e-9), 0, 1)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from draco_em.imaging.fourier import fourier_rescale
    from draco_em.io.mrc import read_image
    from draco_em.io.star import read_micrographs_star

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/draco-realism"))
    args = parser.parse_args()
    simulate(args.out / "realistic", "realistic", 6, 11)
    simulate(args.out / "classic", "classic", 2, 11)
    real = np.asarray(read_image(REAL)[0], np.float64)
    # The real image's contamination-free lower-left part (its cleaner mask is < 0.3 there).
    real_clean = real[448:896, 64:512]

    sets = {}
    for name in ("realistic", "classic"):
        table = read_micrographs_star(args.out / name / "micrographs.star").micrographs
        sets[name] = []
        for row in table.itertuples(index=False):
            full = np.asarray(read_image(args.out / name / row.rlnMicrographName)[0], np.float64)
            clean = np.asarray(read_image(args.out / name / row.dracoClean)[0], np.float64)
            sets[name].append((row, full, clean))

    # Montage at 8 Å/px, 8-bit greyscale (small file): real, 6 realistic, 1 classic.
    from PIL import Image

    img_dir = REPO / "docs/img"
    edge = 184
    tiles = [display(fourier_rescale(real_clean, REAL_PIXEL_SIZE, 8.0)[0], 2 * (224 // 2))]
    tiles[0] = (
        np.asarray(
            Image.fromarray((tiles[0] * 255).astype(np.uint8)).resize((edge, edge), Image.BILINEAR)
        )
        / 255.0
    )  # the real crop is 448 px at 4 Å = 224 px at 8 Å: shown at the tile size
    for name, k in [("realistic", k) for k in range(6)] + [("classic", 0)]:
        full = sets[name][k][1]
        tiles.append(display(fourier_rescale(full, 2.0, 8.0)[0], edge))
    grid = np.ones((2 * edge + 4, 4 * edge + 12))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 4)
        grid[r * (edge + 4) : r * (edge + 4) + edge, c * (edge + 4) : c * (edge + 4) + edge] = tile
    Image.fromarray((grid * 255).astype(np.uint8), mode="L").save(
        img_dir / "simulator_realistic.png", optimize=True
    )
    for i, (row, _, _) in enumerate(sets["realistic"]):
        print(
            f"tile {i + 2}: {row.dracoCamera} {row.dracoInterpolation} bin "
            f"{float(row.dracoBinning):.2f}, {float(row.dracoDose):.0f} e/Å², "
            f"{float(row.rlnDefocusU) / 1e4:.2f} µm, ice {float(row.dracoIceThickness):.0f} Å, "
            f"inverted {int(row.dracoInverted)}, particles {int(row.dracoNumParticles)}, "
            f"junk {int(row.dracoNumJunk)}"
        )

    # Spectra at 4 Å/px (the real image's pixel size).
    fig, (ax_ps, ax_nps) = plt.subplots(1, 2, figsize=(10, 3.8))
    q, p_real = radial_power(real_clean, REAL_PIXEL_SIZE)
    floor = q > 0.09
    ax_ps.semilogy(q, p_real / p_real[floor].mean(), "k", lw=2.5, label="real (UCSF K2, ~4 Å/px)")
    report = {
        "real_hf_slope": float(p_real[q > 0.11].mean() / p_real[(q > 0.06) & (q < 0.08)].mean())
    }
    for name, style in (("realistic", "-"), ("classic", "--")):
        for k, (row, full, clean) in enumerate(sets[name]):
            binned = fourier_rescale(full, 2.0, REAL_PIXEL_SIZE)[0]
            qs, ps = radial_power(binned, REAL_PIXEL_SIZE)
            label = f"{name} {k + 1}" if name == "realistic" else (name if k == 0 else None)
            ax_ps.semilogy(qs, ps / ps[floor].mean(), style, lw=1, alpha=0.8, label=label)
            qn, pn = radial_power(full - clean, 2.0)
            f = qn * 2.0  # cycles per pixel
            colour = pn[f > 0.4].mean() / pn[(f > 0.03) & (f < 0.12)].mean()
            ax_nps.plot(qn, pn / pn[(f > 0.03) & (f < 0.12)].mean(), style, lw=1, label=label)
            hf = ps[qs > 0.11].mean() / ps[(qs > 0.06) & (qs < 0.08)].mean()
            report[f"{name}_{k + 1}"] = {
                "camera": getattr(row, "dracoCamera", "k2 (classic)"),
                "interpolation": getattr(row, "dracoInterpolation", "none"),
                "binning": float(getattr(row, "dracoBinning", 1.0)),
                "nps_nyquist_over_low": round(float(colour), 3),
                "hf_slope_at_4A": round(float(hf), 3),
            }
    ax_ps.set(xlabel="spatial frequency (1/Å)", ylabel="power / mean at 0.09–0.125 1/Å")
    ax_ps.set_title("power spectrum at 4 Å/px", fontsize=9)
    ax_ps.legend(fontsize=6)
    ax_nps.set(xlabel="spatial frequency (1/Å)", ylabel="NPS / low-frequency NPS")
    ax_nps.set_title("noise power spectrum (full - clean), 2 Å/px", fontsize=9)
    fig.tight_layout()
    fig.savefig(img_dir / "simulator_realistic_spectra.png", dpi=90)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
