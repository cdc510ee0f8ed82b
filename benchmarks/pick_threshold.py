"""Ranking against threshold: a picker's candidates on validation and test sets (issue 18).

For each set, every micrograph is picked with ``Picker.pick_image`` from the package's candidate
floor (``pick.config.SCORE_FLOOR``, what ``draco pick predict`` scores), each candidate matched to
the truth (one-to-one, greedy by score), and ``(scores, is_tp, n_true)`` cached per micrograph.
Then threshold rules are scored on the cache: pooled F1 at each rule's threshold, beside the best
F1 over all thresholds and AP (the ranking alone).

Sets (``--sets``, names below): validation = proteins no candidate picker was trained on, never
a ribosome — the realistic-preset held-out structures raw (``rval``) and as renderings
(``rval_r``, both ``benchmarks/pick_realistic.py --role val`` under ``/tmp/h18/data``) and the
classic preset's fifth phantom set (``phan6``: ``pick_data.py phan 12 6 junk``, the old
recipe's validation phantoms); test = EMPIAR-10017 (real), ``ribo_junk_101/102`` (ours),
the cryoJAX sets (``/work/indep_sets``).

    python benchmarks/pick_threshold.py --model bundled --sets rval rval_r phan6 \
        --cache /tmp/h18a/cache_B.pkl
    python benchmarks/pick_threshold.py --model bundled --sets empiar ribo101 ribo102 \
        ribo70s apof --cache /tmp/h18a/cache_B.pkl
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_real import DIAMETER_A as EMPIAR_DIAMETER
from pick_real import EMPIAR
from pick_real import PIXEL as EMPIAR_PIXEL
from pick_recipe import VAL_RAW, VAL_RENDER, diameters

from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.coords import read_coords
from draco_em.io.mrc import read_micrograph
from draco_em.pick.config import SCORE_FLOOR
from draco_em.pick.model_io import read_picker
from draco_em.pick.predict import Picker

H18 = Path("/tmp/h18/data")
PICK = Path("/tmp/pick_data")
INDEP = Path("/work/indep_sets")


def sim_set(folders: list[Path], frac: float, diameter: float | None = None) -> list[tuple]:
    """(micrograph, coordinates STAR, diameter Å, pixel size or None, match fraction) per image."""
    items = []
    for folder in folders:
        diam = diameters(folder)
        for mic in sorted((folder / "micrographs").glob("*.mrc")):
            if mic.stem.endswith(("_EVN", "_ODD")):
                continue
            d = diameter or diam.get(mic.stem)
            if d is None:
                continue
            items.append((mic, folder / "coordinates" / f"{mic.stem}.star", d, None, frac))
    return items


def set_items(name: str) -> list[tuple]:
    """The micrographs of a named set (match radius: d/4 on validation and EMPIAR, d/2 on the
    other test sets, as ``benchmarks/pick.py`` scores them in docs/benchmarks.md)."""
    if name == "rval":
        return sim_set([H18 / n for n in VAL_RAW], 0.25)
    if name == "rval_r":
        return sim_set([H18 / n for n in VAL_RENDER], 0.25)
    if name == "phan6":
        return sim_set([PICK / "phan_junk_6"], 0.25)
    if name == "empiar":
        return [
            (jpg, EMPIAR / "coordinates" / f"{jpg.stem}.star", EMPIAR_DIAMETER, EMPIAR_PIXEL, 0.25)
            for jpg in sorted((EMPIAR / "micrographs").glob("*.jpg"))
        ]
    if name in ("ribo101", "ribo102"):
        return sim_set([PICK / f"ribo_junk_{name[4:]}"], 0.5, 260.0)
    if name == "ribo70s":
        return sim_set([INDEP / "ribo70s_2A"], 0.5, 260.0)
    if name == "apof":
        return sim_set([INDEP / "apof_1p5A"], 0.5, 130.0)
    raise SystemExit(f"unknown set {name}")


def collect(model: str, name: str) -> list[dict]:
    """Candidates ≥ the floor of every micrograph of ``name``, matched to its truth."""
    detector, _ = read_picker(model)
    detector.eval()
    rows = []
    for mic, star, d, px, frac in set_items(name):
        image, header_px = read_micrograph(mic, px)
        px = px or header_px
        picks = Picker(detector, d).pick_image(image, px, str(mic), threshold=SCORE_FLOOR)
        truth = read_coords(star)[["x", "y"]].to_numpy(float)
        xy, s = picks[["x", "y"]].to_numpy(float), picks["score"].to_numpy(float)
        tp = match_picks(xy, s, truth, frac * d / px)
        rows.append({"mic": mic.stem, "scores": s, "tp": tp, "n_true": len(truth)})
        print(f"{name} {mic.stem}: {len(s)} candidates, {int(tp.sum())}/{len(truth)}", flush=True)
    return rows


def pooled(rows: list[dict], thresholds: list[float]) -> dict:
    """Pooled P/R/F1 with one threshold per micrograph."""
    keep = [r["scores"] >= t for r, t in zip(rows, thresholds, strict=True)]
    tp = np.concatenate([r["tp"][k] for r, k in zip(rows, keep, strict=True)])
    s = np.concatenate([r["scores"][k] for r, k in zip(rows, keep, strict=True)])
    res = summarize(tp, s, sum(r["n_true"] for r in rows))
    return {k: round(float(res[k]), 3) for k in ("precision", "recall", "f1")} | {
        "n_pred": int(res["n_pred"])
    }


def top_mean(scores: np.ndarray, k: int = 3) -> float:
    """Mean of a micrograph's ``k`` highest candidate scores (its particle level)."""
    return float(np.sort(scores)[::-1][:k].mean()) if len(scores) else 1.0


