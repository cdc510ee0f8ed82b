"""Issue 19, session 16: real MicAssess labels in the bundled head's training.

Candidate M is the bundled head's recipe (``train_bundled_curator.py``: the frozen bundled
encoder, ``--features encoder``, one L2, 100 epochs) on its simulated training sets as they are
on disk, plus the 18 real MicAssess micrographs at 7 Å/px, each listed ``--copies`` times.
Control B is the same without MicAssess. The rule that decides M is in docs/benchmarks.md
("Session 16", curation), written before any head here was trained:

* leave-one-out on MicAssess: one fit of M's recipe per MicAssess micrograph, without it (and
  its copies), scoring it (the held-out estimate the rule reads, condition (a));
* the recipe's simulated validation sets (``val7``/``val4``/``val2`` with their ``no_ice``
  holes) and its spread gate, for M, B and the installed head (conditions (b), (c)).

The test sets (EMPIAR-10017, the contaminated micrograph, cryoJAX's and our held-out sets) are
scored afterwards by ``curate_real.py --model M=…`` (condition (d), a veto only).

Features come from one cache (``ROOT/runs/shared/features``, the recipe's): nothing here
recomputes a simulated micrograph's features.

Example (``--root`` holds the recipe's sets):
    OMP_NUM_THREADS=2 python benchmarks/curate_real_labels.py --root /work/cur19 \\
        --work /work/s21/real_labels
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate_real import DATA, MICASSESS, MICASSESS_PX, micassess_items, summarize
from train_bundled_curator import DEST, REAL_SPREAD, combined_labels, real_spread, validate

from draco_em.curate.config import CurateTrainConfig, FeatureConfig
from draco_em.curate.head import Curator, load_curator
from draco_em.curate.predict import decide
from draco_em.curate.train import (
    _Featurizer,
    _fit_predict,
    collect_features,
    frozen_vectors,
    train_curator,
)
from draco_em.io.labels import read_labels
from draco_em.model.encoder import load_encoder

#: MicAssess's few-shot class → the head's class (the simulator's ``empty`` = no particles).
HEAD_CLASS = {"no_particles": "empty"}


def sim_rows(stars: list[Path], path: Path) -> list[str]:
    """``micrograph,label,pixel_size`` rows of labelled simulated STARs (the recipe's joined CSV,
    written to ``path``)."""
    return combined_labels(stars, path).read_text().splitlines()[1:]


def real_rows(items: list, copies: int) -> list[str]:
    """MicAssess rows in the head's classes, each ``copies`` times."""
    rows = []
    for it in items:
        label = MICASSESS[it.truth][0]
        rows += [f"{it.path},{HEAD_CLASS.get(label, label)},{MICASSESS_PX:g}"] * copies
    return rows


def train(
    work: Path, name: str, rows: list[str], cache: Path, l2: float, epochs: int, blocks: str
) -> Path:
    """Fit one head on ``rows`` (features from ``cache``); returns its file (kept if present)."""
    run = work / "runs" / name
    head = run / "curator.safetensors"
    if head.is_file():
        return head
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "features").exists():
        (run / "features").symlink_to(cache.resolve(), target_is_directory=True)
    labels = run / "labels.csv"
    labels.write_text("\n".join(["micrograph,label,pixel_size", *rows]) + "\n")
    cfg = CurateTrainConfig(labels=labels, out_dir=run, l2=l2, epochs=epochs, cv=0,
                            features=FeatureConfig(blocks=blocks), progress=False)  # fmt: skip
    train_curator(cfg)
    return head


def val_sets(root: Path, work: Path) -> list[Path]:
    """The recipe's validation sets, each joined with its ``no_ice`` holes (its defaults)."""
    return [
        combined_labels(
            [root / f"val{px}" / "micrographs.star", root / f"valnoice{px}" / "micrographs.star"],
            work / f"val{px}_noice.csv",
        )
        for px in (7, 4, 2)
    ]


