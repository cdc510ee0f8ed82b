"""Which feature blocks should ``draco curate train`` read by default? Measured on SIMULATED sets.

Issue 19, session 3: the head can read the encoder's pooled tokens, the whole-image statistics
(:mod:`draco_em.curate.stats`) or both (``--features encoder|stats|both``). The default is
chosen here, on labelled simulated sets only (real micrographs are test sets), in the two
regimes users train in:

* few labels: ``--repeats`` random draws of ``--per-class`` micrographs of each of
  ``--n-classes`` classes (good + reject reasons), each scored by leave-one-out;
* many labels: stratified 5-fold cross-validation on the whole set.

Both use the library's cross-validation (``curate.train.cross_validate``, what ``draco curate
train --cv`` reports) on vectors computed once per micrograph (``micrograph_features`` with
``blocks=both``, cached; the ``encoder`` and ``stats`` vectors are its column slices).

Example (features cached by earlier runs under --cache):
    OMP_NUM_THREADS=1 python benchmarks/curate_blocks.py --labels /work/cur19/train_h19b.csv \\
        --cache /work/cur19/runs/shared/features --json /work/cur19/blocks.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.config import CurateTrainConfig, FeatureConfig
from draco_em.curate.features import micrograph_features, micrograph_vector
from draco_em.curate.stats import N_STATS
from draco_em.curate.train import cross_validate
from draco_em.io.classes import GOOD
from draco_em.io.labels import read_labels
from draco_em.model.encoder import load_encoder
from draco_em.pick.evidence import ParticleEvidence


def vectors(labels: Path, cache: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Per-block head inputs ``{block: [N, F]}``, labels ``[N]`` (class indices), classes."""
    cfg = FeatureConfig(blocks="both")
    encoder = load_encoder("bundled", torch.device("cpu"), cfg.pixel_size)
    ls = read_labels(labels)
    rows = []
    for i, (p, px) in enumerate(zip(ls.paths, ls.pixel_sizes, strict=True)):
        tiles, extra, _ = micrograph_features(
            encoder, cfg, p, px, cache, evidence=ParticleEvidence()
        )
        rows.append(micrograph_vector(torch.from_numpy(tiles).float(), extra, cfg).numpy())
        if i % 100 == 0:
            print(f"features {i}/{len(ls.paths)}", flush=True)
    both = np.stack(rows)
    e2 = both.shape[1] - N_STATS - 8
    blocks = {
        "encoder": np.concatenate([both[:, :e2], both[:, -8:]], axis=1),
        "stats": both[:, e2:],
        "both": both,
    }
    classes = [GOOD, *sorted({c for c in ls.labels if c != GOOD})]
    return blocks, np.array([classes.index(c) for c in ls.labels]), classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--labels", type=Path, required=True, help="labelled simulated set (CSV/STAR)")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--n-classes", type=int, default=6, help="good + this many - 1 reasons")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    blocks, y, classes = vectors(args.labels, args.cache)
    out: dict = {"classes": classes, "n": len(y)}
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = CurateTrainConfig(labels=Path("x.csv"), out_dir=Path(tmp))
        rng = np.random.default_rng(0)
        draws = []
        reasons = [c for c in range(1, len(classes)) if np.sum(y == c) >= args.per_class]
        for _ in range(args.repeats):
            chosen = [0, *rng.choice(reasons, args.n_classes - 1, replace=False)]
            idx = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), args.per_class, replace=False) for c in chosen]
            )
            draws.append(idx)
        for name, x in blocks.items():
            xt = torch.from_numpy(x).float()
            few = []
            for idx in draws:
                yy = np.searchsorted(np.unique(y[idx]), y[idx])  # 0 = good stays 0
                sub = [classes[c] for c in np.unique(y[idx])]
                r = cross_validate(xt[idx], yy, sub, [0], tcfg, len(idx), ["-"] * len(idx))
                few.append(r["balanced_accuracy"])
            full = cross_validate(xt, y, classes, [0], tcfg, 5, ["-"] * len(y))
            out[name] = {
                "few_shot_loo_mean": float(np.mean(few)),
                "few_shot_loo_sd": float(np.std(few)),
                "five_fold": full["balanced_accuracy"],
                "five_fold_class": full["class_balanced_accuracy"],
            }
            print(name, json.dumps(out[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
