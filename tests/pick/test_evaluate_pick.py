"""`draco evaluate pick`: one-to-one greedy matching by score, P/R/F1 and AP by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.errors import DracoInputError
from draco_em.evaluate.pick import (
    EvaluatePickConfig,
    evaluate_pick,
    match_picks,
    matched_truth,
    summarize,
)
from draco_em.io.coords import make_coords, write_cs, write_relion_coords, write_topaz

TRUTH = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
PRED = np.array([[1.0, 0.0], [0.0, 1.0], [10.0, 2.0], [50.0, 50.0]])
SCORES = np.array([0.9, 0.8, 0.7, 0.6])


def test_hand_example_precision_recall_f1_ap():
    tp = match_picks(PRED, SCORES, TRUTH, radius=3.0)
    # The 2nd pick is also within 3 px of (0, 0), but that centre is taken: one-to-one.
    assert tp.tolist() == [True, False, True, False]
    r = summarize(tp, SCORES, len(TRUTH))
    assert (r["n_tp"], r["n_pred"], r["n_true"]) == (2, 4, 3)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Steps: TP (P=1, R=1/3), FP, TP (P=2/3, R=2/3), FP → AP = 1/3·1 + 1/3·2/3 = 5/9.
    assert r["ap"] == pytest.approx(5 / 9)
    assert r["best_f1"] == pytest.approx(2 / 3)
    assert r["best_threshold"] == pytest.approx(0.7)


def test_matched_truth_is_the_same_matching_seen_from_the_truth():
    found = matched_truth(PRED, SCORES, TRUTH, radius=3.0)
    assert found.tolist() == [True, True, False]  # (0,0) by the 1st pick, (10,0) by the 3rd
    assert found.sum() == match_picks(PRED, SCORES, TRUTH, radius=3.0).sum()
    assert matched_truth(np.zeros((0, 2)), np.zeros(0), TRUTH, 3.0).tolist() == [False] * 3


def test_greedy_by_score_not_by_distance():
    tp = match_picks(np.array([[2.0, 0.0], [0.0, 0.0]]), np.array([0.9, 0.5]), TRUTH[:1], 3.0)
    assert tp.tolist() == [True, False]  # the better-scored pick wins though it is farther


def test_match_nearest_free_centre_and_radius_edge():
    tp = match_picks(np.array([[6.0, 0.0]]), np.array([1.0]), np.array([[0, 0], [9, 0]]), 5.0)
    assert tp.tolist() == [True]
    assert not match_picks(np.array([[3.01, 0.0]]), np.ones(1), TRUTH[:1], 3.0).any()


def test_empty_inputs():
    r = summarize(np.zeros(0, bool), np.zeros(0), 5)
    assert r["precision"] == 0 and r["recall"] == 0 and r["f1"] == 0 and r["ap"] == 0


def _write(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    write_relion_coords(truth / "m1.star", make_coords("m1", TRUTH[:, 0], TRUTH[:, 1]))
    write_relion_coords(truth / "m2.star", make_coords("m2", [5.0], [5.0]))  # no preds: a FN
    write_topaz(pred / "picks.txt", make_coords("m1", PRED[:, 0], PRED[:, 1], score=SCORES))
    return pred, truth


def test_folders_pool_micrographs(tmp_path):
    pred, truth = _write(tmp_path)
    r = evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth, diameter_px=6.0))
    assert r["radius"] == 3.0 and r["micrographs"] == 2
    assert (r["n_tp"], r["n_pred"], r["n_true"]) == (2, 4, 4)
    r = evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth, radius=3.0, threshold=0.75))
    assert (r["n_tp"], r["n_pred"]) == (1, 2)


def test_cli_json_and_errors(tmp_path):
    pred, truth = _write(tmp_path)
    res = CliRunner().invoke(app, ["evaluate", "pick", "--pred", str(pred), "--truth",
                                   str(truth), "--radius", "3", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ap"] == pytest.approx((1 / 4) * 1 + (1 / 4) * (2 / 3))
    with pytest.raises(DracoInputError, match="radius"):
        evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth))
    with pytest.raises(DracoInputError):
        evaluate_pick(EvaluatePickConfig(pred=tmp_path / "nope", truth=truth, radius=3))
    with pytest.raises(DracoInputError, match="give one of --radius and --diameter-px"):
        evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth, radius=10.0, diameter_px=30.0))


def test_diameter_is_in_angstrom(tmp_path):
    """Issue 16: --diameter is in Å everywhere; the radius is d / pixel size / 2."""
    pred, truth = _write(tmp_path)
    r = evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth, diameter=12.0, pixel_size=2.0))
    assert r["radius"] == 3.0 and r["n_tp"] == 2
    with pytest.raises(DracoInputError, match="pixel-size"):  # Å without a pixel size
        evaluate_pick(EvaluatePickConfig(pred=pred, truth=truth, diameter=12.0))
    res = CliRunner().invoke(app, ["evaluate", "pick", "--pred", str(pred), "--truth",
                                   str(truth), "--diameter", "12", "--pixel-size", "2",
                                   "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["radius"] == 3.0


def test_diameter_pixel_size_from_cs_picks(tmp_path):
    """A .cs file carries the pixel size: --diameter in Å needs nothing more."""
    _, truth = _write(tmp_path)
    cs_dir = tmp_path / "cs"
    cs_dir.mkdir()
    picks = make_coords("m1", PRED[:, 0], PRED[:, 1], score=SCORES)
    picks["micrograph_ny"], picks["micrograph_nx"] = 100, 100
    write_cs(cs_dir / "picks.cs", picks, pixel_size=2.0)
    r = evaluate_pick(EvaluatePickConfig(pred=cs_dir, truth=truth, diameter=12.0))
    assert r["radius"] == pytest.approx(3.0) and r["n_tp"] == 2
