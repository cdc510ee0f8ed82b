"""Picks on contamination, on the one real contaminated micrograph (issue 18).

``../shared/data/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc`` (real K2 micrograph, 959 × 927,
~4 Å/px after 4× binning; no particle truth) and its MicrographCleaner "bad region" probability
map: the share of each picker's picks that lands on the mask (> 0.5; 14.5 % of the area), with
and without exclusion. The particle is 46 px across in this frame (the MicrographCleaner test's
box), so ``--diameter 184 --pixel-size 4``.

    python benchmarks/pick_contamination.py --model bundled --out /tmp/h18/contam
    python benchmarks/pick_contamination.py --model /tmp/h18/runs/RUN --out /tmp/h18/contam

Rows per model: no exclusion; ``--exclude-by-curation bundled``; ``--exclude-masks`` with the
MicrographCleaner mask itself (the upper bound of exclusion by a good mask).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from draco_em.io.coords import read_coord_folder
from draco_em.io.mrc import read_image, write_mrc

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "micrograph_cleaner_em"
MIC = DATA / "Ucsf_stack_1142_DW.mrc"
MASK = DATA / "Ucsf_stack_1142_DW_mask.mrc"
PIXEL, DIAMETER = 4.0, 184.0


def on_mask(picks_dir: Path, mask: np.ndarray) -> dict:
    picks = read_coord_folder(picks_dir)
    df = next(iter(picks.values())) if picks else None
    if df is None or not len(df):
        return {"picks": 0, "on_mask": 0, "share_on_mask": 0.0}
    x = np.clip(np.rint(df["x"].to_numpy()).astype(int), 0, mask.shape[1] - 1)
    y = np.clip(np.rint(df["y"].to_numpy()).astype(int), 0, mask.shape[0] - 1)
    hit = int((mask[y, x] > 0.5).sum())
    return {"picks": len(df), "on_mask": hit, "share_on_mask": round(hit / len(df), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--out", type=Path, default=Path("/tmp/h18/contam"))
    ap.add_argument("--diameter-scales", default=None,
                    help="passed to pick predict (e.g. auto: a candidate for the bundled "
                    "picker scored with the bundled picker's default)")  # fmt: skip
    args = ap.parse_args()
    scales = ["--diameter-scales", args.diameter_scales] if args.diameter_scales else []
    if not MIC.exists():
        sys.exit(f"{MIC} is absent")
    mask, _ = read_image(MASK)
    masks = args.out / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    write_mrc(masks / f"{MIC.stem}.mrc", (mask > 0.5).astype(np.float32), PIXEL, inputs=[MASK])
    tag = Path(args.model).name
    res = {"mask_area": round(float((mask > 0.5).mean()), 3)}
    for name, extra in (("none", []), ("curation", ["--exclude-by-curation", "bundled"]),
                        ("mask", ["--exclude-masks", str(masks)])):  # fmt: skip
        out = args.out / f"{tag}_{name}"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "draco_em", "pick", "predict", str(MIC), "-o",
                        str(out), "--model", args.model, "--pixel-size", str(PIXEL),
                        "--diameter", str(DIAMETER), "-q", *scales, *extra],
                       check=True)  # fmt: skip
        res[name] = on_mask(out / "coordinates", mask)
    print(tag, json.dumps(res))
    (args.out / f"{tag}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
