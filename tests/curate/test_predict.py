"""``predict``: the CSV, the accepted/rejected STARs (columns and optics kept), PNGs, failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.curate.config import CuratePredictConfig
from draco_em.curate.predict import predict_curation
from draco_em.errors import DracoInputError
from draco_em.io.mrc import write_mrc
from draco_em.io.star import read_micrographs_star, read_star
from tests.curate.conftest import toy_micrograph, train_toy_curator


@pytest.fixture(scope="module")
def run_dir(toy_set: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_toy_curator(toy_set, tiny_encoder, tmp_path_factory.mktemp("run"), 60)


def test_star_input_sorted_with_columns_and_optics(
    toy_set: Path, run_dir: Path, tmp_path: Path
) -> None:
    cfg = CuratePredictConfig(
        inputs=[str(toy_set / "micrographs.star")],
        out_dir=tmp_path,
        model=str(run_dir),
        progress=False,
        device="cpu",
        voltage=200,  # for plain files: the STAR's optics block is kept as it is
    )
    res = predict_curation(cfg)
    assert any(w.startswith("--voltage ignored") for w in res.warnings)
    table = pd.read_csv(tmp_path / "curation.csv")
    assert list(table.columns[:5]) == ["micrograph", "p_accept", "decision", "reason", "pixel_size"]
    np.testing.assert_allclose(table[["p_good", "p_contamination"]].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table["p_accept"], table["p_good"], atol=1e-6)
    assert ((table["p_accept"] >= 0.5) == (table["decision"] == "accept")).all()
    assert set(table.loc[table["decision"] == "reject", "reason"]) <= {"contamination"}
    # The toy classes are easy: the training set comes back sorted.
    truth = ["accept" if i % 2 == 0 else "reject" for i in range(16)]
    assert list(table["decision"]) == truth
    acc = read_micrographs_star(tmp_path / "micrographs_accepted.star")
    rej = read_micrographs_star(tmp_path / "micrographs_rejected.star")
    assert len(acc.micrographs) == 8 and len(rej.micrographs) == 8
    optics = read_star(toy_set / "micrographs.star")["optics"]
    for t in (acc, rej):
        assert t.optics is not None
        pd.testing.assert_frame_equal(t.optics, optics)  # no Cs added, 300 kV kept
        assert {"rlnCtfMaxResolution", "dracoReason", "dracoCurateScore"} <= set(t.micrographs)
    assert set(rej.micrographs["dracoReason"]) == {"contamination"}
    assert res.outputs["histogram"].stat().st_size > 1000
    assert res.outputs["sheet"].stat().st_size > 1000


def test_plain_files_threshold_and_failures(toy_set: Path, run_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in (0, 1, 2):
        shutil.copy(toy_set / "mics" / f"toy_{i:02d}.mrc", inputs)
    (inputs / "broken.mrc").write_bytes(b"not an mrc file at all" * 10)
    out = tmp_path / "out"
    cfg = CuratePredictConfig(
        inputs=[str(inputs)],
        out_dir=out,
        model=str(run_dir),
        threshold=1.0,
        progress=False,
        device="cpu",
    )
    res = predict_curation(cfg)
    assert res.n_failed == 1 and "broken.mrc" in (out / "failures.txt").read_text()
    assert len(res.table) == 3
    assert (res.table["decision"] == "reject").all()  # nothing reaches P = 1.0 exactly
    rej = read_micrographs_star(out / "micrographs_rejected.star")
    assert rej.micrographs["rlnMicrographName"].str.endswith("toy_00.mrc").any()


def test_unknown_model_is_a_user_error(toy_set: Path, tmp_path: Path) -> None:
    cfg = CuratePredictConfig(
        inputs=[str(toy_set / "mics")],
        out_dir=tmp_path,
        model=str(tmp_path / "nothing"),
        progress=False,
    )
    with pytest.raises(DracoInputError, match="curation model not found"):
        predict_curation(cfg)


def test_previews_show_each_micrograph_beside_its_spectrum(
    toy_set: Path, run_dir: Path, tmp_path: Path
) -> None:
    """Drift, crystalline ice or thick ice are read in the power spectrum, which no output
    showed (the contact sheet has 8 thumbnails each way). Two grids' same-named micrographs
    get one preview each."""
    from PIL import Image

    for grid in ("a", "b"):
        (tmp_path / grid).mkdir()
        shutil.copy(toy_set / "mics" / "toy_00.mrc", tmp_path / grid)
    out = tmp_path / "out"
    grids = [str(tmp_path / "a"), str(tmp_path / "b")]
    cfg = CuratePredictConfig(inputs=grids, out_dir=out, model=str(run_dir), progress=False,
                              device="cpu", previews=True)  # fmt: skip
    res = predict_curation(cfg)
    assert list(res.table["preview"]) == ["previews/toy_00.png", "previews/toy_00_2.png"]
    for name in res.table["preview"]:
        width, height = Image.open(out / name).size
        assert width > 1.5 * height  # the micrograph and its spectrum side by side
    assert "preview" in pd.read_csv(out / "curation.csv").columns


def test_plain_files_get_an_optics_block_and_text_lists(
    toy_set: Path, run_dir: Path, tmp_path: Path
) -> None:
    """RELION 4/5 reads a micrograph's pixel size, kV, Cs and amplitude contrast from its
    optics group: a list of plain files had none. One group per pixel size; the names also go
    to plain text lists, as curation.csv gives them."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in (0, 1, 2, 3):
        shutil.copy(toy_set / "mics" / f"toy_{i:02d}.mrc", inputs)
    write_mrc(inputs / "coarse.mrc", toy_micrograph(np.random.default_rng(5), True), 2.5)
    out = tmp_path / "out"
    cfg = CuratePredictConfig(inputs=[str(inputs)], out_dir=out, model=str(run_dir),
                              progress=False, device="cpu", voltage=200)  # fmt: skip
    res = predict_curation(cfg)
    assert not any("optics" in w or "ignored" in w for w in res.warnings)
    table = pd.read_csv(out / "curation.csv")
    px_of = dict(zip(table["micrograph"], table["pixel_size"], strict=True))
    lists = [read_micrographs_star(out / f"micrographs_{d}ed.star") for d in ("accept", "reject")]
    assert sum(len(t.micrographs) for t in lists) == 5
    for t in lists:
        assert t.optics is not None
        assert list(t.optics["rlnOpticsGroupName"]) == ["opticsGroup1", "opticsGroup2"]
        assert list(t.optics["rlnMicrographPixelSize"]) == [2.0, 2.5]
        assert list(t.optics["rlnVoltage"]) == [200.0, 200.0]  # --voltage
        assert list(t.optics["rlnSphericalAberration"]) == [2.7, 2.7]  # RELION's defaults
        assert list(t.optics["rlnAmplitudeContrast"]) == [0.1, 0.1]
        for i, name in enumerate(t.micrographs["rlnMicrographName"]):
            assert t.pixel_size(i) == px_of[name]  # through the micrograph's group
    for decision in ("accept", "reject"):
        listed = (out / f"{decision}ed.txt").read_text().splitlines()
        assert listed == list(table.loc[table["decision"] == decision, "micrograph"])
    for reason, rows in table[table["decision"] == "reject"].groupby("reason"):
        assert (out / f"rejected_{reason}.txt").read_text().splitlines() == list(rows["micrograph"])


def test_a_rewritten_micrographs_preview_is_drawn_again(
    toy_set: Path, run_dir: Path, tmp_path: Path
) -> None:
    """A resumed run kept previews/<stem>.png of an input rewritten since (it looked only for
    the file): the preview showed the old micrograph beside the new verdict."""
    (tmp_path / "a").mkdir()
    mic = tmp_path / "a" / "toy_00.mrc"
    shutil.copy(toy_set / "mics" / "toy_00.mrc", mic)
    out = tmp_path / "out"
    cfg = CuratePredictConfig(inputs=[str(mic.parent)], out_dir=out, model=str(run_dir),
                              progress=False, device="cpu", previews=True)  # fmt: skip
    predict_curation(cfg)
    preview = out / "previews" / "toy_00.png"
    first = preview.read_bytes()
    drawn = preview.stat().st_mtime_ns
    predict_curation(cfg)  # unchanged: kept
    assert preview.stat().st_mtime_ns == drawn
    write_mrc(mic, toy_micrograph(np.random.default_rng(5), contaminated=True), 2.0)
    predict_curation(cfg)
    assert preview.read_bytes() != first
