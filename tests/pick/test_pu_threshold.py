"""The stored threshold under incomplete labels (positive-unlabelled validation micrographs)."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.evaluate.pick import summarize
from draco_em.pick.threshold import labelled_fraction, threshold_from_matches


def partially_labelled(rng: np.random.Generator, share: float):
    """1000 particles scoring U(0.5, 1) and 1000 false peaks scoring U(0, 0.5); a random
    ``share`` of the particles is labelled: (tp flags vs labels, scores, n_labelled, truth)."""
    n = 1000
    scores = np.concatenate([rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n)])
    particle = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    labelled = particle & (rng.random(2 * n) < share)
    return labelled, scores, int(labelled.sum()), particle


@pytest.mark.parametrize("share", [0.05, 0.1])  # 200 picks of ~2000 particles: 0.1
def test_pu_corrected_threshold_holds_where_the_naive_one_is_too_high(share):
    rng = np.random.default_rng(0)
    tp, scores, n_lab, particle = partially_labelled(rng, share)
    c = labelled_fraction(n_lab, 1, 1000.0)  # 1000 particles expected on one micrograph
    assert c == pytest.approx(share, abs=0.05)
    pu = threshold_from_matches(tp, scores, n_lab, c)
    naive = threshold_from_matches(tp, scores, n_lab)
    true_f1 = {t: summarize(particle[scores >= t], scores[scores >= t], 1000)["f1"]
               for t in (pu, naive)}  # fmt: skip
    # the separating cut-off is 0.5: the PU choice finds it, the naive one keeps only the top
    assert abs(pu - 0.5) < 0.05 and true_f1[pu] > 0.97
    assert naive > pu + 0.1 and true_f1[naive] < true_f1[pu] - 0.1


def test_complete_labels_give_the_same_threshold_either_way():
    rng = np.random.default_rng(1)
    tp, scores, n_lab, _ = partially_labelled(rng, 1.0)
    assert labelled_fraction(n_lab, 1, None) == 1.0
    assert labelled_fraction(n_lab, 1, 500.0) == 1.0  # more labels than expected: clipped to 1
    same = threshold_from_matches(tp, scores, n_lab, labelled_fraction(n_lab, 1, 1000.0))
    assert same == pytest.approx(threshold_from_matches(tp, scores, n_lab))
    assert abs(same - 0.5) < 0.08
