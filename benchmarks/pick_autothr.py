"""A per-micrograph threshold for the bundled picker (issue 18, session 5): the rule's study.

Applies the rule written in docs/benchmarks.md ("Issue 18, session 5") on the simulated
validation micrographs of ``benchmarks/pick_recipe.py`` (held-out structures, raw and rendered):
the picker given ``f × max_dim`` for f in 1.0, 1.2, 1.4, plus the raw micrographs with white
noise of their own standard deviation added (f = 1.0). Candidates ≥ 0.05 are picked once per
condition (:meth:`Picker.pick_image`, what ``draco pick predict`` runs) and each threshold
variant is applied to them:

* T0: the stored threshold; M1: Otsu per micrograph (:func:`otsu_threshold`: the scores
  themselves, 64 bins on [0.05, 1]; session 3's ``pick_threshold.py`` split logit scores);
  M2: min(stored, M1); M3 (diagnostic): Otsu over the condition's micrographs pooled.

    OMP_NUM_THREADS=2 python benchmarks/pick_autothr.py --data /work/h18/data --model bundled \\
        --json /work/h18/autothr.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_recipe import VAL_RAW, VAL_RENDER
from pick_scales import micrographs
from pick_threshold import otsu_split

from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.coords import read_coords
from draco_em.io.mrc import read_image
from draco_em.pick.model_io import read_picker
from draco_em.pick.predict import Picker

FLOOR = 0.05
VARIANTS = ("T0", "M1", "M2", "M3")


def otsu_threshold(scores: np.ndarray, min_count: int = 10) -> float | None:
    """Otsu's cut-off of candidate scores ≥ FLOOR (None with fewer than ``min_count``)."""
    s = scores[scores >= FLOOR]
    return None if len(s) < min_count else otsu_split(s, 64, (FLOOR, 1.0))


def cut_offs(scores: list[np.ndarray], stored: float) -> dict[str, list[float]]:
    """Each variant's cut-off for each micrograph of one condition."""
    m1 = [otsu_threshold(s) for s in scores]
    m1 = [stored if t is None else t for t in m1]
    pooled = otsu_threshold(np.concatenate(scores))
    return {
        "T0": [stored] * len(scores),
        "M1": m1,
        "M2": [min(stored, t) for t in m1],
        "M3": [stored if pooled is None else pooled] * len(scores),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    detector, info = read_picker(args.model)
    detector.eval()
    stored = float(info["threshold"])
    groups = {"raw": micrographs(args.data, VAL_RAW), "render": micrographs(args.data, VAL_RENDER)}
    conditions = [(f, g, False) for f in (1.0, 1.2, 1.4) for g in groups] + [(1.0, "raw", True)]
    res: dict = {"stored": stored}
    for f, group, noisy in conditions:
        name = f"f{f:g}_{group}" + ("_noise" if noisy else "")
        rng = np.random.default_rng(0)
        tps, scs, truths = [], [], []
        for mic, star, d in groups[group]:
            image, px = read_image(mic)
            image = image.astype(np.float32)
            if noisy:
                image = image + rng.normal(0, image.std(), image.shape).astype(np.float32)
            picks = Picker(detector, f * d, threshold=FLOOR).pick_image(image, float(px), mic.stem)
            xy, sc = picks[["x", "y"]].to_numpy(float), picks["score"].to_numpy(float)
            truth = read_coords(star)[["x", "y"]].to_numpy(float)
            tps.append(match_picks(xy, sc, truth, 0.25 * d / float(px)))
            scs.append(sc)
            truths.append(len(truth))
        cuts = cut_offs(scs, stored)
        row = {}
        for v in VARIANTS:
            keep = [s >= c for s, c in zip(scs, cuts[v], strict=True)]
            r = summarize(
                np.concatenate([t[k] for t, k in zip(tps, keep, strict=True)]),
                np.concatenate([s[k] for s, k in zip(scs, keep, strict=True)]),
                sum(truths),
            )
            row[v] = {k: r[k] for k in ("precision", "recall", "f1", "n_pred", "n_true")}
            row[v]["median_cut"] = float(np.median(cuts[v]))
        res[name] = row
        print(name, {v: (round(row[v]["f1"], 3), round(row[v]["median_cut"], 3))
                     for v in VARIANTS}, flush=True)  # fmt: skip
    names = [c for c in res if c != "stored"]
    for v in VARIANTS:
        f1s = [res[c][v]["f1"] for c in names]
        at1 = np.mean([res[f"f1_{g}"][v]["f1"] for g in groups])
        res[f"{v}_score"], res[f"{v}_at_1"] = float(np.mean(f1s)), float(at1)
        print(f"{v} score {np.mean(f1s):.3f}  at f=1: {at1:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
