"""What real micrographs look like to a curation head: their nearest training micrographs.

Issue 19, session 6, step 2: every EMPIAR-10017 micrograph (all good) is rejected as
``crystalline_ice`` by the heads trained with the simulator's nanocrystalline ice. For each
real micrograph, the ``--k`` nearest training micrographs in the head's feature space (the
vector the head reads, standardised over the training set; Euclidean), their labels and sets,
and the nearest and median distances::

    python benchmarks/curate_neighbours.py \\
        --head /work/cur19/runs/curator_s6cboth_l2_0.001.safetensors \\
        --train /work/cur19/train_s6cboth.csv --cache /work/cur19/runs/shared/features

Features come from :func:`draco_em.curate.features.micrograph_features` (cached in ``--cache``,
the recipe's cache, so training micrographs cost nothing there).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.features import micrograph_features, micrograph_vector
from draco_em.curate.head import load_curator
from draco_em.io.labels import read_labels
from draco_em.model.encoder import load_encoder
from draco_em.pick.evidence import ParticleEvidence

EMPIAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "empiar10017" / "micrographs"


def _set_name(path: Path) -> str:
    """The set a training micrograph belongs to: SET/micrographs/X.mrc or RENDERSET/X.mrc."""
    return path.parent.parent.name if path.parent.name == "micrographs" else path.parent.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", type=Path, required=True, help="curation head (.safetensors)")
    ap.add_argument("--train", type=Path, required=True, help="its training labels (CSV/STAR)")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--real", type=Path, default=EMPIAR, help="real micrographs (JPEG/PNG/MRC)")
    ap.add_argument("--pixel-size", type=float, default=1.77, help="of the real micrographs")
    ap.add_argument("--k", type=int, default=7)
    args = ap.parse_args()
    if not args.real.is_dir():
        raise SystemExit(f"real micrographs not found at {args.real}")
    head = load_curator(args.head)
    encoder = load_encoder(head.encoder, torch.device("cpu"), head.features.pixel_size)

    @torch.no_grad()
    def vector(path: Path, px: float | None) -> np.ndarray:
        tiles, spec, _ = micrograph_features(
            encoder, head.features, path, px, args.cache, evidence=ParticleEvidence()
        )
        return micrograph_vector(torch.from_numpy(tiles).float(), spec, head.features).numpy()

    train = read_labels(args.train)
    x = np.stack([vector(p, px) for p, px in zip(train.paths, train.pixel_sizes, strict=True)])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    total: Counter[str] = Counter()
    for path in sorted(f for f in args.real.iterdir() if f.is_file()):
        d = np.linalg.norm(z - (vector(path, args.pixel_size) - mu) / sd, axis=1)
        near = np.argsort(d)[: args.k]
        total.update(train.labels[i] for i in near)
        names = [f"{train.labels[i]}:{_set_name(train.paths[i])}" for i in near]
        print(f"{path.stem}: nearest {d[near[0]]:.1f}, median {np.median(d):.1f}; {names}")
    print("labels of all neighbours:", dict(total))


if __name__ == "__main__":
    main()
