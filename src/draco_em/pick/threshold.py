"""The picker's stored threshold, chosen on validation micrographs: matches of its peaks to the
labels, the F1 curve (positive-unlabelled corrected where the expected particle count is
known) and the cut-off with near-best F1, and the lines that report them.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from draco_em.evaluate.pick import match_picks, summarize
from draco_em.pick.data import Example
from draco_em.pick.nms import find_peaks
from draco_em.pick.predict import Picker

F1_TOLERANCE = 0.02  # cut-offs this close to the best validation F1 are equally good


THRESHOLD_RANGE = (0.02, 0.98)  # stored thresholds stay inside (peaks are found from 0.02)


def no_label_found_warning(threshold: float, result: dict) -> str | None:
    """A line when the trained picker finds none of the validation labels at its stored
    threshold: it has not learnt the particles (e.g. 5 picks on one EMPIAR-10017 micrograph
    without ``--expected-particles``: recall 0 on its own training micrograph, 0 picks on
    another), and its picks would be empty or chance."""
    n_true = int(result.get("n_true") or 0)
    if not n_true or (result.get("at_threshold") or {}).get("n_tp", 0):
        return None
    return (
        f"the trained picker finds none of the {n_true} labelled particles of its validation "
        f"micrograph(s) at its stored threshold {threshold:.3f} (best F1 "
        f"{result.get('best_f1') or 0.0:.3f}): it has not learnt them; check --diameter, label "
        "more (about 200 picks on 3 micrographs) or give --expected-particles N"
    )


def validation_matches(
    picker: Picker, examples: list[Example], progress: bool = False
) -> tuple[np.ndarray, np.ndarray, int]:
    """(true-positive flags, scores) of every peak ≥ 0.02 on ``examples``, matched one-to-one
    within d/2 working px, and the number of true particles."""
    tps, scores, n_true = [], [], 0
    for ex in tqdm(examples, desc="validate", unit="mic", disable=not progress):
        score, _vec = picker.score_map(ex.image)
        xy, s = find_peaks(score, 0.5 * picker.diameter_px, THRESHOLD_RANGE[0])
        tps.append(match_picks(xy, s, ex.xy, 0.5 * picker.diameter_px))
        scores.append(s)
        n_true += len(ex.xy)
    return np.concatenate(tps), np.concatenate(scores), n_true


def labelled_fraction(n_labelled: int, n_micrographs: int, expected: float | None) -> float:
    """Share c of the particles that carry a label: labelled / (expected per micrograph × the
    micrographs), clipped to (0, 1]; 1 (complete labels) when the expected count is unknown."""
    if not expected or n_micrographs == 0 or n_labelled == 0:
        return 1.0
    return float(min(1.0, n_labelled / (expected * n_micrographs)))


def threshold_from_matches(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float = 1.0
) -> float:
    """The middle of the cut-offs whose F1 is within :data:`F1_TOLERANCE` of the best.

    With incomplete labels (positive-unlabelled validation data) a pick that matches no label
    may be an unlabelled particle, so the naive F1 = 2·TP / (picks + labelled) undercounts
    precision and its best cut-off is too high (it keeps only the most confident picks). If the
    labels are a random share ``fraction`` = c of the particles (Elkan & Noto 2008's
    "selected completely at random"), the matched picks estimate c times the true positives, so
    TP̂ = TP / c and the particle count N̂ = labelled / c, and the F1 estimate is
    2·TP̂ / (picks + N̂) = 2·TP / (c · picks + labelled). Recall (TP / labelled) needs no
    correction. ``fraction`` = 1 is the complete-label F1.

    Args:
        tp: [N] whether each peak matched a labelled particle.
        scores: [N] the peaks' scores.
        n_labelled: labelled particles on the validation micrographs.
        fraction: c in (0, 1], e.g. :func:`labelled_fraction`.
    """
    if not len(scores) or not n_labelled:
        return 0.5
    ranked, f1, _recall = f1_curve(tp, scores, n_labelled, fraction)
    near = ranked[f1 >= f1.max() - F1_TOLERANCE]
    return float(np.clip(0.5 * (near.min() + near.max()), *THRESHOLD_RANGE))


def pu_f1(n_tp, n_picks, n_labelled: int, fraction: float = 1.0):
    """The F1 estimate 2·TP / (c · picks + labelled) of :func:`threshold_from_matches`
    (scalars or arrays); ``fraction`` c = 1: the F1 against the labels.

    It passes 1 where c is too small (more of the particles labelled than the expected count
    says: the labels are found with fewer picks than particles expected); figures shown to the
    user are clipped to 1 (:func:`shown_f1`), the threshold rule takes it as it is."""
    return 2 * n_tp / (fraction * n_picks + n_labelled)


def shown_f1(f1: float) -> float:
    """An F1 estimate as the user is shown it: at most 1 (:func:`pu_f1`)."""
    return float(min(f1, 1.0))


def f1_curve(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N] falling, :func:`pu_f1` [N] and recall of the labels [N] when the cut-off
    keeps the picks down to each) of peaks ``tp`` [N] (matched a label?) and ``scores`` [N]."""
    order = np.argsort(-scores, kind="stable")
    cum = np.cumsum(tp[order])
    f1 = pu_f1(cum, np.arange(1, len(scores) + 1), n_labelled, fraction)
    return scores[order], f1, cum / max(n_labelled, 1)


