"""How well ``draco pick predict --exclude-by-curation`` finds contamination and carbon, pixel by
pixel, against the simulator's region truth (``draco simulate --region-masks``).

    python benchmarks/pick_data.py ribo 12 101 junk      # writes regions/ as well
    OMP_NUM_THREADS=2 python benchmarks/region_exclusion.py /tmp/pick_data/ribo_junk_101

``--real`` scores the one real micrograph instead (``../shared/data/micrograph_cleaner_em``,
~4 Å/px) against its MicrographCleaner mask > 0.5::

    OMP_NUM_THREADS=2 python benchmarks/region_exclusion.py --real
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mrcfile
import numpy as np
import torch

from draco_em.curate.head import load_curator
from draco_em.curate.mask import exclusion_classes, tile_probabilities, tiles_to_mask
from draco_em.curate.predict import curator_encoder
from draco_em.io.mrc import read_image
from draco_em.pick.evidence import ParticleEvidence

REAL = (
    Path(__file__).resolve().parents[2] / "shared/data/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"
)
REAL_PIXEL_SIZE = 4.0  # Å: 4x-binned K2 frame (README); the header's 1.0 is a placeholder


def cases(args: argparse.Namespace):
    """(image, pixel size Å, bool truth mask) of every micrograph to score."""
    if args.real:
        if not REAL.is_file():
            raise SystemExit(f"real micrograph {REAL} is absent")
        mask = REAL.with_name(REAL.stem + "_mask.mrc")
        yield read_image(REAL)[0], REAL_PIXEL_SIZE, mrcfile.read(mask) > 0.5
        return
    if args.data is None:
        raise SystemExit("give a simulated data folder or --real")
    files = sorted((args.data / "micrographs").glob("*.mrc"))
    for path in [f for f in files if not f.stem.endswith(("_EVN", "_ODD"))]:
        image, px = read_image(path)
        yield image, px, mrcfile.read(args.data / "regions" / path.name) > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "data", type=Path, nargs="?", help="a draco simulate folder made with --region-masks"
    )
    ap.add_argument("--real", action="store_true", help="the real micrograph and its mask")
    ap.add_argument("--model", default="bundled", help="curation model (bundled or RUNDIR)")
    ap.add_argument("--classes", default=None, help="default: the model's contamination/carbon")
    ap.add_argument("--thresholds", default="0.5,0.95")
    args = ap.parse_args()
    curator = load_curator(args.model)
    encoder = curator_encoder(curator, None, torch.device("cpu"))
    chosen = exclusion_classes(curator, args.classes.split(",") if args.classes else None)
    bad = [curator.tile_classes.index(c) for c in chosen]
    print(f"tile classes {curator.tile_classes}; excluded {chosen}")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    counts = {t: np.zeros(3) for t in thresholds}  # flagged ∩ truth, flagged, truth
    shares = []
    for image, px, truth in cases(args):
        shares.append(truth.mean())
        probs, grid = tile_probabilities(curator, encoder, image, px, ParticleEvidence())
        p_bad = probs[:, bad].sum(1)
        for t in thresholds:
            flagged = tiles_to_mask(grid, p_bad >= t, image.shape)
            counts[t] += [(flagged & truth).sum(), flagged.sum(), truth.sum()]
    n_px = len(shares) * image.size
    print(f"{len(shares)} micrographs; truth (contamination or carbon): {np.mean(shares):.3f}")
    for t, (both, flagged, truth) in counts.items():
        print(f"--exclude-threshold {t}: flagged {flagged / n_px:.3f} of the pixels, precision "
              f"{both / max(flagged, 1):.3f}, recall {both / max(truth, 1):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
