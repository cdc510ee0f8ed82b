"""Denoising benchmark on held-out simulated ribosome micrographs (issue 5).

Every method's output goes through the same scorer (`draco evaluate denoise`): PSNR and SSIM
after least-squares scale/offset matching, FRC, and the paper's SNR (Eq. 11) with signal and
background disks paired automatically from the true particle coordinates.

Methods: raw; Gaussian low-pass at 20 Å (cryoSPARC); the best Gaussian σ chosen with the clean
image (oracle); the best radial linear (Wiener) filter fitted with the clean image (an upper
bound for every linear filter, for reference); Topaz-Denoise's pretrained `unet` (topaz-em in
its own venv, never a dependency); Topaz-Denoise trained Noise2Noise on the bundled model's
EVN/ODD training pairs; DRACO.

The held-out set uses the 70S ribosome map (held out from every training set), 1.06 Å/px,
40 e⁻/Å², made by `draco simulate`.

With ``--set DIR`` the held-out set is an existing one in ``draco simulate``'s layout (e.g. the
cryoJAX sets of benchmarks/indep_sim) instead of a new ``draco simulate`` run; the pixel size
comes from the micrographs' headers and ``--diameter`` sizes the SNR disks.

Usage:
    python benchmarks/denoise.py --work /tmp/denoise_bench [--weights bundled]
        [--set /work/indep_sets/ribo70s_2A --diameter 250]
        [--topaz-venv /work/topaz-venv] [--topaz-train-dirs EVN_DIR ODD_DIR --topaz-epochs 50
        --topaz-budget-min 60 | --topaz-model MODEL.sav]
        [--speed-size 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise, format_table
from draco_em.evaluate.denoise_metrics import psnr
from draco_em.imaging.filters import gaussian_blur_px, gaussian_lowpass
from draco_em.io.mrc import read_image, write_mrc

REPO = Path(__file__).resolve().parents[1]
RIBOSOME = REPO.parent / "shared" / "data" / "aspire" / "clean70SRibosome_vol_65p.mrc"
PIXEL_SIZE = 1.06
ORACLE_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def run(cmd: list[str], **kw) -> float:
    """Run a command; return its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def simulate(out: Path, n: int, size: int, seed: int) -> Path:
    if not (out / "micrographs.star").exists():
        run(
            [
                sys.executable,
                "-m",
                "draco_em",
                "simulate",
                str(out),
                "--preset",
                "classic",
                "--n-micrographs",
                str(n),
                "--size",
                str(size),
                "--pixel-size",
                str(PIXEL_SIZE),
                "--dose",
                "40",
                "--structures",
                str(RIBOSOME),
                "--map-pixel-size",
                "5.0",
                "--seed",
                str(seed),
                "--no-movies",
                "-q",
            ]
        )
    return out


def raw_images(sim: Path) -> list[Path]:
    mics = sorted((sim / "micrographs").glob("*.mrc"))
    return [p for p in mics if not p.stem.endswith(("_EVN", "_ODD"))]


