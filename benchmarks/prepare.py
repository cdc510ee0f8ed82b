"""``draco prepare`` benchmark: movies per minute and alignment accuracy (results: docs/prepare.md).

On ``draco simulate`` movies with known drift and a simulated gain (made here when the folder
is absent, kept outside the repo):

* throughput: wall-clock and CPU seconds per movie, movies per minute, at ``--threads`` torch
  threads (2 = the issue's "2 cores") and ``--jobs`` worker processes;
* accuracy: RMS of the estimated global shifts against the truth (movie pixels), and the
  correlation of the aligned full sum with the clean image relative to the same sum made with
  the *true* shifts (same gain, same Fourier-shift summation: 1.0 = perfect alignment).

    python benchmarks/prepare.py --sim /tmp/bench_sim --size 2048 --frames 40 --n 3
    python benchmarks/prepare.py --sim /tmp/bench_sim --patches 5x5

With ``--relion``, RELION's own motion correction (``relion_run_motioncorr --use_own``, Debian
package ``relion``; global only, B-factor 150 pix², ``--j THREADS``) runs on the same movies and
gain and is scored the same way (its shifts are the correction, i.e. minus ours).

    python benchmarks/prepare.py --sim /tmp/bench_sim --relion
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from draco_em.allocator import tune_allocator
from draco_em.io.motion import read_motion_csv
from draco_em.io.mrc import read_image, read_mrc
from draco_em.prepare.config import PrepareConfig
from draco_em.prepare.motion import parity_sums
from draco_em.prepare.run import run_prepare


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def simulate(sim: Path, size: int, frames: int, n: int) -> None:
    """Movies with drift and gain via ``draco simulate`` (skipped when already there)."""
    if (sim / "micrographs.star").exists():
        return
    cmd = [sys.executable, "-m", "draco_em", "simulate", "-o", str(sim), "--preset", "classic",
           "--n-micrographs", str(n),
           "--size", str(size), "--frames", str(frames), "--gain", "-q"]  # fmt: skip
    subprocess.run(cmd, check=True)


def accuracy(sim: Path, out: Path, name: str) -> dict:
    """Shift RMS (px) and clean-image correlation relative to perfect alignment."""
    truth = read_motion_csv(sim / "motion" / f"{name}.csv")
    est = read_motion_csv(out / "motion" / f"{name}.csv")
    clean, _ = read_image(sim / "clean" / f"{name}.mrc")
    full, _ = read_image(out / f"{name}.mrc")
    gain = read_mrc(sim / "gain.mrc").data
    movie = np.asarray(read_mrc(sim / "movies" / f"{name}.mrcs").data, np.float32) * gain
    odd, even, _ = parity_sums(torch.from_numpy(movie), truth)
    inner = np.s_[32:-32, 32:-32]  # the edge strip holds wrapped content either way
    c_est, c_true = _corr(full[inner], clean[inner]), _corr((odd + even)[inner], clean[inner])
    return {
        "name": name,
        "shift_rms_px": float(np.sqrt(((est - truth) ** 2).sum(1).mean())),
        "max_true_shift_px": float(np.abs(truth).max()),
        "corr_vs_perfect": c_est / c_true,
    }


def relion_shifts(star: Path) -> np.ndarray:
    """RELION's per-frame global shifts from a motion STAR, as displacements (x, y) px."""
    from draco_em.io.star import read_star

    table = read_star(star)["global_shift"].sort_values("rlnMicrographFrameNumber")
    corrected = table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy(np.float64)
    return -(corrected - corrected[0])  # RELION stores the correction applied


def run_relion(sim: Path, threads: int) -> dict:
    """``relion_run_motioncorr --use_own`` on the simulated movies: time and accuracy."""
    work = sim.with_name(sim.name + "_relion")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    names = sorted(p.stem for p in (sim / "movies").glob("*.mrcs"))
    lines = ["data_optics", "loop_", "_rlnOpticsGroupName", "_rlnOpticsGroup",
             "_rlnMicrographOriginalPixelSize", "_rlnVoltage", "_rlnSphericalAberration",
             "_rlnAmplitudeContrast", "opticsGroup1 1 1.0 300 2.7 0.07", "",
             "data_movies", "loop_", "_rlnMicrographMovieName", "_rlnOpticsGroup"]  # fmt: skip
    lines += [f"{(sim / 'movies' / n).resolve()}.mrcs 1" for n in names]
    (work / "movies.star").write_text("\n".join(lines) + "\n")
    cmd = ["relion_run_motioncorr", "--i", "movies.star", "--o", "MotionCorr/", "--use_own",
           "--j", str(threads), "--bfactor", "150", "--patch_x", "1", "--patch_y", "1",
           "--gainref", str((sim / "gain.mrc").resolve())]  # fmt: skip
    start = time.monotonic()
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    wall = time.monotonic() - start
    results = []
    for name in names:
        stars = list((work / "MotionCorr").rglob(f"{name}.star"))
        mics = list((work / "MotionCorr").rglob(f"{name}.mrc"))
        est = relion_shifts(stars[0])
        out = work / "scored"
        (out / "motion").mkdir(parents=True, exist_ok=True)
        rows = [f"{i},{x},{y}" for i, (x, y) in enumerate(est)]
        (out / "motion" / f"{name}.csv").write_text("frame,shift_x,shift_y\n" + "\n".join(rows))
        shutil.copy(mics[0], out / f"{name}.mrc")
        results.append(accuracy(sim, out, name))
    n = len(names)
    return {"wall_s_per_movie": wall / n, "movies_per_minute": 60 * n / wall,
            "accuracy": results}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, default=Path("/tmp/bench_sim"))
    parser.add_argument("--out", type=Path, default=None, help="default: <sim>_prepared")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--patches", default="1x1")
    parser.add_argument("--align-size", type=int, default=512)
    parser.add_argument("--relion", action="store_true", help="also run RELION's own (global)")
    args = parser.parse_args()
    tune_allocator()  # as the ``draco`` command does
    torch.set_num_threads(args.threads)
    simulate(args.sim, args.size, args.frames, args.n)
    out = args.out or args.sim.with_name(args.sim.name + f"_prepared_{args.patches}")
    shutil.rmtree(out, ignore_errors=True)
    cfg = PrepareConfig(
        inputs=[str(args.sim / "movies")], outdir=out, gain=args.sim / "gain.mrc",
        target_pixel_size=0, patches=args.patches, jobs=args.jobs, device="cpu",
        align_size=args.align_size,
    )  # fmt: skip
    start, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    summary = run_prepare(cfg, progress=False)
    wall = time.monotonic() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
           + children.ru_utime + children.ru_stime)  # fmt: skip
    n = summary.made
    names = sorted(p.stem for p in (args.sim / "movies").glob("*.mrcs"))
    report = {
        "movies": n, "size": args.size, "frames": args.frames, "threads": args.threads,
        "jobs": args.jobs, "patches": args.patches, "align_size": args.align_size,
        "wall_s_per_movie": wall / max(n, 1), "cpu_s_per_movie": cpu / max(n, 1),
        "movies_per_minute": 60 * n / wall,
        "load_average_1min": float(Path("/proc/loadavg").read_text().split()[0]),
        "accuracy": [accuracy(args.sim, out, name) for name in names],
    }  # fmt: skip
    if args.relion:
        report["relion_own"] = run_relion(args.sim, args.threads)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
