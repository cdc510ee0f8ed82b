"""Recipe for the bundled curation head ``src/draco_em/weights/curate_head.safetensors``.

1. simulate labelled micrographs with the built-in phantoms (no ribosome: 4V5D and the 70S map
   are held out for evaluation), half of them bad with one of the simulator's six reasons;
2. ``draco curate train`` on them with the bundled DRACO encoder (``--weights bundled``);
   with ``--regions`` also the per-tile region head from the simulator's region masks (not in
   the shipped head: it did not transfer to the picking benchmark, docs/curation.md);
3. copy the run's ``curator.safetensors`` into the package.

Re-run it whenever the bundled encoder ``draco_tiny.safetensors`` changes: a head is only valid
for the encoder it was trained on (``draco curate predict`` warns when the digests differ).

The data: 300 micrographs of 1024² at 2 Å/px (a 2048 Å field, the encoder's working pixel size,
so no rescaling), half of them bad, 40 e⁻/Å². Simulating them takes ~7 min on 2 cores, the
features ~3 min, the head seconds.

Example (the bundled head):
    OMP_NUM_THREADS=2 python benchmarks/train_bundled_curator.py --data /work/cur2/train
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "src" / "draco_em" / "weights" / "curate_head.safetensors"


def draco(*args: str) -> None:
    """Run the ``draco`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "draco"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "draco_em"]
    print("+ draco", " ".join(args), flush=True)
    subprocess.run([*cmd, *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/curate_data/train"))
    ap.add_argument("--n-micrographs", type=int, default=300)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--pixel-size", type=float, default=2.0)
    ap.add_argument("--bad-fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--weights", default="bundled", help="encoder (default: the bundled one)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--regions", action="store_true", help="also train the region head")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--run", type=Path, default=Path("/tmp/curate_data/runs/bundled"))
    ap.add_argument("--dest", type=Path, default=DEST)
    args = ap.parse_args()
    # draco simulate resumes, so an existing set is reused as it is.
    draco(
        "simulate",
        str(args.data),
        "--preset",
        "classic",
        "--n-micrographs",
        str(args.n_micrographs),
        "--size",
        str(args.size),
        "--pixel-size",
        str(args.pixel_size),
        "--bad-fraction",
        str(args.bad_fraction),
        "--seed",
        str(args.seed),
        "--no-movies",
        *(["--region-masks"] if args.regions else []),
        "-j",
        str(args.jobs),
        "-q",
    )
    draco(
        "curate",
        "train",
        "--labels",
        str(args.data / "micrographs.star"),
        "-o",
        str(args.run),
        "--weights",
        args.weights,
        "--epochs",
        str(args.epochs),
        "--tile",
        str(args.tile),
        *(["--regions"] if args.regions else []),
        "-q",
    )
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "curator.safetensors", args.dest)
    print(f"bundled head written to {args.dest} ({args.dest.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
