"""The curation contact sheet draws every kind of micrograph the package reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from draco_em.curate.report import _thumbnail, contact_sheet


def test_contact_sheet_draws_picture_files(tmp_path: Path) -> None:
    """A PNG micrograph carries no pixel size: the sheet passes the run's one, not a blank."""
    rng = np.random.default_rng(0)
    png = tmp_path / "mic.png"
    Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(png)
    thumb = _thumbnail(str(png), 7.0)
    assert thumb is not None and thumb.std() > 0
    table = pd.DataFrame(
        {"path": [str(png)], "micrograph": [str(png)], "p_accept": [0.9],
         "decision": ["accept"], "reason": ["good"], "pixel_size": [7.0]}
    )  # fmt: skip
    out = contact_sheet(tmp_path / "sheet.png", table, per_row=2)
    assert out is not None and out.is_file()
