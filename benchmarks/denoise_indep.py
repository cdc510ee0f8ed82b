"""Denoisers on a second simulator's sets with truth (cryoJAX, benchmarks/indep_sim; issue 20).

For one set in ``draco simulate``'s layout (``micrographs/``, ``clean/``, ``coordinates/``):
raw, 20 Å low-pass, the oracle Gaussian and oracle radial Wiener filter (both fitted with the
clean image: bounds, not methods), Topaz-Denoise's pretrained ``unet`` (its own venv) and any
number of ``draco denoise`` weights, all scored by ``draco evaluate denoise`` exactly as
``benchmarks/denoise.py --set`` does (PSNR/SSIM after scale/offset matching, FRC, Eq. 11 with
disks of 0.24 × diameter), plus the **correlation SNR** 10·log10(ρ² / (1 − ρ²)) of the
prediction with the clean image (ρ: Pearson correlation over the whole micrograph; invariant to
scale and offset, so it needs no matching). Outputs already in WORK/pred are reused.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_indep.py --set /work/indep_sets/ribo70s_2A \\
        --work /tmp/cj_ribo --diameter 250 --topaz-venv /work/venvs/topaz \\
        --draco draco=bundled --draco draco_v2=/path/v2.safetensors \\
        --adapt v2_n2n=/path/v2.safetensors --adapt v2_nohalves=/path/v2.safetensors:full \\
        --blend v6_blend=bundled --halves-wiener

``--adapt NAME=WEIGHTS[:full]`` runs ``draco denoise --adapt`` from WEIGHTS on the set's full
sums; with ``:full`` the sums are linked into WORK/full_only without their ``_EVN``/``_ODD``
halves, so the adaptation cannot use them (the no-halves objective, judged by the truth).
The adaptation's own seconds (``OUTDIR/adapt/adapt.json``) go to ``results.json``.
``--blend NAME=WEIGHTS`` runs ``draco denoise --blend-halves`` (the set's ``_EVN``/``_ODD``
halves, found beside the sums); ``--halves-wiener`` adds the same blend without a model.
``--pseudo NAME=WEIGHTS`` runs ``draco denoise --pseudo-halves`` on the sums alone (linked into
WORK/full_only, as ``:full``): the blend with pseudo-halves recorrupted from each sum.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import denoise as bench

from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise
from draco_em.infer.halves_blend import blend_halves
from draco_em.io.halves import find_halves
from draco_em.io.mrc import read_image, write_mrc


def corr_snr_db(pred: np.ndarray, clean: np.ndarray) -> float:
    """10·log10(ρ²/(1 − ρ²)): the SNR of a prediction that is ρ-correlated with the truth."""
    rho = float(
        np.corrcoef(pred.astype(np.float64).ravel(), clean.astype(np.float64).ravel())[0, 1]
    )
    return 10.0 * np.log10(rho * rho / max(1.0 - rho * rho, 1e-12))


def score(sim: Path, pred: Path, diameter: float, pixel_size: float) -> dict:
    radius = 60.0 * diameter / 250.0  # benchmarks/denoise.py's proportions
    out = {}
    for folder in sorted(p for p in pred.iterdir() if p.is_dir()):
        cfg = EvaluateDenoiseConfig(
            pred=folder, clean=sim / "clean", coords=sim / "coordinates",
            radius=radius / pixel_size, exclusion=(diameter / 2 + radius) / pixel_size,
        )  # fmt: skip
        mean = evaluate_denoise(cfg)["mean"]
        corr = [
            corr_snr_db(read_image(p)[0], read_image(sim / "clean" / p.name)[0])
            for p in sorted(folder.glob("*.mrc"))
        ]
        out[folder.name] = {**mean, "corr_snr_db": float(np.mean(corr))}
    return out


def sums_alone(files: list[Path], work: Path) -> list[Path]:
    """Links to the sums in WORK/full_only, without their ``_EVN``/``_ODD`` halves beside them."""
    (work / "full_only").mkdir(parents=True, exist_ok=True)
    links = [work / "full_only" / p.name for p in files]
    for src, link in zip(files, links, strict=True):
        if not link.exists():
            link.symlink_to(src.resolve())
    return links


def halves_wiener(files: list[Path], out: Path, pixel_size: float) -> None:
    """The halves-calibrated blend with zero denoised inputs: per ring, the Wiener gain of the
    sum fitted on the halves' cross-power (no model, no clean image)."""
    for path in files:
        pair = find_halves(path)
        if pair is None:
            raise SystemExit(f"--halves-wiener: no X_EVN/X_ODD halves beside {path}")
        even, odd = (read_image(half)[0] for half in pair)
        zero = np.zeros_like(even)
        write_mrc(out / path.name, blend_halves(zero, zero, even, odd)[0], pixel_size)


