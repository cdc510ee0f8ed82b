"""Every `draco evaluate` command writes its results with `-o FILE` (JSON or CSV by suffix,
atomically, one writer); `evaluate realism` names its encoder `--model` (`--weights` still
works, with a note)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.cli._app import normalise_argv
from draco_em.evaluate.results import json_text, write_results
from draco_em.io.coords import make_coords, write_relion_coords
from draco_em.io.mrc import write_mrc
from tests.cli.test_help_examples import LEAVES
from tests.conftest import draco_in_process


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def denoise_set(tmp_path: Path, blob_pair) -> Path:
    clean, odd, even = blob_pair
    for name, image in (("clean", clean), ("raw", odd), ("pred", (odd + even) / 2)):
        write_mrc(tmp_path / name / "mic_0.mrc", image, 2.0)
        write_mrc(tmp_path / name / "mic_1.mrc", np.roll(image, 7, axis=0), 2.0)
    return tmp_path


def test_evaluate_denoise_writes_json_and_csv(capsys, denoise_set: Path) -> None:
    base = ["evaluate", "denoise", "--pred", denoise_set / "pred", "--clean", denoise_set / "clean",
            "--raw", denoise_set / "raw"]  # fmt: skip
    code, out, err = draco_in_process(capsys, *base, "-o", denoise_set / "out" / "scores.json")
    assert code == 0, err
    saved = json.loads((denoise_set / "out" / "scores.json").read_text())
    assert saved["n"] == 2 and "frc_0.5_resolution_A" in saved["mean"]
    assert "pred" in out and "scores.json" in err  # the table still printed; the file named
    code, out, err = draco_in_process(capsys, *base, "--out", denoise_set / "scores.csv", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 2  # --json still prints the whole result
    rows = _rows(denoise_set / "scores.csv")
    assert [(r["method"], r["micrograph"]) for r in rows] == [
        ("raw input", "mic_0"), ("raw input", "mic_1"), ("pred", "mic_0"), ("pred", "mic_1")
    ]  # fmt: skip
    assert float(rows[2]["psnr_db"]) == pytest.approx(saved["per_micrograph"][0]["psnr_db"])
    assert not list(denoise_set.glob(".*tmp*"))  # written through a temp file, renamed


def test_evaluate_pick_and_curate_write_their_pooled_figures(capsys, tmp_path: Path) -> None:
    truth = make_coords("m1", [10.0, 40.0], [10.0, 40.0])
    write_relion_coords(tmp_path / "truth" / "m1.star", truth)
    write_relion_coords(tmp_path / "pred" / "m1.star", make_coords("m1", [11.0], [10.0]))
    code, _, err = draco_in_process(capsys, "evaluate", "pick", "--pred", tmp_path / "pred",
                                    "--truth", tmp_path / "truth", "--radius", "3",
                                    "-o", tmp_path / "pick.csv")  # fmt: skip
    assert code == 0, err
    (row,) = _rows(tmp_path / "pick.csv")
    assert float(row["precision"]) == 1.0 and float(row["recall"]) == 0.5
    assert "truth_only" not in row  # lists live in the JSON only
    said = {"decision": ["accept", "reject"], "reason": ["good", "ice"]}
    pd.DataFrame({"micrograph": ["a.mrc", "b.mrc"], **said}).to_csv(
        tmp_path / "curation.csv", index=False
    )
    pd.DataFrame({"micrograph": ["a.mrc", "b.mrc"], "label": ["good", "good"]}).to_csv(
        tmp_path / "truth.csv", index=False
    )  # fmt: skip
    args = ["evaluate", "curate", "--pred", tmp_path / "curation.csv", "--truth",
            tmp_path / "truth.csv"]  # fmt: skip
    code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "curate.json")
    assert code == 0, err
    saved = json.loads((tmp_path / "curate.json").read_text())
    assert saved["recall"] == 0.5 and saved["confusion"]["good"]["ice"] == 1
    # Never over an input; only .json or .csv; both refused before any work, in one line.
    code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "curation.csv")
    assert code == 2 and "refusing to overwrite an input file" in err
    code, _, err = draco_in_process(capsys, *args, "-o", tmp_path / "curate.txt")
    assert code == 2 and "writes .json or .csv" in err and err.count("\n") == 1
    assert not (tmp_path / "curate.txt").exists()


def test_results_are_strict_json(tmp_path: Path) -> None:
    result = {"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(3), float("inf")]}
    assert json.loads(json_text(result)) == {"a": None, "b": 1.5, "c": [3, None]}
    write_results(tmp_path / "r.csv", result)
    assert _rows(tmp_path / "r.csv") == [{"a": "", "b": "1.5"}]


def test_realism_names_its_encoder_model_and_still_takes_weights(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    names = {o for p in LEAVES[("evaluate", "realism")].params for o in p.opts}
    assert "--model" in names and "--weights" not in names
    argv, notes = normalise_argv(["evaluate", "realism", "--weights", "w.safetensors"])
    assert argv == ["evaluate", "realism", "--model", "w.safetensors"]
    assert notes == ["draco: note: --weights is now --model (the old spelling still works)"]
    # end to end: the old spelling reaches the encoder, with one note
    from draco_em.evaluate import realism

    used = []

    def fake_features(mics, model, device):
        used.append(model)
        for m in mics:
            m.feature = np.zeros(4, np.float32) + len(used)
        return 4

    monkeypatch.setattr(realism, "encoder_features", fake_features)
    for name in ("sim", "real"):
        write_mrc(tmp_path / name / "a.mrc", np.random.default_rng(0).normal(size=(64, 64)), 2.0)
    code, _, err = draco_in_process(capsys, "evaluate", "realism", "--sim", tmp_path / "sim",
                                    "--real", tmp_path / "real", "-o", tmp_path / "out", "-q",
                                    "--weights", "my_encoder.safetensors")  # fmt: skip
    assert code == 0, err
    assert used == ["my_encoder.safetensors"] and err.count("--weights is now --model") == 1
