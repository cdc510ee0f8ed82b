"""The curation contact sheet draws every kind of micrograph the package reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from draco_em.curate.report import _thumbnail, contact_sheet, score_histogram, sheet_panels


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


def _has_colour(png: Path, rgb: tuple[int, int, int]) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return bool((pixels == rgb).all(axis=1).any())


def test_histogram_sets_star_signal_rejections_apart(tmp_path: Path) -> None:
    """A micrograph the STAR's CTF fit rejected keeps the image head's P(accept) = 0.95: drawn
    as a plain "rejected" bar above the threshold, the threshold would look broken."""
    table = pd.DataFrame(
        {"p_accept": [0.1, 0.95, 0.9], "decision": ["reject", "reject", "accept"],
         "decided_by": ["image", "ctf_resolution", "image"]}
    )  # fmt: skip
    orange = (0xE6, 0x7E, 0x22)  # the STAR-signal group's colour
    assert _has_colour(score_histogram(tmp_path / "signals.png", table, 0.5), orange)
    image_only = table.assign(decided_by="image", decision=["reject", "accept", "accept"])
    assert not _has_colour(score_histogram(tmp_path / "image.png", image_only, 0.5), orange)


def test_contact_sheet_shows_star_signal_rejections(tmp_path: Path) -> None:
    """A micrograph the CTF fit rejected keeps the image head's P(accept) = 0.9: ranked by it
    with ten image rejections at 0.1 it never reached the sheet's 8 rejected panels."""
    n = 10
    table = pd.DataFrame(
        {"p_accept": [0.1] * n + [0.9, 0.95, 0.8],
         "decision": ["reject"] * n + ["reject", "reject", "accept"],
         "reason": ["drift"] * n + ["ctf_fit", "ctf_fit", "good"],
         "decided_by": ["image"] * n + ["ctf_resolution", "ctf_resolution", "image"]}
    )  # fmt: skip
    rejected, accepted = sheet_panels(table, per_row=8)
    assert list(rejected.index) == [0, 10, 1, 11, 2, 3, 4, 5]  # taking turns while both last
    assert list(accepted.index) == [12]
    assert list(sheet_panels(table.iloc[n:], 8)[0].index) == [10, 11]  # signals alone
    assert list(sheet_panels(table.drop(columns="decided_by"), 3)[0].index) == [0, 1, 2]
    table["path"] = table["micrograph"] = [f"mic_{i}.mrc" for i in range(len(table))]
    orange = (0xE6, 0x7E, 0x22)  # the STAR-signal colour, as in the histogram
    sheet = contact_sheet(tmp_path / "sheet.png", table, per_row=4)
    assert sheet is not None and _has_colour(sheet, orange)  # their titles
