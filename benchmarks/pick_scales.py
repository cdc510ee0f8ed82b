"""The picker's diameter as a range (issue 18, session 4, step 2): validation of the scale sets.

``draco pick predict`` runs the picker at one working pixel size, set by the diameter the user
gives. The bundled picker learnt "diameter" as a structure's maximum dimension, and users quote
box sizes. :attr:`draco_em.pick.predict.Picker.scales` tries several multiples of the given
diameter and keeps one pick per particle. This script applies the rule written in
docs/benchmarks.md ("Step 2 of session 4") on the simulated validation micrographs of
``benchmarks/pick_recipe.py`` (held-out structures, raw and rendered), with the picker given
``f × max_dim`` for each f of ``--factors``, matched within a quarter of the true ``max_dim``:

    OMP_NUM_THREADS=2 python benchmarks/pick_scales.py --data /work/h18/data --model bundled

Each scale set runs :meth:`Picker.pick_image` (what ``draco pick predict --diameter-scales``
runs) on the same inputs.

``--neighbours 150 170 191 215 240``: the EMPIAR-10017 experts' nearest-neighbour distances
(how much of the diameter sensitivity distance NMS could explain).

``--variants T2 T4 T8 V1``: session 6's test-time augmentation (the score map averaged over
2, 4 or 8 flips/transposes, ``Picker.tta``), validated by the same harness.

``--test``: after the rule's decision, the table's test rows for the variants (V1 and V2
then: ``ribo_junk_101/102`` and the cryoJAX sets at their benchmark diameters;
EMPIAR-10017 through the CLI with ``benchmarks/pick_real.py --methods draco --threshold 0.05
--diameter-scales 1,0.85``)::

    OMP_NUM_THREADS=2 python benchmarks/pick_scales.py --test --variants V1 V2 \\
        --out /work/h18/scales_test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_recipe import VAL_RAW, VAL_RENDER, diameters

from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick, match_picks, summarize
from draco_em.io.coords import read_coords, write_relion_coords
from draco_em.io.mrc import read_image
from draco_em.pick.model_io import read_picker
from draco_em.pick.predict import Picker

#: name → (diameter scales, test-time views ``Picker.tta``). V*: session 4's scale sets; T*:
#: session 6's test-time augmentation (the flips/transposes of ``pick.predict.TTA_TRANSFORMS``).
VARIANTS = {
    "V1": ((1.0,), 1),
    "V2": ((1.0, 0.85), 1),
    "V3": ((1.0, 0.85, 0.7), 1),
    "T2": ((1.0,), 2),
    "T4": ((1.0,), 4),
    "T8": ((1.0,), 8),
}


def micrographs(data: Path, names: list[str]) -> list[tuple[Path, Path, float]]:
    """(micrograph, its coordinate STAR, true diameter Å) of the named validation sets."""
    out = []
    for name in names:
        folder = data / name
        for stem, d in sorted(diameters(folder).items()):
            mic, star = (
                folder / "micrographs" / f"{stem}.mrc",
                folder / "coordinates" / f"{stem}.star",
            )
            out.append((mic, star, d))
    return out


#: (set folder, diameter Å, pixel size Å) of the test sets, as in benchmarks/pick.py.
TEST_SETS = {
    "ribo_junk_101": (Path("/tmp/pick_data/ribo_junk_101"), 260.0, 2.0),
    "ribo_junk_102": (Path("/tmp/pick_data/ribo_junk_102"), 260.0, 2.0),
    "ribo70s_2A": (Path("/work/indep_sets/ribo70s_2A"), 260.0, 2.0),
    "apof_1p5A": (Path("/work/indep_sets/apof_1p5A"), 130.0, 1.5),
}


def test_rows(model: str, out: Path, variants: list[str]) -> dict:
    """F1 at the stored threshold (and the best) of the variants on the test sets, within d/2."""
    detector, info = read_picker(model)
    detector.eval()
    thr, res = float(info["threshold"]), {}
    for v in variants:
        for name, (folder, d, px) in TEST_SETS.items():
            scales, tta = VARIANTS[v]
            picker = Picker(detector, d, threshold=0.02, scales=scales, tta=tta)
            dst = out / f"{name}_{v}"
            dst.mkdir(parents=True, exist_ok=True)
            for mic in sorted((folder / "micrographs").glob("*.mrc")):
                if not mic.stem.endswith(("_EVN", "_ODD")):
                    picks = picker.pick_image(read_image(mic)[0], px, mic.stem)
                    write_relion_coords(dst / f"{mic.stem}.star", picks)
            cfg = EvaluatePickConfig(pred=dst, truth=folder / "coordinates", diameter_px=d / px)
            stored = evaluate_pick(cfg.model_copy(update={"threshold": thr}))
            res[f"{name}_{v}"] = {"f1": stored["f1"], "best_f1": evaluate_pick(cfg)["best_f1"]}
            print(v, name, json.dumps(res[f"{name}_{v}"]), flush=True)
    return res


def nearest_neighbours(diameters_a: list[float]) -> None:
    """Print the EMPIAR-10017 experts' nearest-neighbour distances and the share under d/2."""
    from pick_real import EMPIAR, PIXEL
    from scipy.spatial import cKDTree

    nn = []
    for star in sorted((EMPIAR / "coordinates").glob("*.star")):
        xy = read_coords(star)[["x", "y"]].to_numpy(float)
        nn.append(cKDTree(xy).query(xy, k=2)[0][:, 1] * PIXEL)
    d = np.concatenate(nn)
    print(f"{len(d)} picks; nearest neighbour (Å) 5/10/25/50 %: "
          f"{np.percentile(d, [5, 10, 25, 50]).round(0)}")  # fmt: skip
    for dia in diameters_a:
        print(f"diameter {dia:g} Å: share closer than d/2 {np.mean(d < dia / 2):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.2, 1.4])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--test", action="store_true", help="the test rows of the variants (above)")
    ap.add_argument(
        "--variants", nargs="+", default=["V1", "V2", "V3"], choices=list(VARIANTS),
        help="which variants (default: session 4's scale sets; --test: give V1 V2 for its rows)",
    )  # fmt: skip
    ap.add_argument(
        "--neighbours", type=float, nargs="*", default=None,
        help="EMPIAR-10017 expert picks only: the share whose nearest neighbour is closer than "
        "half of each of these diameters (Å; what distance NMS would merge), and exit",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("/tmp/pick_scales_test"))
    args = ap.parse_args()
    if args.neighbours is not None:
        nearest_neighbours(args.neighbours)
        return
    if args.test:
        res = test_rows(args.model, args.out, args.variants)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
        return
    detector, info = read_picker(args.model)
    detector.eval()
    thr = float(info["threshold"])
    groups = {"raw": micrographs(args.data, VAL_RAW), "render": micrographs(args.data, VAL_RENDER)}
    res: dict = {"threshold": thr, "factors": args.factors}
    variants = {v: VARIANTS[v] for v in args.variants}
    seconds = dict.fromkeys(variants, 0.0)
    for f in args.factors:
        for group, items in groups.items():
            acc = {v: ([], [], 0) for v in variants}
            for mic, star, d in items:
                image, px = read_image(mic)
                truth = read_coords(star)[["x", "y"]].to_numpy(float)
                for v, (scales, tta) in variants.items():
                    picker = Picker(detector, f * d, threshold=thr, scales=scales, tta=tta)
                    t0 = time.perf_counter()
                    picks = picker.pick_image(image, float(px), mic.stem)
                    seconds[v] += time.perf_counter() - t0
                    xy, sc = picks[["x", "y"]].to_numpy(float), picks["score"].to_numpy(float)
                    tps, scs, n = acc[v]
                    tps.append(match_picks(xy, sc, truth, 0.25 * d / float(px)))
                    scs.append(sc)
                    acc[v] = (tps, scs, n + len(truth))
            for v, (tps, scs, n) in acc.items():
                r = summarize(np.concatenate(tps), np.concatenate(scs), n)
                res.setdefault(v, {})[f"f{f:g}_{group}"] = {
                    k: r[k] for k in ("precision", "recall", "f1", "n_pred", "n_true")
                }
            print(f, group, {v: round(res[v][f"f{f:g}_{group}"]["f1"], 3) for v in variants},
                  flush=True)  # fmt: skip
    for v in variants:
        f1s = [x["f1"] for x in res[v].values() if isinstance(x, dict)]
        res[v]["score"] = float(np.mean(f1s))
        res[v]["f1_at_1"] = float(np.mean([res[v][f"f1_{g}"]["f1"] for g in groups]))
        res[v]["seconds"] = round(seconds[v], 1)
        print(f"{v} score {res[v]['score']:.3f}  at f=1: {res[v]['f1_at_1']:.3f}  "
              f"({seconds[v]:.0f} s)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
