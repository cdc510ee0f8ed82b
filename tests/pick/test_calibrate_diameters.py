"""``pick calibrate`` with a diameter per micrograph (``run_calibrate(cfg, diameters)``, a set
of several particle sizes): every micrograph is scored at its own diameter × the multiple,
both where the multiple is chosen from the data and where the threshold is chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from draco_em.io.coords import make_coords, write_relion_coords
from draco_em.io.mrc import write_mrc
from draco_em.pick import calibrate, labels
from draco_em.pick.autoscale import AUTO_SCALES
from draco_em.pick.config import PickCalibrateConfig
from draco_em.pick.predict import Picker


@pytest.fixture(scope="module")
def blob_picker(tmp_path_factory, make_blob_picker) -> Path:
    """A tiny picker trained on blobs of one size (radius 16 px at 1 Å/px, diameter 32 Å)."""
    return make_blob_picker(tmp_path_factory.mktemp("cal_diameters"), noise=0.2)


def test_each_micrograph_is_scored_at_its_own_diameter(
    blob_picker, make_blobs, tmp_path, monkeypatch
):
    """Blobs 0.7 × the size the picker learnt, each micrograph given 32 Å (its own diameter)
    while the picker is run at 22.4 Å: the multiple (chosen from the data, as for the bundled
    picker) must be tried at 32 Å × m on every micrograph, where the threshold is then chosen
    too. Before session 25 the multiple was tried at the picker's 22.4 Å on all of them: it
    kept × 1 and the threshold was chosen at 32 Å, on blobs that look 0.7 × their size."""
    rng = np.random.default_rng(9)
    for sub in ("mics", "coords"):
        (tmp_path / sub).mkdir()
    own = {}
    for i in range(3):
        img, xy = make_blobs(rng, (224, 224), 16.0 * 0.7, 14, noise=0.2)
        write_mrc(tmp_path / "mics" / f"small_{i}.mrc", img, pixel_size=1.0)
        write_relion_coords(tmp_path / "coords" / f"small_{i}.star",
                            make_coords(f"small_{i}", *xy.T))  # fmt: skip
        own[f"small_{i}"] = 32.0
    tried: dict[str, set[float]] = {}  # the diameters (Å) the detector ran at, per micrograph
    candidates = Picker._candidates

    def spy(self, image, pixel_size, diameter, thr, name):
        tried.setdefault(Path(name).stem, set()).add(round(diameter, 3))
        return candidates(self, image, pixel_size, diameter, thr, name)

    loaded: dict[str, float] = {}  # the diameter (Å) each micrograph's labels were scored at
    load_example = labels.load_example

    def spy_load(path, picks, diameter, *args, **kwargs):
        loaded[Path(path).stem] = round(diameter, 3)
        return load_example(path, picks, diameter, *args, **kwargs)

    monkeypatch.setattr(Picker, "_candidates", spy)
    monkeypatch.setattr(labels, "load_example", spy_load)
    # the bundled picker's default (a multiple chosen from the data), for the tiny picker
    monkeypatch.setattr(calibrate, "picker_scales", lambda model, picker=None: "auto")
    cfg = PickCalibrateConfig(model=str(blob_picker), micrographs=[tmp_path / "mics"],
                              coords=[tmp_path / "coords"], outdir=tmp_path / "cal",
                              diameter=22.4, device="cpu")  # fmt: skip
    result = calibrate.run_calibrate(cfg, own)
    m = result["multiplier"]
    assert tried == {stem: {round(s * d, 3) for s in AUTO_SCALES} for stem, d in own.items()}
    assert loaded == {stem: round(m * d, 3) for stem, d in own.items()}
    assert m < 1.0, result  # 32 Å × m fits the 22.4 Å blobs better than 32 Å
    assert result["diameter"] == 22.4  # the picker keeps its single (given) diameter
