"""Why the bundled curation head misses on the 18 real MicAssess micrographs (issue 19,
session 26 in docs/benchmarks.md): a diagnostic; it decides nothing.

Reads ``draco curate predict`` output folders made on the MicAssess micrographs (their
``curation.csv`` and the features cached in ``features/``; nothing is recomputed) and prints:

1. for the first folder, per micrograph: expert class, decision, reason, p(good), the Nyquist
   ratio, the Thon-ring contrast, and what drives the answer: the head's logit of ``good``
   minus that of the nearest reject class (the reason when rejected, the most probable reject
   class when accepted), split into the encoder's pooled tokens (mean over tiles, 95th
   percentile) and the 8 spectrum features;
2. for every folder (e.g. one per ``--pixel-size``): balanced accuracy and, per expert class,
   decisions right / reasons right / n (the mapping of ``curate_real.py``);
3. how well single numbers sort good from bad on the first folder (ROC AUC, good above bad =
   1, below = 0): p(good), the Nyquist ratio, each spectrum feature; with ``--sim``, the
   spectrum features' medians per class of a labelled simulated set (what the head's classes
   look like in data like its training data).

::

    for px in 5 6 7 8 10; do draco curate predict ../shared/data/micassess/micrographs \\
        --pixel-size $px -o OUT/mic$px -q; done
    python benchmarks/curate_micassess_misses.py OUT/mic7 OUT/mic5 OUT/mic6 OUT/mic8 OUT/mic10 \\
        --sim test7=OUT/test7/micrographs.star
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from draco_em.curate.baselines import UNIT_FREE
from draco_em.curate.features import micrograph_features, micrograph_vector, spectrum_vector
from draco_em.curate.head import Curator, load_curator
from draco_em.io.classes import GOOD
from draco_em.io.labels import read_labels
from draco_em.io.mrc import read_image
from draco_em.model.encoder import load_encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_real import DATA, MICASSESS  # the mapping every MicAssess row uses

#: Names of the 10 spectrum features of ``curate.baselines.spectrum_features``, in order.
ALL_SPECTRUM = ("thon", "hi_lo", "ice", "spots", "aniso", "log_mean", "cv", "dark", "spread",
                "bright")  # fmt: skip
SPECTRUM = [ALL_SPECTRUM[i] for i in UNIT_FREE]


def auc(good: np.ndarray, bad: np.ndarray) -> float:
    """P(a good micrograph's value > a bad one's), ties counted half (ROC AUC)."""
    diff = np.asarray(good)[:, None] - np.asarray(bad)[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def best_cut(good: np.ndarray, bad: np.ndarray, cut: float) -> float:
    """Balanced accuracy of accepting at p(good) >= ``cut``."""
    return float((np.mean(good >= cut) + np.mean(bad < cut)) / 2)


def read_prediction(folder: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """``curation.csv`` of one folder joined to the expert classes, in the labels' order."""
    table = pd.read_csv(folder / "curation.csv")
    table["name"] = [Path(m).stem for m in table["micrograph"]]
    table = labels.merge(table, on="name", how="left", validate="one_to_one")
    table["good"] = [MICASSESS[c][0] == GOOD for c in table["class"]]
    table["decision_right"] = (table["decision"] == "accept") == table["good"]
    right = [g or r in MICASSESS[c][1] for g, r, c in zip(table["good"], table["reason"],
                                                        table["class"], strict=True)]  # fmt: skip
    table["reason_right"] = table["decision_right"] & np.array(right)
    return table


def per_class(table: pd.DataFrame) -> str:
    """Balanced accuracy and decisions / reasons right per expert class, one line."""
    acc = table["decision"] == "accept"
    bal = (acc[table["good"]].mean() + (~acc[~table["good"]]).mean()) / 2
    groups = table.groupby("class", sort=False)
    cls = "; ".join(f"{c}: {g['decision_right'].sum()}/{g['reason_right'].sum()}/{len(g)}"
                    for c, g in groups)  # fmt: skip
    reasons = table.loc[~acc, "reason"].value_counts().to_dict()
    return (
        f"balanced accuracy {bal:.3f}, accepted {int(acc.sum())}/{len(table)}; {cls}; "
        f"rejected as {reasons}"
    )


