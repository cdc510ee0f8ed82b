"""Self-training on a picker's own confident picks (pick/selftrain.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.coords import make_coords, read_coords
from draco_em.pick.model_io import read_picker
from draco_em.pick.selftrain import pseudo_labels, self_train


def _cands(scores):
    n = len(scores)
    return make_coords("m", np.arange(n) * 10.0, np.zeros(n), score=np.asarray(scores, float))


def test_pseudo_labels_keep_the_better_half_above_the_threshold():
    cands = {"a": _cands([0.9, 0.2, 0.6, 0.8, 0.5]), "b": _cands([0.45]), "c": _cands([0.1])}
    labels, expected = pseudo_labels(cands, threshold=0.4)
    assert sorted(labels) == ["a", "b"]  # c has nothing above the threshold
    assert labels["a"]["score"].tolist() == [0.9, 0.8]  # 4 above: the best 2
    assert labels["b"]["score"].tolist() == [0.45]  # at least one
    assert expected == pytest.approx((4 + 1 + 0) / 3)  # the picker's own count per micrograph
    assert pseudo_labels({}, 0.4) == ({}, 0.0)


def test_self_train_fine_tunes_on_its_own_picks(make_blob_picker, tmp_path):
    (tmp_path / "base").mkdir()
    path = make_blob_picker(tmp_path / "base")
    mics = sorted((tmp_path / "base" / "mics").glob("*.mrc"))[:3]
    # the "picker's candidates": the true blobs with falling scores, one junk pick below
    cands = {}
    for m in mics:
        xy = read_coords(tmp_path / "base" / "coords" / f"{m.stem}.star")[["x", "y"]].to_numpy()
        scores = np.linspace(0.9, 0.5, len(xy))
        cands[m.stem] = pd.concat([make_coords(m.stem, xy[:, 0], xy[:, 1], score=scores),
                                   make_coords(m.stem, [5.0], [5.0], score=[0.1])])  # fmt: skip
    out = self_train(str(path), mics, cands, threshold=0.4, diameter=32.0,
                     outdir=tmp_path / "st", epochs=1, crops_per_epoch=8)  # fmt: skip
    labels = read_coords(tmp_path / "st" / "labels" / f"{mics[0].stem}.star")
    assert len(labels) == 4  # the better half of the 8 blobs; the junk pick is below 0.4
    meta = read_picker(out)[1]
    assert meta["diameter"] == 32.0
    assert meta["metadata"]["n_labelled"] == 8  # 2 of the 3 micrographs train, 4 labels each
    log = (tmp_path / "st" / "run" / "run.log").read_text()
    assert "labelled fraction 0.500" in log  # expected = the 8 candidates above the threshold
    with pytest.raises(DracoInputError, match="no pick reaches the stored threshold"):
        self_train(str(path), mics, cands, threshold=0.95, diameter=32.0,
                   outdir=tmp_path / "none")  # fmt: skip
