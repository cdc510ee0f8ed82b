"""`draco evaluate curate`: the balanced accuracies of `curate train`'s cross-validation, and
decisions that are neither accept nor reject refused (not counted as rejects)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.evaluate.curate import EvaluateCurateConfig, binary_metrics, evaluate_curate


def test_balanced_accuracy_by_hand() -> None:
    # 4 good (3 accepted), 1 bad (accepted): accuracy 3/5 flatters; balanced = (3/4 + 0/1) / 2.
    m = binary_metrics([1, 1, 1, 1, 0], [1, 1, 1, 0, 1])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx(3 / 8)


def test_class_balanced_accuracy_is_the_mean_recall_over_true_classes(tmp_path: Path) -> None:
    pred, truth = tmp_path / "curation.csv", tmp_path / "truth.csv"
    labels = ["good", "good", "good", "ice", "ice", "drift"]
    said = ["good", "good", "ice", "ice", "drift", "drift"]
    decision = ["accept" if c == "good" else "reject" for c in said]
    names = [f"m{i}.mrc" for i in range(6)]
    pd.DataFrame({"micrograph": names, "decision": decision, "reason": said}).to_csv(pred)
    pd.DataFrame({"micrograph": names, "label": labels}).to_csv(truth, index=False)
    r = evaluate_curate(EvaluateCurateConfig(pred=pred, truth=truth))
    assert r["class_balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)


def test_a_blank_or_unknown_decision_is_refused(tmp_path: Path) -> None:
    pred, truth = tmp_path / "curation.csv", tmp_path / "truth.csv"
    pred.write_text("micrograph,decision,reason\na.mrc,,\nb.mrc,Accept,good\nc.mrc,accept,good\n")
    truth.write_text("micrograph,label\na.mrc,ice\nb.mrc,good\nc.mrc,good\n")
    with pytest.raises(DracoInputError, match="accept or reject"):
        evaluate_curate(EvaluateCurateConfig(pred=pred, truth=truth))