def epoch_validation(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float | None
) -> str:
    """Each epoch's validation figures, for its line: the best F1 by the rule that will choose
    the stored threshold (PU-corrected with labelled ``fraction`` c, from
    ``--expected-particles``; None: against the labels) and the recall of the labels at that
    cut-off (it needs no correction). :func:`epoch_validation_note` says what they mean."""
    if not len(scores) or not n_labelled:
        return "val: no peak on the labels"
    _, f1, recall = f1_curve(tp, scores, n_labelled, fraction or 1.0)
    best = int(np.argmax(f1))
    how = "PU-corrected" if fraction is not None else "against the labels"
    return f"val F1 {shown_f1(f1[best]):.3f} ({how}), label recall {recall[best]:.3f}"


def epoch_validation_note(fraction: float | None) -> str:
    """What each epoch's ``val F1`` is (said once, before the first epoch)."""
    if fraction is not None:
        return (
            f"each epoch's val F1 is the PU-corrected estimate by which the threshold is "
            f"chosen (the labels taken as {fraction:.0%} of the particles, from "
            "--expected-particles), at its best cut-off; label recall: the share of the "
            "labels found there"
        )
    return (
        "each epoch's val F1 is measured against the labels: a pick on an unlabelled "
        "particle counts as false, so with incomplete labels it reads low (its best is "
        "about 2c/(1+c) when a share c of the particles is labelled); the recall of the "
        "labels beside it needs no correction; give --expected-particles N (particles per "
        "micrograph) for the PU-corrected F1 and a threshold chosen by it"
    )


def choose_threshold(
    picker: Picker,
    examples: list[Example],
    progress: bool = False,
    expected_particles: float | None = None,
) -> tuple[float, dict]:
    """A score cut-off with near-best F1 on ``examples`` (matched within d/2 working px).

    Validation sets are small (often one micrograph), so the single best cut-off is noisy and
    tends to sit at the edge of a plateau. We take the middle of the range of cut-offs whose
    F1 is within :data:`F1_TOLERANCE` of the best. With ``expected_particles`` (per
    micrograph) the F1 is the positive-unlabelled estimate of :func:`threshold_from_matches`,
    with the labelled fraction c = labelled / (expected × micrographs); the summary then also
    gives ``labelled_fraction``.
    """
    tp, s, n_true = validation_matches(picker, examples, progress)
    # precision/recall/f1 count every peak ≥ THRESHOLD_RANGE[0] (no cut-off); "at_threshold"
    # holds them at the stored cut-off (run.log labels each: issue 16).
    result = summarize(tp, s, n_true)
    if not len(s) or not n_true:
        return 0.5, result
    c = labelled_fraction(n_true, len(examples), expected_particles)
    if expected_particles:
        result["labelled_fraction"] = c
    threshold = threshold_from_matches(tp, s, n_true, c)
    at = summarize(tp[s >= threshold], s[s >= threshold], n_true)
    result["at_threshold"] = {k: at[k] for k in ("precision", "recall", "f1", "n_pred", "n_tp")}
    if expected_particles:  # the figure the threshold was chosen by, at it
        result["at_threshold"]["f1_pu"] = shown_f1(pu_f1(at["n_tp"], at["n_pred"], n_true, c))
    return threshold, result


def threshold_line(threshold: float, result: dict) -> str:
    """The run.log line of the chosen threshold, each F1 labelled with the cut-off it is at."""
    at = result.get("at_threshold")
    if at is None:
        return f"stored threshold {threshold:.3f} (no validation picks: the default)"
    how = (
        f"the PU-corrected F1 with labelled fraction {result['labelled_fraction']:.3f}"
        if "labelled_fraction" in result
        else f"the middle of the cut-offs within {F1_TOLERANCE} F1 of the best"
    )
    pu = f"PU-corrected F1 {at['f1_pu']:.3f} at it; " if "f1_pu" in at else ""
    return (
        f"stored threshold {threshold:.3f} ({how}): {pu}validation F1 {at['f1']:.3f} at it "
        f"(precision {at['precision']:.3f}, recall {at['recall']:.3f}, against the labels); "
        f"best F1 {result['best_f1']:.4f} at {result['best_threshold']:.3f}; AP "
        f"{result['ap']:.3f}; F1 {result['f1']:.3f} over every peak ≥ {THRESHOLD_RANGE[0]} "
        "(no cut-off)"
    )


def density_threshold(scores: np.ndarray, count: float) -> float:
    """The cut-off that keeps ``count`` (rounded) of the peak ``scores`` [N], inside
    :data:`THRESHOLD_RANGE` (the top of it when no peak is to be kept, the bottom when more
    are asked for than there are)."""
    k = round(count)
    ranked = np.sort(np.asarray(scores, np.float64))[::-1]
    if k <= 0:
        return THRESHOLD_RANGE[1]
    cut = ranked[k - 1] if k <= len(ranked) else THRESHOLD_RANGE[0]
    return float(np.clip(cut, *THRESHOLD_RANGE))
