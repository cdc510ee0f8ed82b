"""``train_picker(cfg, diameters)`` with ``--auto-scale``: the multiple is chosen with each
micrograph at its own diameter, and each is then trained at its own diameter × the multiple,
as ``pick predict`` picks (pick/train.py; ``pick calibrate`` does the same since session 25)."""

from __future__ import annotations

import pytest

import draco_em.pick.train as train
from draco_em.pick.autoscale import ScaleChoice
from draco_em.pick.config import PickTrainConfig


class _Stop(Exception):
    """Ends the run once the training data would be loaded."""


def test_auto_scale_with_a_diameter_per_micrograph(tmp_path, make_blob_picker, monkeypatch):
    (tmp_path / "picker").mkdir()
    picker = make_blob_picker(tmp_path / "picker")  # writes picker/mics and picker/coords
    seen: dict[str, object] = {}

    def choose(picker_, micrographs, pixel_size=None, diameters=None):
        seen["chosen_at"] = diameters
        return ScaleChoice(0.7, {1.0: 0.1, 0.7: 0.9}, ["a"])

    def load(cfg, detector, diameters):
        seen["trained_at"], seen["diameter"] = diameters, cfg.diameter
        raise _Stop

    monkeypatch.setattr(train, "scale_on_micrographs", choose)
    monkeypatch.setattr(train, "load_training_data", load)
    cfg = PickTrainConfig(micrographs=[tmp_path / "picker" / "mics"],
                          coords=[tmp_path / "picker" / "coords"], outdir=tmp_path / "run",
                          diameter=32.0, weights=str(picker), auto_scale=True, epochs=1,
                          device="cpu")  # fmt: skip
    with pytest.raises(_Stop):
        train.train_picker(cfg, diameters={"a": 40.0, "b": 20.0}, progress=False)
    assert seen["chosen_at"] == {"a": 40.0, "b": 20.0}  # each at its own, not at 32 Å
    assert seen["trained_at"] == pytest.approx({"a": 28.0, "b": 14.0})  # own × 0.7
    assert seen["diameter"] == pytest.approx(22.4)
