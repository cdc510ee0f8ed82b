"""``draco denoise --adapt`` variants on the real contaminated micrograph (issue 20, session 3).

Uses the work folder of ``benchmarks/denoise_real.py`` (raw frame, coordinates, masks, the
other methods' outputs and the seeded Eq. 11 region pairs), adds one prediction folder per
variant (``NAME=draco denoise options``, run with ``--adapt`` from WEIGHTS at the assumed
4 Å/px), and prints Eq. 11 (masked pairs and all picks) beside the crop correlation with the
raw image (1 = nothing removed; the only blur-sensitive number without halves or truth), and
draws the crop figure with the variants as extra panels.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_adapt_real.py --work /tmp/denoise_real \\
        --weights v2.safetensors --variant "bs=--adapt-stage blindspot" \\
        --variant "bs_r1=--adapt-stage blindspot --adapt-blind-radius 1" \\
        --panel "draco v2 --adapt (blind-spot)=bs"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoise_real import MCE_DIAMETER, MCE_PIXEL, crop_correlations, figure, run, score

from draco_em.evaluate.denoise import format_table

CROP = (80, 560, 320)  # clear of the ice blob, with autopicks (denoise_real.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--weights", default="bundled", help="the denoiser adapted from")
    parser.add_argument("--variant", action="append", default=[], help='NAME="OPTIONS"')
    parser.add_argument("--panel", action="append", default=[], help="TITLE=NAME (figure)")
    parser.add_argument(
        "--figure", type=Path, default=None,
        help="default WORK/denoise_s3.png; docs/img/denoise_s3.png remakes the docs' figure",
    )  # fmt: skip
    parser.add_argument(
        "--bundled", default="draco",
        help="prediction folder shown as 'draco (bundled)' (e.g. v5 from denoise_real.py --draco)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.figure is None:  # never overwrite the docs' figure from a partial run
        args.figure = args.work / "denoise_s3.png"
    mce = args.work / "mce"
    raw, coords, masks, pred = (mce / d for d in ("raw", "coords", "masks", "pred"))
    info: dict = {"seconds": {}, "adaptation_seconds": {}}
    for spec in args.variant:
        name, options = spec.split("=", 1)
        out = pred / name
        if not (out / "adapt" / "adapted.safetensors").exists():
            t0 = time.perf_counter()
            run([sys.executable, "-m", "draco_em", "denoise", str(raw), "-o", str(out), "--adapt",
                 "--model", args.weights, "--pixel-size", str(MCE_PIXEL), "--no-progress",
                 "--workers", "0", "--no-bf16", *options.split()])  # fmt: skip
            info["seconds"][name] = round(time.perf_counter() - t0, 1)
        record = json.loads((out / "adapt" / "adapt.json").read_text())
        info["adaptation_seconds"][name] = record.get("seconds")
    for name, mask in (("mce_masked", masks), ("mce_all_picks", None)):
        res = score(pred, raw, coords, MCE_PIXEL, MCE_DIAMETER, args.work / f"{name}_pairs.json",
                    mask)  # fmt: skip
        info[name] = {k: v["mean"]["snr_db"] for k, v in res.items()}
        print(f"== {name}\n{format_table(res)}")
    info["crop_corr_with_raw"] = crop_correlations(raw, pred, CROP)
    print(json.dumps(info, indent=1))
    panels = tuple(tuple(p.split("=", 1)) for p in args.panel)
    figure(raw, pred, args.figure, CROP, MCE_PIXEL, panels,  # type: ignore[arg-type]
           bundled=args.bundled)  # fmt: skip
    (args.work / "denoise_adapt_real.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
