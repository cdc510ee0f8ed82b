"""Speed and memory of ``draco simulate`` (numbers for docs/benchmarks.md, "## Simulator").

Each case runs in a fresh Python process (so peak memory is its own) with the built-in phantoms:

* 2048² × 40-frame movies, ``-j 1`` (2 movies) and ``-j 2`` (4 movies): seconds per movie;
* 4096² micrographs without a movie (``--no-movies``), ``-j 1``: seconds per micrograph.

``--calibrate`` instead compares simulated micrographs with the real one in
``../shared/data/micrograph_cleaner_em`` (radially averaged power spectrum and intensity
histogram, both after standardising each image) and writes ``docs/img/simulator_*.png``.

Usage:
    .venv/bin/python benchmarks/simulate.py [--quick] [--out /tmp/draco-bench-sim]
    .venv/bin/python benchmarks/simulate.py --calibrate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.run import run_simulation
cfg = SimulateConfig(**json.loads(sys.argv[1]))
t0 = time.perf_counter()
run_simulation(cfg, progress=False)
wall = time.perf_counter() - t0
own = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
peak = max(own.ru_maxrss, kids.ru_maxrss) / 1024
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak}))
"""


def run_case(out: Path, **settings) -> dict:
    """Run one simulation in a fresh process; return wall time and peak RSS (MiB)."""
    if out.exists():
        shutil.rmtree(out)
    cfg = {"outdir": str(out), "cache_dir": str(out.parent / "cache"), "preset": "classic"}
    cfg.update(settings)
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()[0]
    result["per_image_s"] = result["wall_s"] / settings["n_micrographs"]
    result["cpu_per_image_s"] = result["cpu_s"] / settings["n_micrographs"]
    return result


REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared/data/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"
#: The real image is a 4×-binned K2 sum (README): ~4 Å/px; its dose is not stated, so the
#: simulation uses a typical 40 e⁻/Å².
REAL_PIXEL_SIZE = 4.0


def radial_power(image, pixel_size: float, n_bins: int = 60):
    """Radially averaged power spectrum of a standardised, edge-tapered image."""
    import numpy as np

    img = (image - image.mean()) / image.std()
    taper = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1])) ** 0.25
    power = np.abs(np.fft.fftshift(np.fft.fft2(img * taper))) ** 2 / img.size
    fy = np.fft.fftshift(np.fft.fftfreq(img.shape[0], pixel_size))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(img.shape[1], pixel_size))[None, :]
    q = np.sqrt(fy**2 + fx**2)
    edges = np.linspace(0, 0.5 / pixel_size, n_bins + 1)
    idx = np.digitize(q.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < n_bins)
    total = np.bincount(idx[ok], power.ravel()[ok], n_bins)
    count = np.bincount(idx[ok], minlength=n_bins)
    return (edges[1:] + edges[:-1]) / 2, total / np.maximum(count, 1)


def calibrate(out: Path) -> None:
    """Write docs/img/simulator_calibration.png and simulator_examples.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from draco_em.io.mrc import read_image
    from draco_em.simulate.config import SimulateConfig
    from draco_em.simulate.run import run_simulation

    real, _ = read_image(REAL)
    # Contamination-free corner of the real image (its MicrographCleaner mask is < 0.3 there),
    # against simulations without carbon or contamination, same size and pixel size.
    real_crop = real[448:896, 64:512]
    cfg = SimulateConfig(
        preset="classic",
        outdir=out / "calibration",
        n_micrographs=4,
        size=448,
        pixel_size=REAL_PIXEL_SIZE,
        movies=False,
        cache_dir=out / "cache",
        carbon_probability=0,
        contamination_probability=0,
    )
    run_simulation(cfg, progress=False)
    sims = [read_image(p)[0] for p in sorted((out / "calibration/micrographs").glob("*_0000?.mrc"))]
    fig, (ax_ps, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    # Intensities of the real sum are arbitrary (dose-weighted, rescaled): compare spectra
    # relative to their own white-noise floor (mean power at 0.09–0.125 1/Å).
    q, p_real = radial_power(real_crop, REAL_PIXEL_SIZE)
    floor = q > 0.09
    ax_ps.semilogy(q, p_real / p_real[floor].mean(), "k", lw=2, label="real (UCSF, K2, ~4 Å/px)")
    for i, sim in enumerate(sims):
        p_sim = radial_power(sim, REAL_PIXEL_SIZE)[1]
        ax_ps.semilogy(q, p_sim / p_sim[floor].mean(), lw=1, alpha=0.8, label=f"simulated {i + 1}")
    ax_ps.set(
        xlabel="spatial frequency (1/Å)",
        ylabel="power / high-frequency floor",
        title="radially averaged power spectrum",
    )
    ax_ps.legend(fontsize=7)
    bins = np.linspace(-5, 5, 101)
    for img, style, label in [(real_crop, "k", "real")] + [
        (s, None, f"simulated {i + 1}") for i, s in enumerate(sims)
    ]:
        z = (img - img.mean()) / img.std()
        ax_h.semilogy(
            (bins[1:] + bins[:-1]) / 2,
            np.histogram(z, bins, density=True)[0],
            style or "-",
            lw=2 if style else 1,
            label=label,
        )
    ax_h.set(xlabel="(intensity - mean) / std", ylabel="density", title="intensity histogram")
    ax_h.legend(fontsize=7)
    img_dir = REPO / "docs/img"
    img_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(img_dir / "simulator_calibration.png", dpi=110)
    full_cfg = cfg.model_copy(
        update={
            "outdir": out / "examples",
            "size": 960,
            "n_micrographs": 1,
            "carbon_probability": 1.0,
            "contamination_probability": 1.0,
        }
    )
    run_simulation(full_cfg, progress=False)
    example = read_image(out / "examples/micrographs/mic_00001.mrc")[0]
    clean = read_image(out / "examples/clean/mic_00001.mrc")[0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for ax, img, title in zip(
        axes,
        [real, example, clean],
        ["real (4× binned K2)", "simulated full sum", "simulated clean"],
        strict=False,
    ):
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(img_dir / "simulator_examples.png", dpi=80)
    print(f"wrote {img_dir}/simulator_calibration.png and simulator_examples.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/draco-bench-sim"))
    parser.add_argument("--quick", action="store_true", help="1024² instead of 2048²/4096².")
    parser.add_argument("--calibrate", action="store_true", help="Write the calibration plots.")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.out)
        return
    scale = 2 if args.quick else 1
    cases = [
        ("movie 2048² × 40, -j 1", {"n_micrographs": 2, "size": 2048 // scale, "jobs": 1}),
        ("movie 2048² × 40, -j 2", {"n_micrographs": 4, "size": 2048 // scale, "jobs": 2}),
        (
            "no movie 4096², -j 1",
            {"n_micrographs": 1, "size": 4096 // scale, "jobs": 1, "movies": False},
        ),
    ]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} cpus={os.cpu_count()}")
    print(
        "| case | images | wall s | wall s per image | CPU s per image | peak RSS MiB "
        "| load avg before/after |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, (label, settings) in enumerate(cases):
        r = run_case(args.out / f"case{i}", frames=40, **settings)
        print(
            f"| {label} | {settings['n_micrographs']} | {r['wall_s']:.1f} | "
            f"{r['per_image_s']:.1f} | {r['cpu_per_image_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['load_before']:.1f} / {r['load_after']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