def oracle_wiener(raw: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The best isotropic linear filter for this image, fitted with its clean image.

    Per radial frequency shell k, the gain W(k) = Σ Re(S·R*) / Σ |R|² minimises the squared error
    of W·R against S over that shell. No linear, rotation-invariant filter can score a higher
    PSNR on this image, so it bounds every Gaussian low-pass from above.
    """
    r_hat = np.fft.fft2(raw - raw.mean())
    s_hat = np.fft.fft2(clean - clean.mean())
    fy = np.fft.fftfreq(raw.shape[0])[:, None]
    fx = np.fft.fftfreq(raw.shape[1])[None, :]
    shell = np.rint(np.hypot(fy, fx) * max(raw.shape)).astype(int).ravel()
    num = np.bincount(shell, (s_hat * np.conj(r_hat)).real.ravel())
    den = np.bincount(shell, (np.abs(r_hat) ** 2).ravel())
    gain = (num / np.maximum(den, 1e-30))[shell].reshape(raw.shape)
    return (np.fft.ifft2(r_hat * gain).real + clean.mean()).astype(np.float32)


def classical(sim: Path, pred: Path) -> dict[str, float]:
    """Write raw, 20 Å low-pass, oracle-σ and oracle-Wiener predictions; returns the σ chosen."""
    for name in ("raw", "lowpass_20A", "oracle_gaussian", "oracle_wiener"):
        (pred / name).mkdir(parents=True, exist_ok=True)
    images = {p.stem: read_image(p)[0] for p in raw_images(sim)}
    clean = {s: read_image(sim / "clean" / f"{s}.mrc")[0] for s in images}
    scores = {
        sig: np.mean([psnr(gaussian_blur_px(im, sig), clean[s]) for s, im in images.items()])
        for sig in ORACLE_SIGMAS
    }
    best = max(scores, key=scores.get)
    for stem, im in images.items():
        write_mrc(pred / "raw" / f"{stem}.mrc", im, PIXEL_SIZE)
        write_mrc(
            pred / "lowpass_20A" / f"{stem}.mrc", gaussian_lowpass(im, PIXEL_SIZE, 20.0), PIXEL_SIZE
        )
        write_mrc(pred / "oracle_gaussian" / f"{stem}.mrc", gaussian_blur_px(im, best), PIXEL_SIZE)
        wiener = oracle_wiener(im, clean[stem])
        write_mrc(pred / "oracle_wiener" / f"{stem}.mrc", wiener, PIXEL_SIZE)
    return {"oracle_sigma_px": best}


def draco_denoise(files: list[Path], out: Path, weights: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "draco_em",
        "denoise",
        *map(str, files),
        "-o",
        str(out),
        "--model",
        weights,
        "--no-skip-existing",
        "--no-progress",
        "--workers",
        "0",
    ]
    return run(cmd)


def topaz_denoise(venv: Path, files: list[Path], out: Path, model: str) -> float:
    """``topaz denoise`` with a pretrained model name, or a trained ``.sav`` file.

    Topaz 0.3.x ignores ``-m FILE`` (it always loads the pretrained ``unet``), so a trained
    model goes through benchmarks/topaz_apply.py, which runs Topaz's own command with that model.
    """
    out.mkdir(parents=True, exist_ok=True)
    if model.endswith(".sav"):
        head = [str(venv / "bin" / "python"), str(REPO / "benchmarks" / "topaz_apply.py"), model]
    else:
        head = [str(venv / "bin" / "topaz"), "denoise", "-m", model]
    cmd = [*head, "-d", "-1", "-o", str(out), *map(str, files)]
    return run(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"})


def topaz_train(
    venv: Path,
    dir_a: Path,
    dir_b: Path,
    prefix: Path,
    epochs: int,
    budget_s: float | None,
    holdout: float | None = None,
) -> tuple[float, Path]:
    """Topaz-Denoise Noise2Noise training on paired EVN/ODD folders (same file names).

    Stops at ``epochs`` or when ``budget_s`` seconds of wall-clock are spent (the same budget as
    DRACO's training). Topaz saves every epoch; the one returned is Topaz's own choice, the
    lowest validation loss in its log (``# [epoch/N] train val best``), as DRACO's best
    checkpoint is chosen on its validation set. Returns (seconds, that epoch's model).
    """
    cmd = [str(venv / "bin" / "topaz"), "denoise", "-a", str(dir_a), "-b", str(dir_b),
           "--save-prefix", str(prefix), "--num-epochs", str(epochs), "--save-interval", "1",
           "-d", "-1", "-c", "512", "--batch-size", "4", "--preload"]  # fmt: skip
    if holdout is not None:  # Topaz's 0.1 holds out no pair of a set under 10 (and then crashes)
        cmd += ["--holdout", str(holdout)]
    log_path = prefix.parent / "train.log"
    t0 = time.perf_counter()
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"},
                                stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - t0
    return seconds, topaz_best_epoch(log_path, prefix)


def topaz_best_epoch(log_path: Path, prefix: Path) -> Path:
    """The saved ``PREFIX_epochNN.sav`` with the lowest validation loss in Topaz's log."""
    saved = {int(re.search(r"epoch(\d+)", p.name).group(1)): p
             for p in prefix.parent.glob(f"{prefix.name}_epoch*.sav")}  # fmt: skip
    # Topaz prints "# [e/N]\ttrain\tval\tbest" with e counted from 0; epoch e+1 is saved.
    val = {int(e) + 1: float(v) for e, v in
           re.findall(r"# \[(\d+)/\d+\]\t[-\d.e]+\t([-\d.e]+)", log_path.read_text())}  # fmt: skip
    scored = [e for e in saved if e in val]
    if not scored:
        raise SystemExit(f"Topaz saved no scored epoch (log: {log_path})")
    return saved[min(scored, key=val.__getitem__)]


def peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def speed(args: argparse.Namespace, work: Path) -> dict:
    """Seconds and peak memory for one ``--speed-size``² micrograph, DRACO vs Topaz."""
    sim = simulate(work / f"speed_{args.speed_size}", 1, args.speed_size, 9100)
    files = raw_images(sim)
    out: dict[str, dict] = {}
    script = (
        "import resource,subprocess,sys,time;t=time.perf_counter();"
        "subprocess.run(sys.argv[1:],check=True);"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    cmds = {
        "draco": [
            sys.executable,
            "-m",
            "draco_em",
            "denoise",
            *map(str, files),
            "-o",
            str(work / "speed_draco"),
            "--model",
            args.weights,
            "--no-skip-existing",
            "--no-progress",
            "--workers",
            "0",
        ]
    }
    if args.topaz_venv and not args.no_topaz_speed:
        cmds["topaz_unet"] = [
            str(args.topaz_venv / "bin" / "topaz"),
            "denoise",
            "-m",
            "unet",
            "-d",
            "-1",
            "-o",
            str(work / "speed_topaz"),
            *map(str, files),
        ]
    for name, cmd in cmds.items():
        res = subprocess.run(
            [sys.executable, "-c", script, *cmd],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        secs, rss_kb = res.stdout.strip().splitlines()[-1].split()
        out[name] = {"seconds": float(secs), "peak_rss_gb": int(rss_kb) / 1024**2}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--weights", default="bundled")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--topaz-venv", type=Path, default=None)
    parser.add_argument("--topaz-train-dirs", type=Path, nargs=2, default=None)
    parser.add_argument("--topaz-epochs", type=int, default=5)
    parser.add_argument(
        "--topaz-budget-min",
        type=float,
        default=None,
        help="stop Topaz N2N training after this wall-clock (DRACO's budget)",
    )
    parser.add_argument(
        "--topaz-model",
        type=Path,
        default=None,
        help="apply this trained Topaz .sav instead of training one",
    )
    parser.add_argument("--speed-size", type=int, default=0, help="0 = skip the speed test")
    parser.add_argument(
        "--set",
        type=Path,
        default=None,
        help="score this existing set (draco simulate layout) instead of simulating one",
    )
    parser.add_argument(
        "--diameter", type=float, default=250.0, help="particle diameter in Å (SNR disks)"
    )
    parser.add_argument(
        "--no-topaz-speed",
        action="store_true",
        help="time DRACO only (Topaz takes minutes per 4096² micrograph)",
    )
    args = parser.parse_args()
    work, pred = args.work, args.work / "pred"
    if args.set:
        sim = args.set
        global PIXEL_SIZE
        PIXEL_SIZE = read_image(raw_images(sim)[0])[1]
        if not PIXEL_SIZE:
            raise SystemExit(f"{sim}: no pixel size in the micrographs' headers")
    else:
        sim = simulate(work / "heldout", args.n, args.size, 9000)
    files = raw_images(sim)
    info = classical(sim, pred)
    info["seconds"] = {"draco": draco_denoise(files, pred / "draco", args.weights)}
    if args.topaz_venv:
        info["seconds"]["topaz_unet"] = topaz_denoise(
            args.topaz_venv, files, pred / "topaz_unet", "unet"
        )
        if args.topaz_model:
            trained = args.topaz_model
        elif args.topaz_train_dirs:
            prefix = work / "topaz_n2n" / "model"
            prefix.parent.mkdir(parents=True, exist_ok=True)
            budget = args.topaz_budget_min * 60 if args.topaz_budget_min else None
            info["seconds"]["topaz_n2n_train"], trained = topaz_train(
                args.topaz_venv, *args.topaz_train_dirs, prefix, args.topaz_epochs, budget
            )
            info["topaz_n2n_model"] = str(trained)
        if args.topaz_model or args.topaz_train_dirs:
            info["seconds"]["topaz_n2n"] = topaz_denoise(
                args.topaz_venv, files, pred / "topaz_n2n", str(trained)
            )
    results = {}
    for folder in sorted(p for p in pred.iterdir() if p.is_dir()):
        # 60 Å disks inside the ~250 Å ribosome; backgrounds ≥ 125 + 60 Å from every centre
        # (the same proportions for another --diameter).
        radius = 60.0 * args.diameter / 250.0
        cfg = EvaluateDenoiseConfig(
            pred=folder,
            clean=sim / "clean",
            coords=sim / "coordinates",
            radius=radius / PIXEL_SIZE,
            exclusion=(args.diameter / 2 + radius) / PIXEL_SIZE,
        )
        results[folder.name] = evaluate_denoise(cfg)
    if args.speed_size:
        info["speed"] = speed(args, work)
    print(format_table(results))
    print(json.dumps(info, indent=2))
    summary = {k: v["mean"] for k, v in results.items()}
    (work / "results.json").write_text(json.dumps({"scores": summary, **info}, indent=2))
    figure(sim, pred, work / "denoise_benchmark.png")


#: Panel order of the figure (folders that exist), then the clean image.
FIGURE_ORDER = ("raw", "lowpass_20A", "oracle_gaussian", "topaz_unet", "topaz_n2n", "draco")


def figure(
    sim: Path, pred: Path, out: Path, crop: int = 512, order: tuple[str, ...] = FIGURE_ORDER
) -> None:
    """Top-left ``crop``² of the first held-out micrograph for every method in ``order`` (the
    folders that exist) and the clean image, each shown with its own 1–99 % percentile window
    (methods output different units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = raw_images(sim)[0].name
    panels = [(m, pred / m / stem) for m in order if (pred / m / stem).is_file()]
    panels.append(("clean", sim / "clean" / stem))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    for ax, (name, path) in zip(axes, panels, strict=True):
        image = read_image(path)[0][:crop, :crop]
        lo, hi = np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
