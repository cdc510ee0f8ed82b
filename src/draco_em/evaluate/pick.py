"""Score particle picks against true centres: precision, recall, F1 and average precision.

Matching rule (the paper gives none, ``reference/draco_paper.md`` §2, so we state ours): within
each micrograph, predictions are taken by falling score and each is matched to the nearest
still-unmatched true centre within ``radius`` px (default: half the particle diameter). A
matched prediction is a true positive; every other prediction a false positive; every
unmatched true centre a false negative, including those of micrographs with no prediction file.
Counts are pooled over micrographs; predictions on micrographs absent from the truth are listed
(``pred_only``) and not scored. Micrographs are matched by file stem, then, for predictions
whose stem the truth lacks, without cryoSPARC's uid prefix and ``_patch_aligned`` suffix
(:func:`draco_em.io.coords.match_plain_names`).

Average precision: predictions of all micrographs sorted by score, precision P_k and recall R_k
at the k-th distinct score (all picks scoring at least it), AP = Σ_k (R_k − R_{k−1}) · P_k (the
step sum without interpolation, as scikit-learn's ``average_precision_score``; tied picks
form one step): the area under the precision-recall curve over
all thresholds, with recall capped by what the picks can reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial import cKDTree

from draco_em.errors import DracoInputError, counted
from draco_em.io.coords import match_plain_names, read_coord_folder


class EvaluatePickConfig(BaseModel):
    """``draco evaluate pick`` settings."""

    model_config = ConfigDict(extra="forbid")

    pred: Path = Field(description="Folder (or file) of predicted picks, any format.")
    truth: Path = Field(description="Folder (or file) of true centres.")
    radius: float | None = Field(None, gt=0, description="Match radius in px.")
    diameter: float | None = Field(None, gt=0, description="Particle diameter in Å.")
    pixel_size: float | None = Field(
        None, gt=0, description="Å/px of the picks' micrographs (with ``diameter``)."
    )
    diameter_px: float | None = Field(None, gt=0, description="Particle diameter in px.")
    threshold: float | None = Field(None, description="Drop predictions scoring below this.")


def match_picks(
    pred_xy: np.ndarray, scores: np.ndarray, true_xy: np.ndarray, radius: float
) -> np.ndarray:
    """One-to-one greedy matching by score; returns is-true-positive [N] in the input order."""
    return _greedy_match(pred_xy, scores, true_xy, radius)[0]


def matched_truth(
    pred_xy: np.ndarray, scores: np.ndarray, true_xy: np.ndarray, radius: float
) -> np.ndarray:
    """The same matching as :func:`match_picks`; returns is-found [M] for the true particles."""
    return _greedy_match(pred_xy, scores, true_xy, radius)[1]


def _greedy_match(
    pred_xy: np.ndarray, scores: np.ndarray, true_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions by falling score each take the nearest free true particle within radius.

    Returns (is-true-positive [N], is-taken [M])."""
    pred_xy = np.asarray(pred_xy, np.float64).reshape(-1, 2)
    true_xy = np.asarray(true_xy, np.float64).reshape(-1, 2)
    tp = np.zeros(len(pred_xy), bool)
    taken = np.zeros(len(true_xy), bool)
    if len(pred_xy) == 0 or len(true_xy) == 0:
        return tp, taken
    tree = cKDTree(true_xy)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        near = tree.query_ball_point(pred_xy[i], r=radius)
        free = [j for j in near if not taken[j]]
        if free:
            d = np.hypot(*(true_xy[free] - pred_xy[i]).T)
            taken[free[int(np.argmin(d))]] = tp[i] = True
    return tp, taken


def summarize(tp: np.ndarray, scores: np.ndarray, n_true: int) -> dict:
    """Pooled precision, recall, F1, AP and the best F1 over thresholds (with its threshold)."""
    tp, scores = np.asarray(tp, bool), np.asarray(scores, np.float64)
    n_tp, n_pred = int(tp.sum()), len(tp)
    p = n_tp / n_pred if n_pred else 0.0
    r = n_tp / n_true if n_true else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    order = np.argsort(-scores, kind="stable")
    cum = np.cumsum(tp[order])
    prec = cum / np.arange(1, n_pred + 1) if n_pred else np.zeros(0)
    rec = cum / n_true if n_true else np.zeros(n_pred)
    # A threshold can only cut between distinct scores: use the last pick of each tie group
    # (else AP and best F1 would depend on the order of tied picks in the file, e.g. picks
    # without scores; scikit-learn likewise takes one point per distinct score).
    last = np.r_[np.diff(scores[order]) != 0, True] if n_pred else np.zeros(0, bool)
    ap = float(np.sum(np.diff(np.r_[0.0, rec[last]]) * prec[last])) if n_pred else 0.0
    f1s = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    best = int(np.argmax(np.where(last, f1s, -1))) if n_pred else -1
    return {
        "precision": p, "recall": r, "f1": f1, "ap": ap,
        "n_pred": n_pred, "n_true": int(n_true), "n_tp": n_tp,
        "best_f1": float(f1s[best]) if n_pred else 0.0,
        "best_threshold": float(scores[order][best]) if n_pred else None,
    }  # fmt: skip


