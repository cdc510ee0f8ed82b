"""The lists ``predict`` hands to other programs: the optics block of plain-file inputs' STARs
and the text lists of names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.curate.config import CuratePredictConfig
from draco_em.curate.lists import (
    known_pixel_sizes,
    optics_warning,
    plain_optics,
    with_optics,
    write_name_lists,
)
from draco_em.io.star import MicrographTable, read_micrographs_star, write_micrographs_star


def _cfg(tmp_path: Path, **kw) -> CuratePredictConfig:
    return CuratePredictConfig(inputs=["x.mrc"], out_dir=tmp_path, **kw)


def test_one_optics_group_per_pixel_size_read_back_by_relion_rules(tmp_path: Path) -> None:
    """A header's float32 1.06 Å reads as 1.0600000024: it is the same group as 1.06."""
    names = ["a.mrc", "b.mrc", "c.mrc"]
    table = MicrographTable(tmp_path / "in.star", None, pd.DataFrame({"rlnMicrographName": names}))
    optics = plain_optics(_cfg(tmp_path, spherical_aberration=0.0))  # a Cs-corrected microscope
    px = np.array([float(np.float32(1.06)), 1.06, 0.83])
    written = tmp_path / "mics.star"
    write_micrographs_star(written, with_optics(table, px, optics))
    back = read_micrographs_star(written)
    assert back.optics is not None
    assert list(back.optics["rlnMicrographPixelSize"]) == [0.83, 1.06]
    assert list(back.optics["rlnMicrographOriginalPixelSize"]) == [0.83, 1.06]
    assert list(back.micrographs.columns[:2]) == ["rlnMicrographName", "rlnOpticsGroup"]
    assert list(back.micrographs["rlnOpticsGroup"]) == [2, 2, 1]
    assert [back.pixel_size(i) for i in range(3)] == [1.06, 1.06, 0.83]
    assert back.positive_value(0, "rlnVoltage") == 300.0
    assert back.positive_value(0, "rlnSphericalAberration", zero=True) == 0.0
    assert back.positive_value(2, "rlnAmplitudeContrast") == 0.1


def test_no_optics_block_without_every_pixel_size_and_it_is_said(tmp_path: Path) -> None:
    result = pd.DataFrame({"pixel_size": [1.0, None, np.nan]})
    assert known_pixel_sizes(result) is None
    line = optics_warning(_cfg(tmp_path), star_input=False, result=result)
    assert line is not None and line.startswith("2 of 3 micrographs have no pixel size")
    assert optics_warning(_cfg(tmp_path), False, result.fillna(2.0)) is None
    # options that a STAR input's own optics block overrules
    star = optics_warning(_cfg(tmp_path, voltage=200, amplitude_contrast=0.07), True, result)
    assert star is not None and star.startswith("--voltage, --amplitude-contrast ignored")
    assert optics_warning(_cfg(tmp_path), True, result) is None


def test_name_lists_per_reason_and_an_earlier_runs_lists_go(tmp_path: Path) -> None:
    (tmp_path / "rejected_drift.txt").write_text("old.mrc\n")  # an earlier threshold's
    (tmp_path / "notes.txt").write_text("mine\n")
    result = pd.DataFrame(
        {"micrograph": ["m/a.mrc", "m/b.mrc", "m/c d.mrc", "m/e.mrc"],
         "decision": ["reject", "accept", "reject", "reject"],
         "reason": ["bad/ice", "good", "ctf_fit", "bad/ice"]}
    )  # fmt: skip
    paths = write_name_lists(tmp_path, result)
    assert set(paths) == {"accepted.txt", "rejected.txt", "rejected_bad_ice.txt",
                          "rejected_ctf_fit.txt"}  # fmt: skip
    assert (tmp_path / "accepted.txt").read_text() == "m/b.mrc\n"
    rejected = (tmp_path / "rejected.txt").read_text().splitlines()
    assert rejected == ["m/a.mrc", "m/c d.mrc", "m/e.mrc"]  # a name with a space is one line
    assert (tmp_path / "rejected_bad_ice.txt").read_text().splitlines() == ["m/a.mrc", "m/e.mrc"]
    assert (tmp_path / "rejected_ctf_fit.txt").read_text() == "m/c d.mrc\n"
    assert not (tmp_path / "rejected_drift.txt").exists()
    assert (tmp_path / "notes.txt").exists()
    write_name_lists(tmp_path, result.assign(decision="accept"))
    assert (tmp_path / "rejected.txt").read_text() == ""  # written, empty
    assert not list(tmp_path.glob("rejected_*.txt"))
