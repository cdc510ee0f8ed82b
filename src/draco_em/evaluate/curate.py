"""``draco evaluate curate``: score a ``curation.csv`` against labelled truth.

Binary metrics treat *accept* as the positive class (a true positive is a good micrograph that
was kept): accuracy, precision (kept micrographs that are good), recall (good micrographs that
were kept), F1 and the accept/reject balanced accuracy (the mean of the two recalls, as
``draco curate train``'s cross-validation reports it, so that the two can be compared; plain
accuracy flatters a head that accepts everything on a mostly good set). The confusion matrix
crosses the true class with the predicted class (the ``reason`` column: the most probable
accept class when accepted, reject class when rejected); the class-balanced accuracy is the
mean recall over its true classes. Predictions and truth are matched by micrograph file stem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from draco_em.errors import DracoInputError
from draco_em.io.classes import GOOD
from draco_em.io.labels import read_labels


class EvaluateCurateConfig(BaseModel):
    """Options of ``draco evaluate curate``."""

    model_config = ConfigDict(extra="forbid")

    pred: Path = Field(description="curation.csv written by `draco curate predict`.")
    truth: Path = Field(description="Labels: a micrographs STAR or CSV (as for training).")
    label_column: str | None = Field(None, description="Truth column holding the label.")
    accept: list[str] = Field(default_factory=lambda: [GOOD], description="Accept classes.")


def balanced_accuracy(good: np.ndarray, accepted: np.ndarray) -> float:
    """Accept/reject balanced accuracy: the mean of the accept rate of good micrographs and
    the reject rate of the others (over the sides present).

    Args:
        good: bool [N], the micrograph is good.
        accepted: bool [N], the micrograph was accepted.
    """
    good, accepted = np.asarray(good, bool), np.asarray(accepted, bool)
    parts = [np.mean(accepted[good])] if good.any() else []
    parts += [np.mean(~accepted[~good])] if (~good).any() else []
    return float(np.mean(parts))


def binary_metrics(truth_accept: np.ndarray, pred_accept: np.ndarray) -> dict[str, float | int]:
    """Accuracy, balanced accuracy, precision, recall, F1 with accept as positive, the 2×2 counts.

    Args:
        truth_accept: bool [N], the micrograph is good.
        pred_accept: bool [N], the micrograph was accepted.
    """
    t, p = np.asarray(truth_accept, bool), np.asarray(pred_accept, bool)
    tp, fp = int(np.sum(t & p)), int(np.sum(~t & p))
    fn, tn = int(np.sum(t & ~p)), int(np.sum(~t & ~p))
    n = len(t)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n,
        "accuracy": (tp + tn) / n if n else 0.0,
        "balanced_accuracy": balanced_accuracy(t, p) if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def confusion(truth: list[str], pred: list[str]) -> pd.DataFrame:
    """Counts of (true class, predicted class): rows true, columns predicted."""
    labels = list(dict.fromkeys([*truth, *pred]))
    table = pd.crosstab(pd.Series(truth, name="truth"), pd.Series(pred, name="predicted"))
    return table.reindex(index=labels, columns=labels, fill_value=0).loc[
        [c for c in labels if c in set(truth)]
    ]


def evaluate_curate(cfg: EvaluateCurateConfig) -> dict:
    """Match predictions to truth and compute the metrics.

    Raises:
        DracoInputError: unreadable files, a CSV without the curation columns, or no
            micrograph in common.
    """
    if not cfg.pred.is_file():
        what = "is a folder" if cfg.pred.is_dir() else "prediction table not found"
        raise DracoInputError(f"{what}: give curate predict's curation.csv", cfg.pred)
    try:
        pred = pd.read_csv(cfg.pred, dtype={"micrograph": str, "decision": str, "reason": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DracoInputError(f"unreadable CSV: {exc}", cfg.pred) from exc
    missing = {"micrograph", "decision", "reason"} - set(pred.columns)
    if missing:
        raise DracoInputError(f"not a curation.csv: missing columns {sorted(missing)}", cfg.pred)
    truth = read_labels(cfg.truth, cfg.label_column, check_files=False)
    true_by_stem = dict(zip(truth.stems, truth.labels, strict=True))
    stems = [Path(str(m)).stem for m in pred["micrograph"]]
    both = [i for i, s in enumerate(stems) if s in true_by_stem]
    if not both:
        raise DracoInputError("no micrograph of the predictions is in the truth labels", cfg.pred)
    t = [true_by_stem[stems[i]] for i in both]
    if not set(t) & set(cfg.accept):  # every micrograph a reject: precision and recall are 0
        raise DracoInputError(
            f"no truth label is an accept class {cfg.accept} (the labels: "
            f"{sorted(set(t))[:8]}): pass --accept with yours, or --label-column",
            cfg.truth,
        )
    decisions = pred["decision"].iloc[both]
    odd = sorted({str(d) for d in decisions if d not in ("accept", "reject")})
    if odd:  # else counted as rejects: a blank or "Accept" would pass for a right reject
        raise DracoInputError(
            f"decision must be accept or reject, found {odd[:5]} "
            f"({int((~decisions.isin(['accept', 'reject'])).sum())} rows)",
            cfg.pred,
        )
    p_class = [str(pred["reason"].iloc[i]) for i in both]
    p_accept = np.array([pred["decision"].iloc[i] == "accept" for i in both])
    out: dict[str, object] = dict(binary_metrics(np.isin(t, cfg.accept), p_accept))
    out["n_unmatched_pred"] = len(stems) - len(both)
    out["n_unmatched_truth"] = len(set(true_by_stem) - set(stems))
    cm = confusion(t, p_class)
    # Mean recall over the true classes (the confusion's diagonal), as cross-validation reports.
    recalls = [cm.at[c, c] / cm.loc[c].sum() for c in cm.index]
    out["class_balanced_accuracy"] = float(np.mean(recalls))
    out["confusion"] = {
        str(r): {str(c): int(v) for c, v in row.items()} for r, row in cm.iterrows()
    }
    out["misses"] = [stems[i] for k, i in enumerate(both) if p_accept[k] != (t[k] in cfg.accept)]
    return out


def format_report(result: dict) -> str:
    """Human-readable summary: the binary metrics, then the confusion matrix."""
    head = (
        f"n={result['n']}  accuracy {result['accuracy']:.4f}  balanced accuracy "
        f"{result['balanced_accuracy']:.4f}  precision "
        f"{result['precision']:.4f}  recall {result['recall']:.4f}  F1 {result['f1']:.4f}  "
        f"(accept = positive; tp {result['tp']} fp {result['fp']} fn {result['fn']} "
        f"tn {result['tn']})"
    )
    cm = pd.DataFrame(result["confusion"]).T.fillna(0).astype(int)
    cm.index.name, cm.columns.name = "truth", "predicted"
    lines = [head, f"class-balanced accuracy {result['class_balanced_accuracy']:.4f} (mean "
             "recall over the true classes)", "", cm.to_string()]  # fmt: skip
    counts = {"predictions": result.get("n_unmatched_pred", 0),
              "truth labels": result.get("n_unmatched_truth", 0)}  # fmt: skip
    said = [f"{n} {what}" for what, n in counts.items() if n]
    if said:
        lines += ["", f"not scored, no counterpart: {', '.join(said)}"]
    if result["misses"]:
        lines += ["", f"misses: {', '.join(result['misses'][:20])}"]
    return "\n".join(lines)
