"""`draco evaluate pick`: tied scores are one threshold (AP does not depend on file order); a
file without picks is said to be one."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick, summarize


def test_ap_of_tied_scores_does_not_depend_on_the_order_of_the_picks() -> None:
    # Two picks without scores (all 1.0), one true centre: a single threshold keeps both,
    # P = 1/2 at R = 1, so AP = 1/2 (scikit-learn's average_precision_score), in either order.
    scores = np.ones(2)
    for tp in ([False, True], [True, False]):
        assert summarize(np.array(tp), scores, 1)["ap"] == pytest.approx(0.5)


def test_ap_steps_only_at_distinct_scores() -> None:
    # Scores 0.9, 0.5, 0.5 (TP, FP, TP), 2 true centres: thresholds 0.9 (P 1, R 1/2) and
    # 0.5 (P 2/3, R 1) → AP = 1/2 · 1 + 1/2 · 2/3 = 5/6, whichever of the tied picks comes first.
    tp, scores = np.array([True, False, True]), np.array([0.9, 0.5, 0.5])
    assert summarize(tp, scores, 2)["ap"] == pytest.approx(5 / 6)
    assert summarize(tp[[0, 2, 1]], scores[[0, 2, 1]], 2)["ap"] == pytest.approx(5 / 6)


def test_a_pick_file_without_picks_is_named_not_a_name_mismatch(tmp_path) -> None:
    (tmp_path / "truth.txt").write_text("image_name\tx_coord\ty_coord\nm\t100\t100\n")
    (tmp_path / "pred.txt").write_text("image_name\tx_coord\ty_coord\tscore\n")
    cfg = EvaluatePickConfig(pred=tmp_path / "pred.txt", truth=tmp_path / "truth.txt", radius=5)
    with pytest.raises(DracoInputError, match="--pred holds no coordinates"):
        evaluate_pick(cfg)


def test_picks_exported_from_cryosparc_match_the_plain_truth(tmp_path) -> None:
    """cryoSPARC names its micrographs `<21-digit uid>_<name>_patch_aligned_doseweighted`:
    matched by exact stem only, such picks had "no micrograph names in common"."""
    (tmp_path / "truth.txt").write_text("image_name\tx_coord\ty_coord\nmic_1\t100\t100\n")
    name = "012345678901234567890_mic_1_patch_aligned_doseweighted"
    (tmp_path / "pred.txt").write_text(f"image_name\tx_coord\ty_coord\tscore\n{name}\t101\t99\t1\n")
    cfg = EvaluatePickConfig(pred=tmp_path / "pred.txt", truth=tmp_path / "truth.txt", radius=5)
    assert evaluate_pick(cfg)["f1"] == 1.0


def test_picks_on_micrographs_without_truth_are_said_to_be_unscored(tmp_path) -> None:
    """Picks on micrographs the truth does not cover were left out of the score without a
    word (421 picks in a QA run that scored 2 of 11 EMPIAR-10017 micrographs); and one
    micrograph read "1 micrographs" (QA, session 25)."""
    from draco_em.evaluate.pick import format_result

    (tmp_path / "truth.txt").write_text("image_name\tx_coord\ty_coord\nmic_1\t100\t100\n")
    (tmp_path / "pred.txt").write_text("image_name\tx_coord\ty_coord\tscore\nmic_1\t101\t99\t1\n"
                                       "mic_2\t50\t50\t1\nmic_2\t80\t80\t1\n")  # fmt: skip
    cfg = EvaluatePickConfig(pred=tmp_path / "pred.txt", truth=tmp_path / "truth.txt", radius=5)
    result = evaluate_pick(cfg)
    assert (result["f1"], result["unscored_picks"]) == (1.0, 2)
    text = format_result(result)
    assert "on 1 micrograph\n" in text
    assert "2 picks on 1 micrograph without truth not scored" in text