def leave_one_out(run: Path, curator: Curator, mic: list) -> dict:
    """M's recipe refitted once per MicAssess micrograph without it (and its copies).

    The head inputs of M's training rows are computed once (cached features, frozen encoder)
    and each fold refits the linear head on the other rows (what ``train_curator`` does, as in
    its own cross-validation), then decides the left-out micrograph.
    """
    cfg = CurateTrainConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
    labels = read_labels(cfg.labels)
    encoder = load_encoder(cfg.weights, torch.device("cpu"), cfg.features.pixel_size)
    arrays, spectra, used = collect_features(encoder, cfg, labels, None)
    x = frozen_vectors(_Featurizer(encoder, None, curator.features), arrays, spectra)
    y = np.array([curator.classes.index(labels.labels[i]) for i in used])
    paths = np.array([str(labels.paths[i]) for i in used])
    rows = []
    for it in mic:
        held = paths == str(it.path)
        probs = _fit_predict(x[~held], y[~held], x[held][:1], len(curator.classes), cfg,
                             curator.accept_index)[0]  # fmt: skip
        p_accept, decision, reason = decide(probs, curator, 0.5)
        right = (decision == "accept") == it.good
        reason_right = right and (it.good or reason in it.right_reasons)
        rows.append({"micrograph": it.path.stem, "truth": it.truth, "decision": decision,
                     "reason": reason, "p_accept": round(p_accept, 3), "decision_right": right,
                     "reason_right": reason_right})  # fmt: skip
        print(f"loo {it.truth[:24]:24s} {decision:6s} {reason}", flush=True)
    return summarize(rows, mic)  # curate_real.py's table: the same tallies as its zero-shot rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/work/cur19"))
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/curate_real_labels"))
    ap.add_argument("--train", nargs="+", default=["train7", "train4", "train2", "trainc2"],
                    help="simulated training sets under --root (the bundled head's)")  # fmt: skip
    ap.add_argument("--copies", type=int, default=10, help="times each MicAssess row is listed")
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--blocks", default="encoder", choices=["encoder", "stats", "both"],
                    help="feature blocks the heads read (the bundled head's: encoder)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--skip-loo", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.root / "runs" / "shared" / "features"
    sim = sim_rows([args.root / s / "micrographs.star" for s in args.train], args.work / "sim.csv")
    mic = micassess_items(DATA / "micassess")
    results: dict = {"copies": args.copies, "l2": args.l2, "n_sim": len(sim)}
    t0 = time.time()
    heads = {
        "bundled": DEST,
        "B": train(args.work, "B", sim, cache, args.l2, args.epochs, args.blocks),
        "M": train(
            args.work,
            "M",
            sim + real_rows(mic, args.copies),
            cache,
            args.l2,
            args.epochs,
            args.blocks,
        ),
    }
    results["fit_seconds_B_M"] = round(time.time() - t0, 1)
    print({k: str(v) for k, v in heads.items()}, flush=True)
    val = val_sets(args.root, args.work)
    folder, px = REAL_SPREAD
    for name, head in heads.items():
        out = validate(head, val, cache)
        out["real_spread"] = real_spread(head, folder, px, cache)
        out["spread_ok"] = out["spread_ok"] and out["real_spread"]["spread_ok"]
        results[f"{name} validation"] = out
        print(name, f"score {out['score']:.3f}", "spread ok" if out["spread_ok"] else "SPREAD FAIL",
              flush=True)  # fmt: skip
    if not args.skip_loo:
        results["M leave-one-out on MicAssess"] = leave_one_out(
            args.work / "runs" / "M", load_curator(heads["M"]), mic
        )
        print("M leave-one-out balanced accuracy",
              f"{results['M leave-one-out on MicAssess']['balanced_accuracy']:.3f}")  # fmt: skip
    results["seconds"] = round(time.time() - t0, 1)
    (args.work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"→ {args.work / 'results.json'}")


if __name__ == "__main__":
    main()
