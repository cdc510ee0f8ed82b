"""``draco info``'s dispatch (``io.info.describe``): each file described as what it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.info import describe, format_summary
from draco_em.prepare.triplets import _write_motion_csv


def test_a_motion_csv_is_a_motion_trace_not_a_bad_coordinate_table(tmp_path: Path) -> None:
    """``motion/<name>.csv`` of ``draco prepare`` (and ``draco simulate``) was reported as a
    coordinate table without the Topaz header (QA)."""
    path = tmp_path / "motion" / "mic_1.csv"
    _write_motion_csv(path, np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]]))  # as prepare does
    summary = describe(path)
    assert summary["kind"] == "motion trace" and summary["frames"] == 3
    assert summary["total_shift_px"] == pytest.approx(6.0)  # steps of 5 and 1 px
    assert summary["max_jump_px"] == pytest.approx(5.0)
    assert summary["final_shift_px"] == [3.0, 5.0]
    text = format_summary(summary)
    assert "motion trace" in text and "coordinate" not in text


def test_other_csvs_are_still_coordinate_tables(tmp_path: Path) -> None:
    topaz = tmp_path / "picks.csv"
    topaz.write_text("image_name,x_coord,y_coord\nmic_1,10,20\nmic_1,30,40\n")
    assert describe(topaz)["kind"] == "coordinates" and describe(topaz)["n_particles"] == 2
    broken = tmp_path / "broken.csv"
    broken.write_text("frame,shift_x,shift_y\n0,0,0\n1,,2\n")
    with pytest.raises(DracoInputError, match=r"broken\.csv: motion CSV holds a missing"):
        describe(broken)


def test_a_tiff_with_nan_is_described_with_a_note_as_an_mrc_is(tmp_path: Path) -> None:
    """A single-page float TIFF with one NaN ended ``draco info`` (exit 2, "frame 0 has 1
    NaN/Inf pixels") where an MRC with NaN is described with a note."""
    import tifffile

    image = np.full((32, 32), 2.0, dtype=np.float32)
    image[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    summary = describe(tmp_path / "nan.tif")
    assert summary["kind"] == "image" and summary["stats_frame0"]["max"] == 2.0
    assert "1 NaN/Inf pixels (frame 0): draco commands refuse it" in summary["notes"]