def evaluate_pick(cfg: EvaluatePickConfig) -> dict:
    """Score the picks in ``cfg.pred`` against ``cfg.truth`` (see module docstring)."""
    pred, truth = read_coord_folder(cfg.pred), read_coord_folder(cfg.truth)
    # picks exported from cryoSPARC name its copies of the micrographs (uid_name_patch_aligned)
    pred, _ = match_plain_names(pred, truth)
    radius = match_radius(cfg, [*pred.values(), *truth.values()])
    common = sorted(set(truth) & set(pred)) + sorted(set(truth) - set(pred))
    if not set(truth) & set(pred):
        for name, given, frames in (("--pred", cfg.pred, pred), ("--truth", cfg.truth, truth)):
            if not any(len(df) for df in frames.values()):  # no names to match: say why
                raise DracoInputError(f"{name} holds no coordinates", given)
        raise DracoInputError("no micrograph names in common between --pred and --truth")
    all_tp, all_scores, n_true = [], [], 0
    for stem in common:
        t = truth[stem][["x", "y"]].to_numpy(np.float64)
        p = pred.get(stem)
        n_true += len(t)
        if p is None or p.empty:
            continue
        s = _scores(p)
        if cfg.threshold is not None:
            p, s = p[s >= cfg.threshold], s[s >= cfg.threshold]
        all_tp.append(match_picks(p[["x", "y"]].to_numpy(np.float64), s, t, radius))
        all_scores.append(s)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    result = summarize(tp, scores, n_true)
    pred_only = sorted(set(pred) - set(truth))
    result.update(radius=radius, micrographs=len(common),
                  truth_only=sorted(set(truth) - set(pred)), pred_only=pred_only,
                  unscored_picks=sum(len(pred[m]) for m in pred_only))  # fmt: skip
    return result


def match_radius(cfg: EvaluatePickConfig, frames: list[pd.DataFrame]) -> float:
    """The match radius in px: ``radius``, else half of ``diameter_px``, else half of the
    diameter in Å over the pixel size (``pixel_size``, else one the picks carry, as ``.cs``
    files do).

    Raises:
        DracoInputError: no radius can be made, or the picks disagree on the pixel size.
    """
    given = [name for name, value in (("--radius", cfg.radius), ("--diameter-px",
             cfg.diameter_px), ("--diameter", cfg.diameter)) if value]  # fmt: skip
    if len(given) > 1:  # which one would win is not for the user to guess
        raise DracoInputError(f"give one of {' and '.join(given)}: each sets the match radius")
    if cfg.radius:
        return cfg.radius
    if cfg.diameter_px:
        return cfg.diameter_px / 2
    if cfg.diameter is None:
        raise DracoInputError("give --diameter Å (with --pixel-size), --diameter-px or --radius PX")
    px = cfg.pixel_size
    if px is None:
        carried = {
            round(float(v), 4)
            for df in frames
            if "pixel_size" in df.columns
            for v in pd.to_numeric(df["pixel_size"], errors="coerce").dropna()
            if v > 0
        }
        if len(carried) != 1:
            raise DracoInputError(
                "--diameter is in Å: give --pixel-size (the picks carry "
                + ("none)" if not carried else f"several: {sorted(carried)})")
            )
        px = carried.pop()
    return cfg.diameter / px / 2


def _scores(df: pd.DataFrame) -> np.ndarray:
    if "score" not in df.columns:
        return np.ones(len(df))
    return pd.to_numeric(df["score"], errors="coerce").fillna(1.0).to_numpy(np.float64)


def format_result(result: dict) -> str:
    """A short human-readable summary."""
    return (
        f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
        f"F1 {result['f1']:.3f}  AP {result['ap']:.3f}  (best F1 {result['best_f1']:.3f} at "
        f"score {result['best_threshold']})\n{result['n_tp']} of {result['n_pred']} picks match "
        f"{result['n_true']} true centres within {result['radius']:g} px on "
        f"{counted(result['micrographs'], 'micrograph')}"
        + (f"\n{counted(len(result['truth_only']), 'micrograph')} without predictions: their "
           "particles count as missed" if result["truth_only"] else "")
        + (f"\n{counted(result.get('unscored_picks', 0), 'pick')} on "
           f"{counted(len(result['pred_only']), 'micrograph')} without truth not scored (give "
           "--pred only the micrographs that have truth to score a subset)"
           if result.get("pred_only") else "")
    )  # fmt: skip
