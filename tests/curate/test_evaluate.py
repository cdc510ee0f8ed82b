"""``draco evaluate curate``: metrics checked against a hand computation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.evaluate.curate import EvaluateCurateConfig, binary_metrics, evaluate_curate


def test_binary_metrics_by_hand() -> None:
    # truth good: 1 1 1 0 0 ; accepted: 1 1 0 1 0 → tp 2, fn 1, fp 1, tn 1
    m = binary_metrics([1, 1, 1, 0, 0], [1, 1, 0, 1, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    pred = tmp_path / "curation.csv"
    pd.DataFrame(
        {
            "micrograph": ["m/a.mrc", "m/b.mrc", "m/c.mrc", "m/d.mrc", "m/extra.mrc"],
            "p_accept": [0.9, 0.2, 0.7, 0.1, 0.5],
            "decision": ["accept", "reject", "accept", "reject", "accept"],
            "reason": ["good", "drift", "good", "empty", "good"],
        }
    ).to_csv(pred, index=False)
    truth = tmp_path / "truth.csv"
    pd.DataFrame(
        {
            "micrograph": ["a.mrc", "b.mrc", "c.mrc", "d.mrc", "e.mrc"],
            "label": ["good", "drift", "empty", "good", "good"],
        }
    ).to_csv(truth, index=False)
    return pred, truth


def test_evaluate_matches_by_stem_and_builds_the_confusion(tmp_path: Path) -> None:
    pred, truth = _files(tmp_path)
    r = evaluate_curate(EvaluateCurateConfig(pred=pred, truth=truth))
    # a: good→accept (tp), b: drift→reject (tn), c: empty→accept (fp), d: good→reject (fn)
    assert (r["tp"], r["tn"], r["fp"], r["fn"]) == (1, 1, 1, 1) and r["n"] == 4
    assert r["n_unmatched_pred"] == 1 and r["n_unmatched_truth"] == 1
    assert r["confusion"]["empty"]["good"] == 1 and r["confusion"]["good"]["empty"] == 1
    assert r["confusion"]["drift"]["drift"] == 1
    assert sorted(r["misses"]) == ["c", "d"]


def test_evaluate_refuses_a_foreign_csv(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    _, truth = _files(tmp_path)
    with pytest.raises(DracoInputError, match=r"not a curation\.csv"):
        evaluate_curate(EvaluateCurateConfig(pred=bad, truth=truth))


def test_truth_without_an_accept_class_is_refused_and_unmatched_are_said(tmp_path: Path) -> None:
    """MicAssess's class column (Great, Decent, …) has no 'good': every micrograph would
    count as a reject and precision and recall read 0; refused, naming the labels found."""
    from draco_em.evaluate.curate import format_report

    pred, truth = _files(tmp_path)
    r = evaluate_curate(EvaluateCurateConfig(pred=pred, truth=truth))
    assert "not scored, no counterpart: 1 predictions, 1 truth labels" in format_report(r)
    pd.DataFrame({"micrograph": ["a.mrc", "b.mrc"], "label": ["Great", "Crystalline_ice"]}).to_csv(
        truth, index=False
    )
    with pytest.raises(DracoInputError, match=r"no truth label is an accept class \['good'\]"):
        evaluate_curate(EvaluateCurateConfig(pred=pred, truth=truth))
