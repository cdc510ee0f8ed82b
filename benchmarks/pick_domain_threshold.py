"""A second stored threshold for pre-denoised pictures (issue 18, session 13): the rule's study.

Applies the rule written in docs/benchmarks.md ("Issue 18, session 13") to the simulated
validation micrographs of ``benchmarks/pick_recipe.py`` (held-out structures): the 22 raw
(``*_val``), their 22 picker renderings (``*_r_val``) and the same 22 rendered by issue 19's
realism-gated recipe (``*_lc_val``, ``pick_realistic.py --style lc``).

1. (a) realism gate, labels not read: median local-contrast CV (``curate_domains.py``) of the
   ``_r_val`` and ``_lc_val`` renderings against EMPIAR-10017's 11 JPEGs;
2. every micrograph's Nyquist ratio (``imaging.nyquist``, read as ``curate predict`` does;
   routed below ``PRE_DENOISED_BELOW``);
3. t_R = the stored-threshold rule (``threshold_from_matches``: middle of the near-best F1
   plateau within d/2) on the ``_lc_val`` renderings, the bundled picker at the labelled
   diameters, one view;
4. (b) F1 within d/4 on ``_lc_val`` routed vs at the stored threshold; (c) S (mean of the raw and
   ``_r_val`` F1 within d/4) routed vs stored.

    OMP_NUM_THREADS=2 python benchmarks/pick_domain_threshold.py --data /work/h18/data \\
        --json /work/h18/domain_thr.json
    # session 14: t_R on the picker's own renderings (``*_r_val``) routed as pre-denoised
    OMP_NUM_THREADS=2 python benchmarks/pick_domain_threshold.py --data /work/h18/data \\
        --renderings r --json /work/s19/domain_thr_r.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import curate_real as cr
from curate_domains import local_contrast_cv
from pick_recipe import VAL_RAW, VAL_RENDER, gather

from draco_em.curate.features import micrograph_nyquist_ratio
from draco_em.evaluate.pick import match_picks, summarize
from draco_em.imaging.nyquist import PRE_DENOISED_BELOW
from draco_em.io.mrc import read_image
from draco_em.pick.labels import load_labelled
from draco_em.pick.model_io import PREDENOISED_KEY, read_picker, save_picker
from draco_em.pick.nms import find_peaks
from draco_em.pick.predict import Picker
from draco_em.pick.threshold import THRESHOLD_RANGE, threshold_from_matches

VAL_LC = [f"{n.removesuffix('_val')}_lc_val" for n in VAL_RAW]
GROUPS = {"raw": VAL_RAW, "r": VAL_RENDER, "lc": VAL_LC}


def group_matches(data: Path, names: list[str], picker: Picker) -> list[dict]:
    """Per micrograph: peaks ≥ the floor with their d/2 and d/4 matches, truth count, ratio."""
    mics, coords, diam = gather(data, names)
    examples = load_labelled(mics, coords, picker.detector.config, 200.0, diam)
    by_stem = {m.stem: m for m in mics}
    out = []
    for ex in examples:
        score, _ = picker.score_map(ex.image)
        xy, s = find_peaks(score, 0.5 * picker.diameter_px, THRESHOLD_RANGE[0])
        out.append({
            "name": ex.name, "scores": s, "n_true": len(ex.xy),
            "tp_half": match_picks(xy, s, ex.xy, 0.5 * picker.diameter_px),
            "tp_quarter": match_picks(xy, s, ex.xy, 0.25 * picker.diameter_px),
            "ratio": micrograph_nyquist_ratio(by_stem[ex.name], None, None),
        })  # fmt: skip
    return out


def f1_at(rows: list[dict], cuts: list[float]) -> dict:
    """Pooled precision / recall / F1 within d/4, each micrograph cut at its own threshold."""
    keep = [r["scores"] >= c for r, c in zip(rows, cuts, strict=True)]
    res = summarize(np.concatenate([r["tp_quarter"][k] for r, k in zip(rows, keep, strict=True)]),
                    np.concatenate([r["scores"][k] for r, k in zip(rows, keep, strict=True)]),
                    sum(r["n_true"] for r in rows))  # fmt: skip
    return {k: float(res[k]) for k in ("precision", "recall", "f1", "n_pred", "n_true")}


def routed(rows: list[dict], stored: float, t_r: float) -> list[float]:
    """The cut-off of each micrograph: t_R below the pre-denoised ratio, else the stored one."""
    return [t_r if r["ratio"] < PRE_DENOISED_BELOW else stored for r in rows]


def bundled_picker(model: str) -> tuple[Picker, float]:
    """The picker (one view, its stored diameter) and its stored threshold."""
    detector, info = read_picker(model)
    return Picker(detector.eval(), float(info["diameter"])), float(info["threshold"])


def threshold_of(rows: list[dict]) -> float:
    """The stored-threshold rule (middle of the near-best F1 plateau within d/2) on ``rows``."""
    return threshold_from_matches(np.concatenate([r["tp_half"] for r in rows]),
                                  np.concatenate([r["scores"] for r in rows]),
                                  sum(r["n_true"] for r in rows))  # fmt: skip


def group_summary(rows: list[dict], stored: float, t_r: float) -> dict:
    """One group's ratios, how many are routed, and F1 at the stored and the routed cut-offs."""
    return {
        "micrographs": len(rows),
        "ratios": {r["name"]: round(r["ratio"], 4) for r in rows},
        "routed_count": int(sum(r["ratio"] < PRE_DENOISED_BELOW for r in rows)),
        "stored": f1_at(rows, [stored] * len(rows)),
        "routed": f1_at(rows, routed(rows, stored, t_r)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/h18/data"))
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--renderings", choices=("lc", "r"), default="lc",
        help="lc: session 13's rule (t_R on the equalised renderings, after the realism gate); "
        "r: session 14's (t_R on the picker's own routed renderings, no gate)",
    )  # fmt: skip
    ap.add_argument(
        "--install",
        action="store_true",
        help="--renderings r: write t_R into --model's file if the rule says so",
    )
    args = ap.parse_args()
    if args.renderings == "r":
        own_renderings(args)
        return

    # (a) realism gate: pixels only
    empiar = sorted((cr.DATA / "empiar10017" / "micrographs").glob("*.jpg"))
    cvs = [local_contrast_cv(read_image(p, cr.EMPIAR_PX)[0], cr.EMPIAR_PX) for p in empiar]
    res: dict = {"empiar_cv": float(np.median(cvs))}
    for g in ("r", "lc"):
        mics = gather(args.data, GROUPS[g])[0]
        cvs = [local_contrast_cv(*read_image(m)) for m in mics]
        res[f"{g}_cv"] = float(np.median(cvs))
        res[f"{g}_distance"] = abs(res[f"{g}_cv"] - res["empiar_cv"])
    res["gate_a"] = res["lc_distance"] < res["r_distance"]
    print({k: res[k] for k in ("empiar_cv", "r_cv", "lc_cv", "gate_a")}, flush=True)
    if not res["gate_a"]:
        print("realism gate fails: nothing changes")
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
        return

    picker, stored = bundled_picker(args.model)
    rows = {g: group_matches(args.data, names, picker) for g, names in GROUPS.items()}
    t_r = threshold_of(rows["lc"])
    res.update({"stored": stored, "t_R": t_r})
    for g, rs in rows.items():
        res[g] = group_summary(rs, stored, t_r) | {"at_t_R": f1_at(rs, [t_r] * len(rs))}
        print(
            g,
            res[g]["routed_count"],
            "of",
            len(rs),
            "routed;",
            {k: round(res[g][k]["f1"], 3) for k in ("stored", "routed", "at_t_R")},
            flush=True,
        )
    res["S_stored"] = 0.5 * (res["raw"]["stored"]["f1"] + res["r"]["stored"]["f1"])
    res["S_routed"] = 0.5 * (res["raw"]["routed"]["f1"] + res["r"]["routed"]["f1"])
    res["gate_b"] = res["lc"]["routed"]["f1"] >= res["lc"]["stored"]["f1"] + 0.01
    res["gate_c"] = res["S_routed"] >= res["S_stored"] - 0.005
    res["install"] = bool(res["gate_a"] and res["gate_b"] and res["gate_c"])
    print(f"stored {stored:.3f}  t_R {t_r:.3f}  S {res['S_stored']:.3f} → {res['S_routed']:.3f}  "
          f"(b) {res['gate_b']}  (c) {res['gate_c']}  install: {res['install']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


def own_renderings(args: argparse.Namespace) -> None:
    """Session 14's rule (docs/benchmarks.md, "Issue 18, session 14, step 3"): t_R on the
    picker's own validation renderings whose Nyquist ratio routes them as pre-denoised; (b) the
    22 renderings' routed F1 ≥ their stored-threshold F1 + 0.005; (c) no raw one routed."""
    picker, stored = bundled_picker(args.model)
    rows = {g: group_matches(args.data, GROUPS[g], picker) for g in ("raw", "r")}
    t_r = threshold_of([r for r in rows["r"] if r["ratio"] < PRE_DENOISED_BELOW])
    res: dict = {"stored": stored, "t_R": t_r}
    for g, rs in rows.items():
        res[g] = group_summary(rs, stored, t_r)
    # the exploration the rule's disclosure quotes (not part of the rule): the same threshold
    # rule on all 22 raw and on all 22 renderings, and the renderings' F1 at the latter
    t_raw, t_r_all = threshold_of(rows["raw"]), threshold_of(rows["r"])
    res["exploration"] = {"t_raw": t_raw, "t_renderings_all": t_r_all,
                          "renderings_f1_at_t_renderings_all":
                          f1_at(rows["r"], [t_r_all] * len(rows["r"]))["f1"]}  # fmt: skip
    res["gate_b"] = res["r"]["routed"]["f1"] >= res["r"]["stored"]["f1"] + 0.005
    res["gate_c"] = res["raw"]["routed_count"] == 0
    res["install"] = bool(res["gate_b"] and res["gate_c"])
    print(f"exploration: t on raw {t_raw:.3f}, on all renderings {t_r_all:.3f} (their F1 there "
          f"{res['exploration']['renderings_f1_at_t_renderings_all']:.3f})")  # fmt: skip
    print(f"stored {stored:.3f}  t_R {t_r:.3f}  renderings routed {res['r']['routed_count']}/22: "
          f"F1 {res['r']['stored']['f1']:.3f} → {res['r']['routed']['f1']:.3f}  raw routed "
          f"{res['raw']['routed_count']}  (b) {res['gate_b']}  (c) {res['gate_c']}  "
          f"install: {res['install']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.install and res["install"]:
        install(args.model, t_r)


def install(model: str, t_r: float) -> None:
    """Write ``t_R`` into the metadata of ``model``'s file ('bundled': the bundled picker;
    weights and threshold unchanged)."""
    path = Path(read_picker(model)[1]["path"])
    detector, info = read_picker(path)
    meta = dict(info["metadata"]) | {
        PREDENOISED_KEY: round(float(t_r), 4),
        f"{PREDENOISED_KEY}_rule": "issue 18 session 14: the stored-threshold rule on the "
        "picker's validation renderings with Nyquist ratio < 0.11 (docs/benchmarks.md)",
    }  # fmt: skip
    save_picker(path, detector, float(info["diameter"]), float(info["threshold"]), meta)
    print(f"installed {PREDENOISED_KEY} = {meta[PREDENOISED_KEY]} in {path}")


if __name__ == "__main__":
    main()
