"""``draco denoise --adapt`` against the bundled denoiser, on the sets of denoise_real.py.

Run ``benchmarks/denoise_real.py --work WORK --sim 2`` first (it makes the raw/coords folders,
the other methods' outputs and the seeded region pairs); this adds ``draco_adapted`` (and, for
the real micrograph, the same weights with ``--shifts 4``) to WORK's prediction folders and
scores every method on the same pairs:

- real micrograph (micrograph_cleaner_em; no halves → masked-reconstruction adaptation at the
  assumed 4 Å/px): Eq. 11, masked and all picks;
- simulated set with EVN/ODD halves and truth (→ Noise2Noise adaptation on the halves; the
  clean image is never read by training): PSNR/SSIM/FRC against the clean image, Eq. 11, and
  the half metrics. ``half_cross_db`` is the N2N training loss itself on these very images, so
  it flatters the adapted model; PSNR against the clean image is the fair column.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_adapt.py --work /tmp/denoise_real
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoise_real import (
    MCE_DIAMETER,
    MCE_PIXEL,
    SIM_DIAMETER,
    SIM_PIXEL,
    run,
    score,
)
from denoise_real import figure as real_figure

from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise, format_table


def adapt(inputs: Path, out: Path, pixel_size: float, *extra: str) -> float:
    """Seconds of ``draco denoise --adapt`` (adaptation + denoising; 0 if already there)."""
    if (out / "adapt" / "adapted.safetensors").exists():
        return 0.0
    t0 = time.perf_counter()
    run([sys.executable, "-m", "draco_em", "denoise", str(inputs), "-o", str(out), "--adapt",
         "--pixel-size", str(pixel_size), "--no-progress", "--workers", "0", *extra])  # fmt: skip
    return time.perf_counter() - t0


def figure(raw: Path, pred: Path, out: Path, box: tuple[int, int, int] = (80, 560, 320)) -> None:
    """denoise_real's crop figure with the adapted model as a fifth panel."""
    extra = (("draco --adapt (MAE)", "draco_adapted_shifts4"),)
    real_figure(raw, pred, out, box, MCE_PIXEL, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/denoise_real"))
    parser.add_argument(
        "--figure", type=Path, default=None,
        help="default WORK/denoise_adapt.png; docs/img/denoise_adapt.png remakes the docs' figure",
    )  # fmt: skip
    args = parser.parse_args()
    if args.figure is None:  # never overwrite the docs' figure from a partial run
        args.figure = args.work / "denoise_adapt.png"
    work, info = args.work, {}

    raw, coords, masks = (work / "mce" / d for d in ("raw", "coords", "masks"))
    pred = work / "mce" / "pred"
    info["mce_seconds"] = adapt(raw, pred / "draco_adapted", MCE_PIXEL)
    weights = pred / "draco_adapted" / "adapt" / "adapted.safetensors"
    if not (pred / "draco_adapted_shifts4").exists():
        run([sys.executable, "-m", "draco_em", "denoise", str(raw), "-o",
             str(pred / "draco_adapted_shifts4"), "--model", str(weights), "--shifts", "4",
             "--pixel-size", str(MCE_PIXEL), "--no-progress", "--workers", "0"])  # fmt: skip
    for name, mask in (("mce_masked", masks), ("mce_all_picks", None)):
        res = score(pred, raw, coords, MCE_PIXEL, MCE_DIAMETER, work / f"{name}_pairs.json", mask)
        info[name] = {k: v["mean"] for k, v in res.items()}
        print(f"== {name}\n{format_table(res)}")
    figure(raw, pred, args.figure)

    sim, sim_pred = work / "sim", work / "sim_pred"
    if sim.exists():
        info["sim_seconds"] = adapt(sim / "micrographs", sim_pred / "draco_adapted", SIM_PIXEL)
        results = {}
        for folder in sorted(p for p in sim_pred.iterdir() if p.is_dir()):
            cfg = EvaluateDenoiseConfig(
                pred=folder, clean=sim / "clean", raw=sim / "micrographs",
                coords=sim / "coordinates", pixel_size=SIM_PIXEL, diameter=SIM_DIAMETER,
                pairs=work / "sim_pairs.json",
            )  # fmt: skip
            results[folder.name] = evaluate_denoise(cfg)
        info["sim"] = {k: v["mean"] for k, v in results.items()}
        print(f"== simulated (truth, EVN/ODD)\n{format_table(results)}")
    out = work / "denoise_adapt.json"
    out.write_text(json.dumps(info, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
