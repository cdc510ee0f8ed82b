"""``curate predict`` goes on past bad inputs (issue 16): each is a per-file failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.curate.config import CuratePredictConfig
from draco_em.curate.predict import predict_curation
from draco_em.io.mrc import write_mrc
from draco_em.io.star import MicrographTable, write_micrographs_star
from tests.curate.conftest import PIXEL_SIZE, train_toy_curator


@pytest.fixture(scope="module")
def curator_run(toy_set: Path, tiny_encoder: Path, tmp_path_factory) -> Path:
    return train_toy_curator(toy_set, tiny_encoder, tmp_path_factory.mktemp("run"), 5)


def test_missing_one_row_and_nan_micrographs_fail_alone(toy_set, curator_run, tmp_path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in (0, 1):
        shutil.copy(toy_set / "mics" / f"toy_{i:02d}.mrc", mics)
    write_mrc(mics / "row.mrc", np.arange(128, dtype=np.float32)[None], PIXEL_SIZE)
    nan = np.random.default_rng(0).normal(size=(128, 128)).astype(np.float32)
    nan[5, 5] = np.nan
    write_mrc(mics / "nan.mrc", nan, PIXEL_SIZE)
    write_mrc(mics / "flat.mrc", np.ones((128, 128), np.float32), PIXEL_SIZE)
    names = ["mics/toy_00.mrc", "mics/missing.mrc", "mics/row.mrc", "mics/nan.mrc",
             "mics/flat.mrc", "mics/toy_01.mrc"]  # fmt: skip
    star = tmp_path / "micrographs.star"
    frame = pd.DataFrame({"rlnMicrographName": names})
    write_micrographs_star(star, MicrographTable(star, None, frame))
    out = tmp_path / "out"
    cfg = CuratePredictConfig(inputs=[str(star)], out_dir=out, model=str(curator_run),
                              pixel_size=PIXEL_SIZE, progress=False, device="cpu")  # fmt: skip
    res = predict_curation(cfg)
    assert res.n_failed == 4 and len(res.table) == 2
    failed = dict(line.split("\t") for line in (out / "failures.txt").read_text().splitlines())
    assert {Path(p).name for p in failed} == {"missing.mrc", "row.mrc", "nan.mrc", "flat.mrc"}
    assert "NaN/Inf" in failed[str(mics / "nan.mrc")]
    assert "zero variance" in failed[str(mics / "flat.mrc")]
    assert "not found" in failed["mics/missing.mrc"]  # named as the STAR names it
    # ... in the reason too: the summary line on stderr shows the first reason alone
    assert failed["mics/missing.mrc"].startswith("mics/missing.mrc: not found")
    assert (out / "curation.csv").read_text().count("\n") == 3  # header + the two good ones
