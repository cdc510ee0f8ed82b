"""Few-shot training variants on simulated tasks: the data-chosen multiple of the diameter
(issue 18, session 7, step 2: F0 / FA) and the refit on every labelled micrograph (session 8:
R1 / R2, one run ``R`` trained with ``--refit score``, R2 cut at its density-matched threshold).

Applies the rule written in docs/benchmarks.md ("Issue 18, session 7, step 2") on simulated
few-shot tasks: the 8 validation data sets of ``benchmarks/pick_autoscale.py`` (4 held-out
structures × raw / renderings), the picker given f × max_dim (``--factors``, default 1.0 1.4);
the first 3 micrographs of a data set (by name) carry 30 % of their particles as labels (at
least one per micrograph, numpy seed 0) and ``expected_particles`` = their true mean count;
``draco pick train --weights bundled`` (its defaults, seed 0) with or without ``auto_scale``
(F0 / FA); the other micrographs are picked as ``draco pick predict --model RUN`` does (the
run's diameter, two views, the stored threshold) and scored within a quarter of the true
max_dim, pooled per condition::

    OMP_NUM_THREADS=2 python benchmarks/pick_fewshot_scale.py --data /work/h18/data \\
        --work /work/h18/fewshot_scale --json /work/h18/fewshot_scale.json
    OMP_NUM_THREADS=2 python benchmarks/pick_fewshot_scale.py --variants F0 R1 R2 \\
        --json /work/h18/fewshot_refit.json
    OMP_NUM_THREADS=2 python benchmarks/pick_fewshot_scale.py --variants F0 S1 S5 K3 \\
        --json /work/h18/fewshot_committee.json     # session 9: the committee K3 of F0, S1, S5
    OMP_NUM_THREADS=2 python benchmarks/pick_fewshot_scale.py --variants T0 T1 \\
        --json /work/h18/fewshot_two.json   # session 13: 2 labelled micrographs, one held out?

Runs that finished are reused (``WORK/<task>/<variant>/picker.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_autoscale import validation_groups

from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.coords import make_coords, read_coords, write_relion_coords
from draco_em.io.mrc import read_image
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.model_io import RUN_FILE, load_picker, read_picker
from draco_em.pick.train import train_picker

N_TRAIN = 3  # labelled micrographs per task (one of them validates inside pick train)
LABEL_SHARE = 0.3  # share of their particles the "user" labels
#: Session 9's committee K3: the seed-0 run (F0) and runs with seeds 1 and 5 (with 3 labelled
#: micrographs, ``pick.training_data.split`` holds out the third, the first and the second).
SEEDS = {"F0": 0, "S1": 1, "S5": 5}
COMMITTEE = ("F0", "S1", "S5")


class Committee(torch.nn.Module):
    """Detectors of one configuration averaged: mean probability map and mean offsets, given
    back as logits so that :class:`~draco_em.pick.predict.Picker` runs it as one detector.
    Session 9's K3 (docs/benchmarks.md); not in the package: the rule's real-data veto failed."""

    def __init__(self, members: list) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(image) for m in self.members]
        prob = torch.stack([torch.sigmoid(lg) for lg, _ in outs]).mean(0)
        return torch.logit(prob.clamp(1e-6, 1 - 1e-6)), torch.stack([o for _, o in outs]).mean(0)


def make_labels(train: list, folder: Path) -> float:
    """Write the tasks's partial labels into ``folder``; returns the true mean count."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    counts = []
    for mic, star, _d in train:
        truth = read_coords(star)[["x", "y"]].to_numpy(float)
        counts.append(len(truth))
        n = max(1, round(LABEL_SHARE * len(truth)))
        keep = rng.choice(len(truth), min(n, len(truth)), replace=False)
        write_relion_coords(folder / f"{mic.stem}.star",
                            make_coords(mic.stem, truth[keep, 0], truth[keep, 1]))  # fmt: skip
    return float(np.mean(counts))