def drivers(curator: Curator, table: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Per micrograph: good minus the nearest reject class's logit, by block, and the
    standardised spectrum features' share of it (from the features cached in ``folder``)."""
    cfg = curator.features
    encoder = load_encoder(curator.encoder, torch.device("cpu"), cfg.pixel_size)
    norm, linear = curator.head.norm, curator.head.linear
    w, b = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    mean, var = norm.running_mean.numpy(), norm.running_var.numpy()
    e = encoder.dim
    # the bundled head's layout: pooled tokens (mean, 95th percentile), then the spectrum
    assert w.shape[1] == 2 * e + len(SPECTRUM), f"unexpected head layout {w.shape} (dim {e})"
    blocks = {
        "tokens_mean": slice(0, e),
        "tokens_p95": slice(e, 2 * e),
        "spectrum": slice(2 * e, None),
    }
    good = curator.classes.index(GOOD)
    rows = []
    for name, px in zip(table["name"], table["pixel_size"], strict=True):
        path = DATA / "micassess" / "micrographs" / f"{name}.png"
        tiles, extra, _ = micrograph_features(encoder, cfg, path, float(px), folder / "features")
        vec = micrograph_vector(torch.from_numpy(tiles).float(), extra, cfg).numpy()
        z = (vec - mean) / np.sqrt(var + norm.eps)
        logits = w @ z + b
        other = max((k for k in range(len(logits)) if k != good), key=lambda k: logits[k])
        d = w[good] - w[other]
        row = {
            "name": name,
            "versus": curator.classes[other],
            "good_minus": logits[good] - logits[other],
        }
        row |= {k: float(d[s] @ z[s]) for k, s in blocks.items()}
        row |= {f"spec_{n}": float(d[2 * e + i] * z[2 * e + i]) for i, n in enumerate(SPECTRUM)}
        row |= {n: float(extra[i]) for i, n in enumerate(SPECTRUM)}
        rows.append(row)
    return pd.DataFrame(rows)


def sim_spectra(star: Path) -> pd.DataFrame:
    """Median [min, max] of the thon, hi_lo, aniso and spread features per class of a set."""
    labels = read_labels(star)
    cfg = load_curator("bundled").features
    rows = []
    for path, label, px in zip(labels.paths, labels.labels, labels.pixel_sizes, strict=True):
        image, _ = read_image(path, px)
        rows.append(
            {"class": label, **dict(zip(SPECTRUM, spectrum_vector(image, px, cfg), strict=True))}
        )
    table = pd.DataFrame(rows)
    fmt = lambda v: f"{np.median(v):.2f} [{np.min(v):.2f}, {np.max(v):.2f}]"  # noqa: E731
    return table.groupby("class")[["thon", "hi_lo", "aniso", "spread"]].agg(fmt).assign(
        n=table.groupby("class").size())  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pred", nargs="+", type=Path, help="curate predict folders (first: detail)")
    ap.add_argument("--sim", default=None, help="NAME=labelled STAR: its spectrum features")
    args = ap.parse_args()
    labels = pd.read_csv(DATA / "micassess" / "labels.csv")[["name", "class"]]
    tables = [read_prediction(folder, labels) for folder in args.pred]
    for folder, table in zip(args.pred, tables, strict=True):
        print(f"{folder.name} (pixel size {table['pixel_size'].iloc[0]:g} Å): {per_class(table)}")
    table = tables[0].merge(drivers(load_curator("bundled"), tables[0], args.pred[0]), on="name")
    cols = ["class", "decision", "reason", "p_good", "nyquist_ratio", "thon", "versus",
            "good_minus", "tokens_mean", "tokens_p95", "spectrum", "spec_thon"]  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table[cols].round(3).to_string(index=False))
    good, bad = table[table["good"]], table[~table["good"]]
    cuts = [best_cut(good["p_good"].to_numpy(), bad["p_good"].to_numpy(), t)
            for t in table["p_good"]]  # fmt: skip
    print(
        f"best balanced accuracy over every cut of p_good (seen on this test set): {max(cuts):.3f}"
    )
    for col in ["p_good", "nyquist_ratio", *SPECTRUM]:
        g, b = good[col].to_numpy(), bad[col].to_numpy()
        print(f"AUC good > bad, {col}: {auc(g, b):.3f}; "
              f"good {np.round(np.sort(g), 2)}, bad {np.round(np.sort(b), 2)}")  # fmt: skip
    if args.sim:
        name, star = args.sim.split("=", 1)
        print(f"\n{name}: spectrum features per class, median [min, max]")
        print(sim_spectra(Path(star)).to_string())


if __name__ == "__main__":
    main()
