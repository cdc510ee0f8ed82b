"""The few-shot curation decision rule, chosen on simulated MicAssess-like tasks (issue 19).

The rule and its candidates are in docs/benchmarks.md ("Session 4, step 2: the few-shot
decision rule"). Each task draws, from labelled simulations (a ``micrograph,label`` CSV of
``draco simulate`` output; no real micrograph), 6 ``good`` and 3 each of ``contamination``
(the simulator's contamination or drift), ``no_ice``, ``crystalline_ice`` and ``no_particles``
(the simulator's ``empty``), runs ``draco curate train --cv loo`` on them as a user would, and
applies both decisions to the same out-of-fold predictions (``cv_predictions.csv``):

* D1: accept iff p(good) ≥ 0.5 (the ``decision`` column);
* D2: accept iff ``good`` is the most probable class (the ``predicted`` column; with one
  accept class this is "p(accept) ≥ the largest reject-class probability").

    OMP_NUM_THREADS=2 python benchmarks/curate_fewshot_rule.py --pool /work/cur19/pool7.csv \\
        --work /work/cur19/fewshot_rule --draws 30
    # session 8: the L2 penalty chosen by inner cross-validation (D1 is the score there)
    ... --features stats --l2 auto
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.curate.train import _balanced

#: Simulator reason → MicAssess-like class of the task (None: not a MicAssess class).
TASK_CLASS = {"good": "good", "contamination": "contamination", "drift": "contamination",
              "no_ice": "no_ice", "crystalline_ice": "crystalline_ice", "empty": "no_particles",
              "thick_ice": None, "carbon_only": None}  # fmt: skip
PER_CLASS = {"good": 6, "contamination": 3, "no_ice": 3, "crystalline_ice": 3, "no_particles": 3}


def draw(pool: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One task: PER_CLASS micrographs of each class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    parts = []
    for cls, n in PER_CLASS.items():
        rows = pool[pool["task"] == cls]
        parts.append(rows.iloc[rng.choice(len(rows), n, replace=False)])
    task = pd.concat(parts)
    return pd.DataFrame({"micrograph": task["micrograph"], "label": task["task"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, required=True, help="micrograph,label CSV")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--features", nargs="+", default=["stats", "encoder"])
    ap.add_argument("--pixel-size", type=float, default=7.0)
    ap.add_argument("--l2", default=None,
                    help="draco curate train --l2 (e.g. auto; session 8's rule); runs then go "
                    "to run_<features>_l2<value>")  # fmt: skip
    args = ap.parse_args()
    pool = pd.read_csv(args.pool)
    pool["task"] = pool["label"].map(TASK_CLASS)
    pool = pool.dropna(subset=["task"])
    draco = Path(sys.executable).parent / "draco"
    rows = []
    for seed in range(args.draws):
        task_dir = args.work / f"task_{seed:02d}"
        task_dir.mkdir(parents=True, exist_ok=True)
        labels = task_dir / "labels.csv"
        draw(pool, seed).to_csv(labels, index=False)
        for feats in args.features:
            run = task_dir / (f"run_{feats}" + (f"_l2{args.l2}" if args.l2 else ""))
            table = run / "cv_predictions.csv"
            if not table.is_file():
                subprocess.run([str(draco), "curate", "train", "--labels", str(labels), "-o",
                                str(run), "--accept", "good", "--pixel-size",
                                str(args.pixel_size), "--features", feats, "--cv", "loo", "-q",
                                *(["--l2", args.l2] if args.l2 else [])],
                               check=True, capture_output=True)  # fmt: skip
            cv = pd.read_csv(table)
            good = (cv["label"] == "good").to_numpy()
            d1 = (cv["decision"] == "accept").to_numpy()
            d2 = (cv["predicted"] == "good").to_numpy()
            rows.append({"seed": seed, "features": feats, "D1": _balanced(good, d1),
                         "D2": _balanced(good, d2)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    summary = {
        "D1": float(df["D1"].mean()), "D2": float(df["D2"].mean()),
        "by_features": df.groupby("features")[["D1", "D2"]].mean().round(4).to_dict("index"),
        "D2_better_in": int((df["D2"] > df["D1"]).sum()),
        "D2_worse_in": int((df["D2"] < df["D1"]).sum()), "runs": len(df),
    }  # fmt: skip
    (args.work / f"summary{'_l2' + args.l2 if args.l2 else ''}.json").write_text(
        json.dumps(summary, indent=1)
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