def run_task(work: Path, items: list, f: float, variant: str) -> dict:
    """Train one variant on the task's first micrographs, score it on the others.

    T0 / T1 (session 13, step 3): 2 labelled micrographs; T1 holds out the one ``split``'s
    seed-0 permutation puts first (``val_micrographs``), T0 holds none out (today)."""
    items = sorted(items, key=lambda it: it[0].name)
    two = variant in ("T0", "T1")
    n_train = 2 if two else N_TRAIN
    train, test = items[:n_train], items[n_train:]
    d = items[0][2]
    expected = make_labels(train, work / ("labels2" if two else "labels"))
    val = []
    if variant == "T1":
        val = [train[int(np.random.default_rng(0).permutation(2)[0])][0]]
    if variant == "K3":
        return committee_task(work, test, d, [run_task(work, items, f, v) for v in COMMITTEE])
    run = work / ("R" if variant in ("R1", "R2") else variant)
    t0 = time.time()
    if not (run / RUN_FILE).is_file():
        cfg = PickTrainConfig(micrographs=[m for m, _, _ in train],
                              coords=[work / ("labels2" if two else "labels")],
                              diameter=f * d, outdir=run, weights="bundled",
                              expected_particles=expected, auto_scale=variant == "FA",
                              refit="score" if run.name == "R" else "none",
                              seed=SEEDS.get(variant, 0), val_micrographs=val)  # fmt: skip
        train_picker(cfg)
    seconds = time.time() - t0
    picker = load_picker(run)  # the run's diameter and stored threshold
    picker.tta = 2  # pick predict's default views
    meta = read_picker(run)[1]
    threshold = meta["threshold"]
    if variant == "R2":  # the same refitted model, cut at its density-matched threshold
        threshold = meta["metadata"]["refit"]["density_threshold"]
    tps, scs, n = pick_and_match(picker, test, d, threshold)
    return {"tp": np.concatenate(tps).tolist(), "scores": np.concatenate(scs).tolist(), "n": n,
            "diameter": meta["diameter"], "threshold": threshold,
            "multiplier": meta["metadata"].get("auto_scale", {}).get("multiplier", 1.0),
            "train_seconds": round(seconds, 1)}  # fmt: skip


def pick_and_match(picker, test: list, d: float, threshold: float) -> tuple[list, list, int]:
    """Pick the task's test micrographs at ``threshold``: (match flags, scores, true count),
    matched within a quarter of the true diameter ``d``."""
    tps, scs, n = [], [], 0
    for mic, star, _ in test:
        image, px = read_image(mic)
        picks = picker.pick_image(image.astype(np.float32), float(px), mic.stem, threshold)
        xy, sc = picks[["x", "y"]].to_numpy(float), picks["score"].to_numpy(float)
        truth = read_coords(star)[["x", "y"]].to_numpy(float)
        tps.append(match_picks(xy, sc, truth, 0.25 * d / float(px)))
        scs.append(sc)
        n += len(truth)
    return tps, scs, n


def committee_task(work: Path, test: list, d: float, members: list[dict]) -> dict:
    """K3 on one task: the members' runs (already trained by ``run_task``) averaged."""
    pickers = [load_picker(work / v) for v in COMMITTEE]
    picker = pickers[0]
    picker.detector = Committee([p.detector for p in pickers]).eval()
    picker.tta = 2
    threshold = float(np.mean([m["threshold"] for m in members]))
    tps, scs, n = pick_and_match(picker, test, d, threshold)
    return {"tp": np.concatenate(tps).tolist(), "scores": np.concatenate(scs).tolist(), "n": n,
            "diameter": members[0]["diameter"], "threshold": threshold, "multiplier": 1.0,
            "train_seconds": round(sum(m["train_seconds"] for m in members), 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--work", type=Path, default=Path("/work/h18/fewshot_scale"))
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.4])
    ap.add_argument("--variants", nargs="+", default=["F0", "FA"],
                    choices=["F0", "FA", "R1", "R2", "S1", "S5", "K3", "T0", "T1"])  # fmt: skip
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    groups = validation_groups(args.data)
    res: dict = {v: {} for v in args.variants}
    res["tasks"] = {}
    for f in args.factors:
        for kind, sets in groups.items():
            cond = f"f{f:g}_{kind}"
            for v in args.variants:
                tps, scs, n = [], [], 0
                for items in sets:
                    task = f"{cond}_d{items[0][2]:g}"
                    r = run_task(args.work / task, items, f, v)
                    tps.append(np.array(r["tp"], bool))
                    scs.append(np.array(r["scores"]))
                    n += r["n"]
                    res["tasks"][f"{task}_{v}"] = {k: r[k] for k in (
                        "diameter", "threshold", "multiplier", "train_seconds", "n")}  # fmt: skip
                    print(task, v, res["tasks"][f"{task}_{v}"], flush=True)
                s = summarize(np.concatenate(tps), np.concatenate(scs), n)
                res[v][cond] = {k: s[k] for k in ("precision", "recall", "f1", "n_pred", "n_true")}
                print(cond, v, round(s["f1"], 3), flush=True)
    for v in args.variants:
        res[f"{v}_score"] = float(np.mean([r["f1"] for r in res[v].values()]))
        res[f"{v}_at_1"] = float(np.mean([res[v][f"f1_{k}"]["f1"] for k in groups]))
        print(f"{v} score {res[f'{v}_score']:.3f}  at f=1: {res[f'{v}_at_1']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
