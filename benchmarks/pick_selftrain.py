"""Self-training on the picker's own confident picks, zero-shot (issue 18, session 8, step 2).

Applies the rules of docs/benchmarks.md ("Issue 18, session 8, steps 2 and 3"). Per data set:
the bundled picker chooses its multiple m of the given diameter as ``draco pick predict``
does (its first 8 micrographs by name); AS = it picks the test micrographs at m (two views,
the stored threshold); ST = :func:`self_train`: its candidates ≥ the stored threshold on
the first 3 micrographs, the better half of each as labels (:func:`pseudo_labels`), ``pick
train --weights bundled`` at m × the diameter, then the test micrographs picked with that
picker; ST-D = the same picker cut where it keeps as many picks on those 3 micrographs as AS.
Neither was adopted (docs/benchmarks.md), so this code lives here, not in the package::

    # the rule's simulated tasks (8 validation data sets × f 1.0 / 1.4; test = all but the
    # first 3 micrographs of each; within a quarter of the true max_dim)
    OMP_NUM_THREADS=2 python benchmarks/pick_selftrain.py --work /work/h18/selftrain \\
        --json /work/h18/selftrain.json
    # the test sets (every micrograph scored; EMPIAR-10017 within 27 px, the others d/2)
    OMP_NUM_THREADS=2 python benchmarks/pick_selftrain.py --test --work /work/h18/selftrain_test
    # step 3 (ST-D: ST's pickers cut at AS's pick count on the first 3 micrographs; runs reused)
    ... --variants STD [--test]

Finished self-training runs are reused (``WORK/<task>/ST/run/picker.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_autoscale import validation_groups
from pick_scales import TEST_SETS

from draco_em.errors import DracoInputError
from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.coords import make_coords, read_coords, write_relion_coords
from draco_em.io.mrc import read_micrograph
from draco_em.pick.autoscale import AUTO_MICROGRAPHS, choose_scale
from draco_em.pick.config import DEFAULT_TTA, SCORE_FLOOR, PickTrainConfig
from draco_em.pick.model_io import RUN_FILE, load_picker, read_picker
from draco_em.pick.predict import Picker
from draco_em.pick.threshold import density_threshold
from draco_em.pick.train import train_picker

EMPIAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "empiar10017"
VARIANTS = ("AS", "ST", "STD")
SELF_TRAIN_MICROGRAPHS = 3  # micrographs whose confident picks become the labels (first by name)
LABEL_SHARE = 0.5  # share of a micrograph's candidates ≥ the stored threshold kept as labels


def pseudo_labels(
    candidates: dict[str, pd.DataFrame], threshold: float, share: float = LABEL_SHARE
) -> tuple[dict[str, pd.DataFrame], float]:
    """(labels per micrograph, expected particles per micrograph) from a picker's candidates.

    Args:
        candidates: micrograph name → picks (``x``, ``y``, ``score``; input px), e.g. at the
            floor, as :meth:`~draco_em.pick.predict.Picker.pick_image` returns them.
        threshold: the picker's stored threshold: candidates at or above it count.
        share: the better-scoring share of those kept as labels (at least one per micrograph).

    Returns:
        Labels (the same columns) for each micrograph with a candidate ≥ ``threshold``, and the
        mean count of such candidates over all the micrographs given (0 where none has any).
    """
    labels, counts = {}, []
    for name, df in candidates.items():
        above = df[df["score"] >= threshold].sort_values("score", ascending=False)
        counts.append(len(above))
        if len(above):
            labels[name] = above.head(max(1, round(share * len(above)))).reset_index(drop=True)
    return labels, float(np.mean(counts)) if counts else 0.0


def self_train(
    weights: str,
    micrographs: list[Path],
    candidates: dict[str, pd.DataFrame],
    threshold: float,
    diameter: float,
    outdir: Path,
    pixel_size: float | None = None,
    seed: int = 0,
    device: str = "auto",
    **options: object,
) -> Path:
    """Fine-tune ``weights`` (a picker, e.g. 'bundled') on its own confident picks.

    Args:
        weights: the picker the candidates came from.
        micrographs: the micrographs the candidates were picked on (file stems = their names).
        candidates: stem → candidates (see :func:`pseudo_labels`).
        threshold: that picker's stored threshold.
        diameter: the diameter (Å) the candidates were picked at (after any chosen multiple).
        outdir: gets ``labels/<stem>.star`` and the run folder ``run/``.
        pixel_size: input Å/px (default: the headers).
        options: other :class:`~draco_em.pick.config.PickTrainConfig` fields (e.g. ``epochs``).

    Returns:
        The trained picker file (``outdir/run/picker.safetensors``).
    """
    labels, expected = pseudo_labels(candidates, threshold)
    if not labels:
        raise DracoInputError(
            "self-training: no pick reaches the stored threshold on the micrographs read; "
            "nothing to self-train on"
        )
    folder = outdir / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, df in labels.items():
        write_relion_coords(folder / f"{stem}.star", make_coords(stem, df["x"], df["y"]))
    used = [m for m in micrographs if Path(m).stem in labels]
    cfg = PickTrainConfig(micrographs=used, coords=[folder], diameter=diameter,
                          outdir=outdir / "run", weights=weights, expected_particles=expected,
                          pixel_size=pixel_size, seed=seed, device=device,
                          **options)  # fmt: skip
    return train_picker(cfg)


def run_set(work: Path, mics: list[Path], truth: dict[str, Path], diameter: float,
            px: float | None, radius_px: float, test: list[Path],
            variants: tuple[str, ...] = VARIANTS) -> dict:  # fmt: skip
    """AS, ST and ST-D on one data set; ``test`` are scored (radius in input px)."""
    detector, info = read_picker("bundled")
    detector.eval()
    thr = float(info["threshold"])
    picker = Picker(detector, diameter, threshold=thr, tta=DEFAULT_TTA)
    mics = sorted(mics, key=lambda p: p.name)

    def image(m: Path):
        img, header = read_micrograph(m, px)
        return img.astype(np.float32), float(px or header)

    t0 = time.time()
    choice = choose_scale(picker, ((*image(m), m.stem) for m in mics[:AUTO_MICROGRAPHS]),
                          SCORE_FLOOR)  # fmt: skip
    m = choice.multiplier
    first = mics[:SELF_TRAIN_MICROGRAPHS]
    run = work / "ST" / "run"
    if not (run / RUN_FILE).is_file():
        self_train("bundled", first, {p.stem: choice.candidates[p.stem] for p in first}, thr,
                   m * diameter, work / "ST", pixel_size=px, seed=0)  # fmt: skip
    seconds = time.time() - t0
    trained = load_picker(run)
    trained.tta = DEFAULT_TTA
    at_m = replace(picker, scales=(m,))
    # ST-D (step 3): the self-trained picker cut where it keeps as many picks on the first
    # micrographs as the bundled picker keeps there at its stored threshold
    keep = sum(int((choice.candidates[p.stem]["score"] >= thr).sum()) for p in first)
    own = np.zeros(0)
    if "STD" in variants:
        own = np.concatenate([trained.pick_image(*image(p), p.stem, threshold=SCORE_FLOOR)
                              ["score"].to_numpy() for p in first])  # fmt: skip
    std = replace(trained, threshold=density_threshold(own, keep))
    out: dict = {"multiplier": m, "st_threshold": trained.threshold,
                 "std_threshold": std.threshold, "st_seconds": round(seconds, 1)}  # fmt: skip
    for name, p in (("AS", at_m), ("ST", trained), ("STD", std)):
        if name not in variants:
            continue
        tps, scs, n = [], [], 0
        for mic in test:
            img, mpx = image(mic)
            picks = p.pick_image(img, mpx, mic.stem)
            xy, sc = picks[["x", "y"]].to_numpy(float), picks["score"].to_numpy(float)
            true = read_coords(truth[mic.stem])[["x", "y"]].to_numpy(float)
            tps.append(match_picks(xy, sc, true, radius_px))
            scs.append(sc)
            n += len(true)
        out[name] = {"tp": np.concatenate(tps).tolist(), "scores": np.concatenate(scs).tolist(),
                     "n": n}  # fmt: skip
    return out


def pooled(rows: list[dict], v: str) -> dict:
    r = summarize(np.concatenate([np.array(x[v]["tp"], bool) for x in rows]),
                  np.concatenate([np.array(x[v]["scores"]) for x in rows]),
                  sum(x[v]["n"] for x in rows))  # fmt: skip
    return {k: r[k] for k in ("precision", "recall", "f1", "n_pred", "n_true")}


def study(data: Path, work: Path, factors: list[float], variants: tuple[str, ...]) -> dict:
    res: dict = {v: {} for v in variants}
    res["tasks"] = {}
    for f in factors:
        for kind, sets in validation_groups(data).items():
            cond, rows = f"f{f:g}_{kind}", []
            for items in sets:
                items = sorted(items, key=lambda it: it[0].name)
                d, px = items[0][2], None
                task = f"{cond}_d{d:g}"
                r = run_set(work / task, [it[0] for it in items],
                            {it[0].stem: it[1] for it in items}, f * d, px,
                            0.25 * d / float(read_micrograph(items[0][0], None)[1]),
                            [it[0] for it in items[SELF_TRAIN_MICROGRAPHS:]],
                            variants)  # fmt: skip
                rows.append(r)
                res["tasks"][task] = {k: r[k] for k in ("multiplier", "st_threshold",
                                                        "std_threshold", "st_seconds")}  # fmt: skip
                print(task, res["tasks"][task], flush=True)
            for v in variants:
                res[v][cond] = pooled(rows, v)
                print(cond, v, round(res[v][cond]["f1"], 3), flush=True)
    for v in variants:
        res[f"{v}_score"] = float(np.mean([r["f1"] for r in res[v].values()]))
        res[f"{v}_at_1"] = float(
            np.mean([r["f1"] for c, r in res[v].items() if c.startswith("f1_")])
        )
        print(f"{v} score {res[f'{v}_score']:.3f}  at f=1: {res[f'{v}_at_1']:.3f}")
    return res


def test_rows(work: Path, variants: tuple[str, ...]) -> dict:
    res: dict = {}
    sets = {"empiar10017": (EMPIAR, 191.16, 1.77, 27.0)}
    sets.update({n: (folder, d, px, 0.5 * d / px) for n, (folder, d, px) in TEST_SETS.items()})
    for name, (folder, d, px, radius) in sets.items():
        mics = sorted(
            p
            for p in (folder / "micrographs").iterdir()
            if p.suffix in (".mrc", ".jpg") and not p.stem.endswith(("_EVN", "_ODD"))
        )
        truth = {p.stem: folder / "coordinates" / f"{p.stem}.star" for p in mics}
        r = run_set(work / name, mics, truth, d, px, radius, mics, variants)
        res[name] = {k: r[k] for k in ("multiplier", "st_threshold", "std_threshold",
                                       "st_seconds")}  # fmt: skip
        res[name].update({v: pooled([r], v) for v in variants})
        print(name, json.dumps(res[name]), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--work", type=Path, default=Path("/work/h18/selftrain"))
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.4])
    ap.add_argument("--test", action="store_true", help="the test rows, after the decision")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    variants = tuple(args.variants)
    res = (test_rows(args.work, variants) if args.test
           else study(args.data, args.work, args.factors, variants))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