def otsu_split(x: np.ndarray, bins: int = 64, bounds: tuple[float, float] | None = None) -> float:
    """Otsu's (1979) two-class split of ``x``: the histogram edge that maximises the
    between-class variance (``bins`` bins over ``bounds``, default x's range)."""
    h, e = np.histogram(x, bins, range=bounds)
    c, w = (e[1:] + e[:-1]) / 2, h / h.sum()
    w0, m = np.cumsum(w), np.cumsum(w * c)
    with np.errstate(all="ignore"):
        between = (m[-1] * w0 - m) ** 2 / (w0 * (1 - w0))
    return float(e[int(np.argmax(np.nan_to_num(between, nan=0.0, posinf=0.0))) + 1])


def otsu(scores: np.ndarray, bins: int = 64) -> float:
    """Per-micrograph two-class split of the candidates' logit scores (Otsu 1979), as a score."""
    x = np.log(np.clip(scores, 1e-4, 1 - 1e-4) / (1 - np.clip(scores, 1e-4, 1 - 1e-4)))
    if len(x) < 2:
        return float(scores.min()) if len(scores) else 1.0
    return float(1 / (1 + np.exp(-otsu_split(x, bins))))


RULES = {  # rule → (micrograph rows, parameter) → one threshold per micrograph
    "fixed": lambda rows, t: [t] * len(rows),
    "relative": lambda rows, a: [a * top_mean(r["scores"]) for r in rows],
}
GRIDS = {"fixed": np.round(np.arange(0.15, 0.60, 0.01), 3),
         "relative": np.round(np.arange(0.2, 1.0, 0.025), 3)}  # fmt: skip


def choose(cache: dict, groups: list[str]) -> dict:
    """Each rule's parameter with the best mean (over ``groups``) pooled F1 on validation."""
    out = {}
    for rule, fn in RULES.items():
        scored = [
            (float(np.mean([pooled(cache[g], fn(cache[g], p))["f1"] for g in groups])), float(p))
            for p in GRIDS[rule]
        ]
        best = max(scored)
        out[rule] = {"param": best[1], "val_mean_f1": round(best[0], 3)}
    return out


def rules(rows: list[dict], stored: float, chosen: dict, rendered_t: float | None) -> dict:
    """Each rule's pooled result on ``rows``, and the ranking alone (best F1, AP)."""
    allr = summarize(
        np.concatenate([r["tp"] for r in rows]),
        np.concatenate([r["scores"] for r in rows]),
        sum(r["n_true"] for r in rows),
    )
    out: dict = {
        "micrographs": len(rows),
        "n_true": sum(r["n_true"] for r in rows),
        "ranking": {"best_f1": round(float(allr["best_f1"]), 3),
                    "best_threshold": round(float(allr["best_threshold"]), 3),
                    "ap": round(float(allr["ap"]), 3),
                    "max_recall": round(float(allr["recall"]), 3)},
        "stored": pooled(rows, [stored] * len(rows)) | {"threshold": round(stored, 3)},
    }  # fmt: skip
    for rule, fn in RULES.items():
        ts = fn(rows, chosen[rule]["param"])
        out[rule] = pooled(rows, ts) | {"threshold_median": round(float(np.median(ts)), 3)}
    ts = [otsu(r["scores"]) for r in rows]
    out["otsu"] = pooled(rows, ts) | {"threshold_median": round(float(np.median(ts)), 3)}
    if rendered_t is not None:  # by input kind: the renderings' own fixed threshold
        out["by_kind"] = pooled(rows, [rendered_t] * len(rows)) | {"threshold": rendered_t}
    return out


VALIDATION = ["rval", "rval_r", "phan6"]
RENDERED = {"rval_r", "empiar"}  # 8-bit renderings; the others are raw micrographs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--cache", type=Path, required=True, help="pickle of the candidates")
    args = ap.parse_args()
    cache = pickle.loads(args.cache.read_bytes()) if args.cache.is_file() else {}
    for name in args.sets:
        if name not in cache:
            cache[name] = collect(args.model, name)
            args.cache.write_bytes(pickle.dumps(cache))
    stored = float(read_picker(args.model)[1]["threshold"])
    if not all(g in cache for g in VALIDATION):
        raise SystemExit(f"collect the validation sets first: --sets {' '.join(VALIDATION)}")
    chosen = choose(cache, VALIDATION)  # validation only: the test sets never choose
    raw_t = choose(cache, ["rval", "phan6"])["fixed"]["param"]
    ren_t = choose(cache, ["rval_r"])["fixed"]["param"]
    res: dict = {"chosen_on_validation": chosen | {"by_kind": {"raw": raw_t, "rendered": ren_t}}}
    for name in args.sets:
        res[name] = rules(cache[name], stored, chosen, ren_t if name in RENDERED else raw_t)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
