"""One diameter multiplier per data set, chosen from the picker's confidence (issue 18, session 7).

Applies the rule written in docs/benchmarks.md ("Issue 18, session 7") with the criterion of
:mod:`draco_em.pick.autoscale` (what ``draco pick predict --diameter-scales auto`` runs):

* default: the validation study. The 22 raw + 22 rendered validation micrographs of
  ``benchmarks/pick_recipe.py`` (held-out structures); a data set = one structure in one kind
  (8 data sets); the picker given f × max_dim for f in ``--factors``; F1 at the stored
  threshold within a quarter of the true max_dim, pooled per condition; A0 (the given diameter)
  against AS (the multiplier chosen per data set on its first 8 micrographs by name)::

      OMP_NUM_THREADS=2 python benchmarks/pick_autoscale.py --data /work/h18/data \\
          --json /work/h18/autoscale_val.json

* ``--dev``: the development study the rule's parameters came from: 42 of the picker's own
  training micrographs (7 drawn with numpy seed 1 from each of ``train{2,4,7}`` and
  ``train{2,4,7}_r``), the multiplier chosen per micrograph (``--margin`` and ``--grid`` to
  compare the settings the rule lists).
* ``--test``: after the decision, the test rows on ``ribo_junk_101/102`` and the cryoJAX sets at
  their benchmark diameters (F1 at the stored threshold and the best, within d/2; the chosen
  multiplier). EMPIAR-10017 runs through the CLI: ``benchmarks/pick_real.py --methods draco
  --diameter-scales auto``.

Every variant uses two test-time views (``draco pick predict``'s default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_recipe import VAL_RAW, VAL_RENDER, diameters
from pick_scales import TEST_SETS, micrographs

from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick, match_picks, summarize
from draco_em.io.coords import read_coords, write_relion_coords
from draco_em.io.mrc import read_image
from draco_em.pick.autoscale import (
    AUTO_MARGIN,
    AUTO_MICROGRAPHS,
    AUTO_SCALES,
    choose_multiplier,
    choose_scale,
    micrograph_criteria,
)
from draco_em.pick.config import DEFAULT_TTA, SCORE_FLOOR
from draco_em.pick.model_io import read_picker
from draco_em.pick.predict import Picker

DEV_SETS = ["train2", "train4", "train7", "train2_r", "train4_r", "train7_r"]


class Cache:
    """Candidates (xy [N, 2] input px, scores [N]) of each micrograph at each diameter (Å)."""

    def __init__(self, detector) -> None:
        self.detector, self.store, self.images, self.px = detector, {}, {}, {}

    def picks(self, mic: Path, diameter: float) -> tuple[np.ndarray, np.ndarray]:
        key = (mic, round(diameter, 4))
        if key not in self.store:
            if mic not in self.images:
                image, px = read_image(mic)
                self.images = {mic: (image.astype(np.float32), float(px))}  # one held at a time
                self.px[mic] = float(px)
            image, px = self.images[mic]
            p = Picker(self.detector, diameter, tta=DEFAULT_TTA).pick_image(
                image, px, mic.stem, threshold=SCORE_FLOOR
            )
            self.store[key] = (p[["x", "y"]].to_numpy(float), p["score"].to_numpy(float))
        return self.store[key]


def f1_pooled(cache: Cache, items: list, multipliers: list[float], f: float, thr: float) -> dict:
    """Pooled F1 at ``thr`` of ``items`` (mic, star, true d), each picked at m × f × d."""
    tps, scs, n = [], [], 0
    for (mic, star, d), m in zip(items, multipliers, strict=True):
        xy, sc = cache.picks(mic, m * f * d)
        keep = sc >= thr
        truth = read_coords(star)[["x", "y"]].to_numpy(float)
        tps.append(match_picks(xy[keep], sc[keep], truth, 0.25 * d / cache.px[mic]))
        scs.append(sc[keep])
        n += len(truth)
    r = summarize(np.concatenate(tps), np.concatenate(scs), n)
    return {k: r[k] for k in ("precision", "recall", "f1", "n_pred", "n_true")}


def choose(cache: Cache, items: list, f: float, thr: float, grid, margin: float) -> float:
    """The multiplier of one data set (``items`` sorted by name: the first 8 are read)."""
    per = []
    for mic, _star, d in sorted(items, key=lambda it: it[0].name)[:AUTO_MICROGRAPHS]:
        per.append(micrograph_criteria({m: cache.picks(mic, m * f * d)[1] for m in grid}, thr))
    return choose_multiplier(per, margin)[0]


def study(cache: Cache, groups: dict, factors, thr: float, grid, margin: float) -> dict:
    """A0 and AS per (f, kind); ``groups``: kind → list of data sets (lists of items)."""
    res: dict = {"A0": {}, "AS": {}, "chosen": {}}
    for f in factors:
        for kind, sets in groups.items():
            items = [it for s in sets for it in s]
            cond = f"f{f:g}_{kind}"
            res["A0"][cond] = f1_pooled(cache, items, [1.0] * len(items), f, thr)
            chosen = [choose(cache, s, f, thr, grid, margin) for s in sets]
            mults = [m for s, m in zip(sets, chosen, strict=True) for _ in s]
            res["AS"][cond] = f1_pooled(cache, items, mults, f, thr)
            res["chosen"][cond] = chosen
            a0, a_s = res["A0"][cond]["f1"], res["AS"][cond]["f1"]
            print(cond, "A0", round(a0, 3), "AS", round(a_s, 3), "chosen", chosen, flush=True)
    for v in ("A0", "AS"):
        f1s = [r["f1"] for r in res[v].values()]
        res[f"{v}_score"] = float(np.mean(f1s))
        res[f"{v}_at_1"] = float(np.mean([res[v][f"f1_{k}"]["f1"] for k in groups]))
        print(f"{v} score {res[f'{v}_score']:.3f}  at f=1: {res[f'{v}_at_1']:.3f}")
    return res


def validation_groups(data: Path) -> dict:
    """kind → data sets: the validation micrographs of one structure (true max_dim) each."""
    out = {}
    for kind, names in (("raw", VAL_RAW), ("render", VAL_RENDER)):
        by = defaultdict(list)
        for item in micrographs(data, names):
            by[round(item[2], 1)].append(item)
        out[kind] = [by[d] for d in sorted(by)]
    return out


def dev_groups(data: Path) -> dict:
    """kind → one-micrograph data sets: 7 micrographs of each training set (numpy seed 1)."""
    rng = np.random.default_rng(1)
    out: dict = {"raw": [], "render": []}
    for name in DEV_SETS:
        folder = data / name
        d = diameters(folder)
        for stem in rng.choice(sorted(d), 7, replace=False):
            item = (folder / "micrographs" / f"{stem}.mrc", folder / "coordinates" / f"{stem}.star",
                    d[stem])  # fmt: skip
            out["render" if name.endswith("_r") else "raw"].append([item])
    return out


def test_rows(model: str, out: Path) -> dict:
    """The test sets: the multiplier chosen per set, F1 at the stored threshold (and best)."""
    detector, info = read_picker(model)
    detector.eval()
    thr, res = float(info["threshold"]), {}
    for name, (folder, d, px) in TEST_SETS.items():
        mics = sorted(m for m in (folder / "micrographs").glob("*.mrc")
                      if not m.stem.endswith(("_EVN", "_ODD")))  # fmt: skip
        picker = Picker(detector, d, threshold=thr, tta=DEFAULT_TTA)
        t0 = time.perf_counter()
        choice = choose_scale(
            picker, ((read_image(m)[0], px, m.stem) for m in mics[:AUTO_MICROGRAPHS]), SCORE_FLOOR
        )
        seconds = time.perf_counter() - t0
        picker.scales = (choice.multiplier,)
        dst = out / f"{name}_AS"
        dst.mkdir(parents=True, exist_ok=True)
        for mic in mics:
            picks = picker.pick_image(read_image(mic)[0], px, mic.stem, threshold=0.02)
            write_relion_coords(dst / f"{mic.stem}.star", picks)
        cfg = EvaluatePickConfig(pred=dst, truth=folder / "coordinates", diameter_px=d / px)
        stored = evaluate_pick(cfg.model_copy(update={"threshold": thr}))
        res[name] = {"f1": stored["f1"], "best_f1": evaluate_pick(cfg)["best_f1"],
                     "choice": choice.to_json(), "choice_seconds": round(seconds, 1)}  # fmt: skip
        print(name, json.dumps(res[name]), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.2, 1.4])
    ap.add_argument("--grid", type=float, nargs="+", default=list(AUTO_SCALES))
    ap.add_argument("--margin", type=float, default=AUTO_MARGIN)
    ap.add_argument("--dev", action="store_true", help="the development study (training mics)")
    ap.add_argument("--test", action="store_true", help="the test rows, after the decision")
    ap.add_argument("--out", type=Path, default=Path("/tmp/pick_autoscale_test"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if 1.0 not in args.grid:
        ap.error("--grid must contain 1.0 (the given diameter)")
    if args.test:
        res = test_rows(args.model, args.out)
    else:
        detector, info = read_picker(args.model)
        detector.eval()
        groups = dev_groups(args.data) if args.dev else validation_groups(args.data)
        res = study(Cache(detector), groups, args.factors, float(info["threshold"]),
                    tuple(args.grid), args.margin)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
