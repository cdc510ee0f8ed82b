"""Signals beyond the image (``curate.signals``): read from a STAR, thresholds, and their use
by ``predict`` (a threshold rejects whatever the image head says, and says so)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.curate.config import (
    CuratePredictConfig,
    SignalRules,
)
from draco_em.curate.predict import predict_curation
from draco_em.curate.signals import check_signals, read_signals
from draco_em.io.star import read_micrographs_star, read_star, write_star
from tests.curate.conftest import train_toy_curator


def _star(tmp_path: Path, rows: dict, optics_px: float = 1.0, original: float = 0.5) -> Path:
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [original],
            "rlnMicrographPixelSize": [optics_px],
        }
    )
    mics = pd.DataFrame({"rlnOpticsGroup": 1, **rows})
    path = tmp_path / "mics.star"
    write_star(path, {"optics": optics, "micrographs": mics})
    return path


def test_read_signals_units_and_motion_csv(tmp_path: Path) -> None:
    (tmp_path / "motion").mkdir()
    # 3 steps of 5 movie pixels at 0.5 Å (the optics' original pixel size): 7.5 Å in total.
    pd.DataFrame({"frame": [0, 1, 2, 3], "shift_x": [0, 3, 6, 9], "shift_y": [0, 4, 8, 12]}).to_csv(
        tmp_path / "motion" / "b.csv", index=False
    )
    star = _star(
        tmp_path,
        {
            "rlnMicrographName": ["a.mrc", "b.mrc", "c.mrc"],
            "rlnAccumMotionTotal": [42.0, np.nan, np.nan],
            "dracoMotion": ["", "motion/b.csv", ""],
            "rlnCtfMaxResolution": [4.5, 12.0, np.nan],
            "rlnDefocusU": [15000.0, 20000.0, np.nan],
            "rlnDefocusV": [13000.0, 20000.0, np.nan],
            "rlnCtfIceRingDensity": [0.2, np.nan, np.nan],
            "dracoTotalShift": [np.nan, np.nan, 33.0],  # draco prepare before RELION's name
        },
    )
    table = read_micrographs_star(star)
    a, b, c = (read_signals(table, i) for i in range(3))
    assert a == pytest.approx(
        {"motion": 42.0, "ctf_resolution": 4.5, "defocus": 1.4, "astigmatism": 0.2, "ice": 0.2}
    )
    assert b["motion"] == pytest.approx(7.5) and b["ctf_resolution"] == 12.0
    assert b["astigmatism"] == 0.0 and "ice" not in b
    assert c == {"motion": 33.0}  # NaN: absent (a merged table's missing value)


def test_a_failed_ctf_fit_written_as_inf_is_rejected(tmp_path: Path) -> None:
    """CTFFIND writes inf for a fit without Thon rings: worse than any limit, so ctf_fit;
    read as absent (as before) the micrograph passed unchecked."""
    star = _star(tmp_path, {"rlnMicrographName": ["a.mrc"], "rlnCtfMaxResolution": ["inf"]})
    values = read_signals(read_micrographs_star(star), 0)
    assert values == {"ctf_resolution": np.inf}
    verdict = check_signals(values, SignalRules())
    assert verdict.failed == ["ctf_resolution"] and verdict.reason == "ctf_fit"


def test_thresholds_reasons_and_switches() -> None:
    values = {"motion": 150.0, "ctf_resolution": 12.0, "defocus": 1.5, "astigmatism": 0.3}
    verdict = check_signals(values, SignalRules())
    assert verdict.failed == ["motion", "ctf_resolution"] and verdict.reason == "drift"
    assert verdict.checked == ["motion", "ctf_resolution", "defocus"]  # astigmatism: off
    strict = SignalRules(max_motion=None, max_astigmatism=0.2, defocus_range=(2.0, 3.0))
    verdict = check_signals(values, strict)
    assert verdict.failed == ["ctf_resolution", "defocus", "astigmatism"]
    assert verdict.reason == "ctf_fit"
    assert check_signals(values, SignalRules(enabled=False)).failed == []
    assert check_signals({}, SignalRules()).reason is None


@pytest.fixture(scope="module")
def run_dir(toy_set: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_toy_curator(toy_set, tiny_encoder, tmp_path_factory.mktemp("run_signals"), 60)


def test_predict_rejects_on_star_signals_and_records_them(
    toy_set: Path, run_dir: Path, tmp_path: Path
) -> None:
    blocks = read_star(toy_set / "micrographs.star")
    mics = blocks["micrographs"].copy()
    mics["rlnMicrographName"] = [str(toy_set / n) for n in mics["rlnMicrographName"]]
    mics["rlnAccumMotionTotal"] = 20.0
    mics.loc[0, "rlnAccumMotionTotal"] = 250.0  # a good-looking image that drifted
    mics.loc[2, "rlnCtfMaxResolution"] = 15.0  # a good-looking image without Thon rings
    mics["rlnDefocusU"] = mics["rlnDefocusV"] = 15000.0
    star = tmp_path / "signals.star"
    write_star(star, {"optics": blocks["optics"], "micrographs": mics})

    def run(out: str, **kw) -> pd.DataFrame:
        cfg = CuratePredictConfig(
            inputs=[str(star)], out_dir=tmp_path / out, model=str(run_dir), progress=False,
            device="cpu", **kw,
        )  # fmt: skip
        predict_curation(cfg)
        return pd.read_csv(tmp_path / out / "curation.csv")

    image_only = run("off", signals=SignalRules(enabled=False))
    assert (image_only["decided_by"] == "image").all()
    assert (image_only["signals"] == "image").all()
    assert list(image_only["decision"][:3]) == ["accept", "reject", "accept"]
    table = run("on")
    assert table.loc[0, "decision"] == "reject" and table.loc[0, "reason"] == "drift"
    assert table.loc[0, "decided_by"] == "motion" and table.loc[0, "motion_A"] == 250.0
    assert table.loc[2, "reason"] == "ctf_fit" and table.loc[2, "decided_by"] == "ctf_resolution"
    rest = table.drop(index=[0, 2])
    assert (rest["decided_by"] == "image").all()
    assert (rest["decision"] == image_only.drop(index=[0, 2])["decision"]).all()
    assert set(table["signals"]) == {"image;motion;ctf_resolution;defocus"}
    assert math.isclose(table.loc[5, "defocus_um"], 1.5)
    # the score stays the image head's; the STAR says who decided
    np.testing.assert_allclose(table["p_accept"], image_only["p_accept"])
    rej = read_micrographs_star(tmp_path / "on" / "micrographs_rejected.star").micrographs
    assert set(rej["dracoCurateDecidedBy"]) >= {"motion", "ctf_resolution", "image"}


def test_defocus_range_is_checked_and_unused_thresholds_are_named() -> None:
    """A reversed or Å-valued --defocus-range is refused (it rejected everything); a threshold
    the user set that no input's STAR carries a signal for is said, not silently skipped."""
    from pydantic import ValidationError

    from draco_em.curate.signals import unused_thresholds

    for bad in ((5.0, 1.0), (5000.0, 30000.0)):
        with pytest.raises(ValidationError):
            SignalRules(defocus_range=bad)
    rules = SignalRules(max_motion=5.0, max_ice_ring_density=0.05)
    line = unused_thresholds(rules, set())
    assert line is not None and "--max-motion" in line and "--max-ice-ring-density" in line
    assert "--max-ctf-resolution" not in line  # its default: not the user's
    assert unused_thresholds(rules, {"motion", "ice"}) is None
    assert unused_thresholds(SignalRules(), set()) is None


def test_thresholds_given_with_no_signals_are_named() -> None:
    """``--no-signals --max-motion 20``: the threshold is not applied; saying nothing would let
    the user believe drifting micrographs were cut."""
    from draco_em.curate.signals import unused_thresholds

    line = unused_thresholds(SignalRules(enabled=False, max_motion=20.0), {"motion"})
    assert line is not None and "--no-signals" in line and "--max-motion" in line
    assert unused_thresholds(SignalRules(enabled=False), {"motion"}) is None  # defaults only
    assert unused_thresholds(SignalRules(enabled=False, max_motion=None), set()) is None  # "0"