def topaz_n2n(venv: Path, files: list[Path], work: Path, minutes: float) -> dict[str, float]:
    """Topaz's own recipe for data with halves: N2N training on the halves (folders of links,
    the same names in A and B), then its best-validation epoch applied to the sums."""
    dirs = work / "topaz_n2n_pairs" / "A", work / "topaz_n2n_pairs" / "B"
    for path in files:
        pair = find_halves(path)
        if pair is None:
            raise SystemExit(f"--topaz-n2n: no X_EVN/X_ODD halves beside {path}")
        for folder, half in zip(dirs, pair, strict=True):
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / path.name).exists():
                (folder / path.name).symlink_to(half.resolve())
    prefix = work / "topaz_n2n_train" / "model"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # One pair held out for Topaz's own model choice (its default 0.1 holds out none of 8).
    train_s, model = bench.topaz_train(venv, *dirs, prefix, epochs=1000, budget_s=60 * minutes,
                                       holdout=1.0 / len(files))  # fmt: skip
    apply_s = bench.topaz_denoise(venv, files, work / "pred" / "topaz_n2n", str(model))
    return {"topaz_n2n_train": train_s, "topaz_n2n": apply_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--diameter", type=float, required=True, help="particle diameter (Å)")
    parser.add_argument("--topaz-venv", type=Path, default=None)
    parser.add_argument("--topaz-threads", type=int, default=2)
    parser.add_argument("--draco", action="append", default=[], help="NAME=WEIGHTS (repeatable)")
    parser.add_argument(
        "--adapt", action="append", default=[], help="NAME=WEIGHTS[:full] (repeatable)"
    )
    parser.add_argument(
        "--blend", action="append", default=[],
        help="NAME=WEIGHTS: draco denoise --blend-halves (halves X_EVN/X_ODD beside the sums)",
    )  # fmt: skip
    parser.add_argument(
        "--pseudo", action="append", default=[],
        help="NAME=WEIGHTS: draco denoise --pseudo-halves on the sums alone (halves hidden)",
    )  # fmt: skip
    parser.add_argument(
        "--halves-wiener", action="store_true",
        help="add the row 'halves_wiener': the blend with no model (a Wiener filter calibrated "
        "on the halves' cross-power; infer.halves_blend with zero denoised inputs)",
    )  # fmt: skip
    parser.add_argument(
        "--topaz-n2n", type=float, default=None, metavar="MINUTES",
        help="also train Topaz-Denoise Noise2Noise on the set's EVN/ODD halves for at most "
        "MINUTES (needs --topaz-venv), then denoise the sums with its best-validation epoch "
        "(row 'topaz_n2n')",
    )  # fmt: skip
    parser.add_argument(
        "--figure", nargs="+", default=None, metavar="METHOD",
        help="write WORK/figure.png: a crop of the first micrograph for these methods + clean",
    )  # fmt: skip
    parser.add_argument("--adapt-args", default="", help="extra draco denoise options, quoted")
    parser.add_argument(
        "--draco-args",
        default="",
        help="extra draco denoise options of the --draco, --blend and --pseudo rows, quoted",
    )
    args = parser.parse_args()
    sim, pred = args.set, args.work / "pred"
    files = bench.raw_images(sim)
    bench.PIXEL_SIZE = pixel_size = read_image(files[0])[1]
    info: dict = {"seconds": {}}
    if not (pred / "oracle_wiener").exists():
        info |= bench.classical(sim, pred)
    for spec in args.draco:
        name, weights = spec.split("=", 1)
        if not all((pred / name / p.name).exists() for p in files):
            # float32, as the earlier rows (bf16, the CPU default now, moves PSNR 0.002 dB)
            cmd = [sys.executable, "-m", "draco_em", "denoise", *map(str, files), "-o",
                   str(pred / name), "--model", weights, "--no-skip-existing", "-q",
                   "--workers", "0", "--no-bf16", *args.draco_args.split()]  # fmt: skip
            info["seconds"][name] = bench.run(cmd)
    blends = [(spec, files, "--blend-halves") for spec in args.blend]
    blends += [(spec, sums_alone(files, args.work), "--pseudo-halves") for spec in args.pseudo]
    for spec, inputs, flag in blends:
        name, weights = spec.split("=", 1)
        if not all((pred / name / p.name).exists() for p in files):
            cmd = [sys.executable, "-m", "draco_em", "denoise", *map(str, inputs), "-o",
                   str(pred / name), "--model", weights, "--no-skip-existing", "-q",
                   "--workers", "0", "--no-bf16", flag, *args.draco_args.split()]  # fmt: skip
            info["seconds"][name] = bench.run(cmd)
    if args.halves_wiener:
        halves_wiener(files, pred / "halves_wiener", pixel_size)
    for spec in args.adapt:
        name, weights = spec.split("=", 1)
        inputs = files
        if weights.endswith(":full"):
            weights = weights[: -len(":full")]
            inputs = sums_alone(files, args.work)
        if not all((pred / name / p.name).exists() for p in files):
            cmd = [sys.executable, "-m", "draco_em", "denoise", *map(str, inputs), "-o",
                   str(pred / name), "--model", weights, "--adapt", "-q", "--workers", "0",
                   "--no-bf16", *args.adapt_args.split()]  # fmt: skip
            info["seconds"][name] = bench.run(cmd)
            record = json.loads((pred / name / "adapt" / "adapt.json").read_text())
            info["seconds"][f"{name}_adaptation"] = record.get("seconds")
    if args.topaz_venv and not all((pred / "topaz_unet" / p.name).exists() for p in files):
        os.environ["OMP_NUM_THREADS"] = str(args.topaz_threads)
        (pred / "topaz_unet").mkdir(parents=True, exist_ok=True)
        cmd = [str(args.topaz_venv / "bin" / "topaz"), "denoise", "-m", "unet", "-d", "-1",
               "-o", str(pred / "topaz_unet"), *map(str, files)]  # fmt: skip
        info["seconds"]["topaz_unet"] = bench.run(cmd, env=dict(os.environ))
    if args.topaz_n2n and args.topaz_venv:
        if not all((pred / "topaz_n2n" / p.name).exists() for p in files):
            info["seconds"] |= topaz_n2n(args.topaz_venv, files, args.work, args.topaz_n2n)
    if args.figure:
        bench.figure(sim, pred, args.work / "figure.png", crop=384, order=tuple(args.figure))
    scores = score(sim, pred, args.diameter, pixel_size)
    cols = ("psnr_db", "ssim", "frc_mean", "snr_db", "corr_snr_db")
    print(f"{'method':<20}" + "".join(f"{c:>13}" for c in cols))
    for name, s in scores.items():
        print(f"{name:<20}" + "".join(f"{s.get(c, float('nan')):>13.3f}" for c in cols))
    old = args.work / "results.json"
    prev = json.loads(old.read_text()).get("seconds", {}) if old.exists() else {}
    info["seconds"] = prev | info["seconds"]
    old.write_text(json.dumps({"scores": scores, **info}, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
