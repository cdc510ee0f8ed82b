"""Image statistics as a head's feature block, and the cross-validation ``curate train`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from draco_em.curate.config import CuratePredictConfig, CurateTrainConfig, FeatureConfig
from draco_em.curate.features import n_features
from draco_em.curate.head import load_curator
from draco_em.curate.mask import curation_exclude
from draco_em.curate.predict import predict_curation
from draco_em.curate.stats import N_STATS, image_statistics
from draco_em.curate.train import (
    L2_GRID,
    block_columns,
    cross_validate,
    n_folds,
    select_blocks,
    select_settings,
    stratified_folds,
    train_curator,
)
from draco_em.errors import DracoInputError
from tests.conftest import draco_in_process
from tests.curate.conftest import toy_micrograph


def _cfg(labels: Path, out: Path, encoder: Path, **kw: object) -> CurateTrainConfig:
    blocks = kw.pop("blocks", "stats")
    return CurateTrainConfig(
        labels=labels, out_dir=out, weights=str(encoder), progress=False, device="cpu",
        features=FeatureConfig(tile=64, blocks=blocks), **kw,
    )  # fmt: skip


def test_statistics_do_not_depend_on_intensity_units() -> None:
    img = toy_micrograph(np.random.default_rng(0), contaminated=True)
    a = image_statistics(img)
    assert a.shape == (N_STATS,) and np.isfinite(a).all()
    # an 8-bit rendering of the same image in other units (scale, offset) gives the same values
    np.testing.assert_allclose(image_statistics(3.7 * img - 250.0), a, rtol=1e-4, atol=1e-4)
    assert np.isfinite(image_statistics(np.zeros((64, 64)))).all()  # a blank frame: no NaN


def test_statistics_see_dark_contamination() -> None:
    rng = np.random.default_rng(1)
    clean = np.mean([image_statistics(toy_micrograph(rng, False))[11 - 2] for _ in range(4)])
    dirty = np.mean([image_statistics(toy_micrograph(rng, True))[11 - 2] for _ in range(4)])
    # index 9 = share of pixels below -3 sigma: near 0.1 % for noise, ~10 % with dark discs
    assert clean < 0.005 < 0.05 < dirty


def test_vector_lengths_per_block() -> None:
    e = 32
    assert n_features(e, FeatureConfig(blocks="encoder")) == 2 * e + 8
    assert n_features(e, FeatureConfig(blocks="stats")) == N_STATS + 8
    assert n_features(e, FeatureConfig(blocks="both")) == 2 * e + N_STATS + 8
    assert n_features(e, FeatureConfig(blocks="stats", spectrum=False)) == N_STATS


def test_stratified_folds_keep_class_shares() -> None:
    y = np.array([0] * 6 + [1] * 9 + [2] * 3)
    fold = stratified_folds(y, 3, seed=0)
    for f in range(3):
        assert np.bincount(y[fold == f], minlength=3).tolist() == [2, 3, 1]
    assert sorted(stratified_folds(y, len(y), 0)) == list(range(len(y)))  # leave-one-out
    assert n_folds("auto", 18) == 18 and n_folds("auto", 500) == 5
    assert n_folds("loo", 7) == 7 and n_folds(0, 100) == 0 and n_folds(10, 4) == 4


def test_stats_head_trains_cross_validates_and_predicts_without_the_encoder(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    s = train_curator(_cfg(toy_set / "labels.csv", run, tiny_encoder, accept=["clean"], cv="loo"))
    cv = s["cv"]
    assert cv["folds"] == "leave-one-out" and cv["balanced_accuracy"] >= 0.9
    assert cv["per_class"] == {
        "clean": {"n": 8, "decision_right": cv["per_class"]["clean"]["decision_right"],
                  "class_right": cv["per_class"]["clean"]["class_right"]},
        "dirty": {"n": 8, "decision_right": cv["per_class"]["dirty"]["decision_right"],
                  "class_right": cv["per_class"]["dirty"]["class_right"]},
    }  # fmt: skip
    table = pd.read_csv(run / "cv_predictions.csv")
    assert len(table) == 16 and set(table["fold"]) == set(range(16))
    right = (table["decision"] == "accept") == (table["label"] == "clean")
    assert right.mean() == pytest.approx(cv["balanced_accuracy"])  # balanced set: same number
    assert "cross-validation (leave-one-out folds" in (run / "run.log").read_text()
    curator = load_curator(run)
    assert curator.features.blocks == "stats"
    assert curator.head.linear.weight.shape == (2, N_STATS + 8)
    # the encoder never ran: statistics cached, no token cache
    assert not list((run / "features").glob("*.npz"))
    assert len(list((run / "features").glob("*-stats-*.npy"))) == 16
    pred = predict_curation(
        CuratePredictConfig(
            inputs=[str(toy_set / "mics")], out_dir=tmp_path / "p", model=str(run),
            progress=False, device="cpu",
        )
    )  # fmt: skip
    names = pred.table["micrograph"].str.extract(r"toy_(\d+)")[0].astype(int)
    assert ((pred.table["decision"] == "accept") == (names % 2 == 0)).all()
    with pytest.raises(DracoInputError, match="single tiles"):
        curation_exclude(run)


def test_cross_validation_is_out_of_fold(toy_set: Path, tiny_encoder: Path, tmp_path: Path) -> None:
    """Labels unrelated to the images: a head fits them, its held-out predictions cannot."""
    rng = np.random.default_rng(3)
    frame = pd.read_csv(toy_set / "labels.csv")
    frame["micrograph"] = [str(toy_set / m) for m in frame["micrograph"]]
    frame["label"] = rng.permutation(["clean"] * 8 + ["dirty"] * 8)
    labels = tmp_path / "random.csv"
    frame.to_csv(labels, index=False)
    s = train_curator(
        _cfg(labels, tmp_path / "r", tiny_encoder, accept=["clean"], cv=4, l2=0.0, blocks="both")
    )
    assert s["train_accuracy"] == 1.0  # 104 features, 16 micrographs: fits anything
    assert s["cv"]["folds"] == 4 and s["cv"]["balanced_accuracy"] <= 0.75


def test_cli_features_and_cv(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from typer.testing import CliRunner

    from draco_em.cli import app

    args = ["curate", "train", "--labels", str(toy_set / "labels.csv"), "--weights",
            str(tiny_encoder), "--accept", "clean", "--device", "cpu", "-q"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a"), "--features", "both"])
    assert res.exit_code == 0, res.output
    assert "cross-validation (leave-one-out): balanced accuracy" in res.output
    assert load_curator(tmp_path / "a").features.blocks == "both"
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b"), "--cv", "0"])
    assert res.exit_code == 0 and "cross-validation" not in res.output
    code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "c", "--features", "pixels")
    assert code == 2 and "pixels" in err and "Traceback" not in err  # typer: a usage error


def test_auto_chooses_the_block_that_carries_the_signal(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    e, n = 4, 36
    y = np.repeat([0, 1, 2], n // 3)
    cfg = FeatureConfig(blocks="auto")
    cols = block_columns(e, cfg)
    assert len(cols["both"]) == 2 * e + N_STATS + 8
    tcfg = CurateTrainConfig(labels=Path("x.csv"), out_dir=tmp_path, features=cfg)
    for signal in ("stats", "encoder"):
        x = rng.normal(size=(n, len(cols["both"])))
        own = np.setdiff1d(cols[signal], cols["encoder" if signal == "stats" else "stats"])
        x[:, own[:3]] += 8.0 * np.eye(3)[y]  # class written into 3 columns of that block only
        best, scores = select_blocks(torch.from_numpy(x).float(), y, cols, 3, tcfg, [0], 4)
        assert best == signal and scores[signal] >= 0.9, scores
    # nested: each outer fold chose a block; the choice is recorded
    r = cross_validate(torch.from_numpy(x).float(), y, ["good", "a", "b"], [0], tcfg, 4,
                       ["-"] * n, cols)  # fmt: skip
    assert sum(r["blocks_chosen_per_fold"].values()) == 4 and r["balanced_accuracy"] >= 0.9


def test_auto_head_records_the_chosen_block(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    s = train_curator(
        _cfg(toy_set / "labels.csv", tmp_path, tiny_encoder, accept=["clean"], cv=4,
             blocks="auto")
    )  # fmt: skip
    chosen = s["block_selection"]["chosen"]
    assert chosen in {"encoder", "stats", "both"} and s["blocks"] == chosen
    assert sum(s["cv"]["blocks_chosen_per_fold"].values()) == 4
    curator = load_curator(tmp_path)
    assert curator.features.blocks == chosen
    assert curator.head.linear.weight.shape[1] == n_features(32, curator.features)


def test_l2_auto_is_chosen_by_cross_validation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, y = 24, np.repeat([0, 1, 2], 8)
    x = rng.normal(size=(n, 10))
    x[:, 0] += 4.0 * (y == 0)  # good vs the rest in one column
    tcfg = CurateTrainConfig(labels=Path("x.csv"), out_dir=tmp_path, l2="auto")
    block, l2, scores = select_settings(torch.from_numpy(x).float(), y, None, 3, tcfg, [0], 4,
                                        L2_GRID)  # fmt: skip
    assert block is None and l2 in L2_GRID
    assert set(scores) == {f"all, l2 {v:g}" for v in L2_GRID}
    best = max(scores.values())  # the best score; among equals, the larger penalty
    assert l2 == max(v for v in L2_GRID if scores[f"all, l2 {v:g}"] == best)
    r = cross_validate(torch.from_numpy(x).float(), y, ["good", "a", "b"], [0], tcfg, 4,
                       ["-"] * n, None, L2_GRID)  # fmt: skip
    assert sum(r["l2_chosen_per_fold"].values()) == 4 and "blocks_chosen_per_fold" not in r


def test_cli_l2_auto_and_bad_values(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["curate", "train", "--labels", str(toy_set / "labels.csv"), "--weights",
            str(tiny_encoder), "--accept", "clean", "--device", "cpu", "-q",
            "--cv", "4"]  # fmt: skip
    code, _, _ = draco_in_process(capsys, *args, "-o", tmp_path / "a", "--l2", "auto")
    assert code == 0
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["l2"] in L2_GRID and s["block_selection"]["l2"] == s["l2"]
    assert sum(s["cv"]["l2_chosen_per_fold"].values()) == 4
    code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "f", "--l2", "auto",
                                    "--features", "encoder", "--finetune", "1")  # fmt: skip
    assert code == 2 and "--l2 auto needs the frozen encoder" in err
    for bad in ("lots", "-1"):
        code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "b", "--l2", bad)
        assert code == 2 and "l2" in err and len(err.strip().splitlines()) == 1, err
