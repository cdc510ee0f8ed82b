"""The spread check that keeps a one-answer curation head from being shipped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from draco_em.curate.spread import answer_shares, batch_warning, check_spread, reject_reasons
from draco_em.errors import DracoInputError
from tests.conftest import run_draco


def test_one_class_for_everything_is_refused() -> None:
    decisions = ["reject"] * 10
    with pytest.raises(DracoInputError, match="carbon_only"):
        check_spread(decisions, ["carbon_only"] * 10, name="val")


def test_all_reject_with_varied_reasons_is_refused_on_the_decision() -> None:
    reasons = ["drift", "empty", "carbon_only", "thick_ice"] * 5
    with pytest.raises(DracoInputError, match="decision 'reject' for 100%"):
        check_spread(["reject"] * 20, reasons)


def test_mixed_answers_pass_and_report_shares() -> None:
    decisions = ["accept"] * 6 + ["reject"] * 4
    classes = ["good"] * 6 + ["drift", "empty", "empty", "contamination"]
    shares = check_spread(decisions, classes)
    assert shares["decision"] == ("accept", 0.6)
    assert shares["class"] == ("good", 0.6)


def test_limit_is_inclusive_and_adjustable() -> None:
    decisions = ["accept"] * 9 + ["reject"]
    classes = ["good"] * 9 + ["drift"]
    assert answer_shares(decisions, classes)["decision"][1] == pytest.approx(0.9)
    check_spread(decisions, classes)  # 90 % is allowed
    with pytest.raises(DracoInputError):
        check_spread(decisions, classes, max_share=0.8)


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError):
        answer_shares(["accept"], [])


@pytest.mark.slow
def test_bundled_head_gives_more_than_one_answer_on_real_micassess(
    shared_data: Path, tmp_path: Path
) -> None:
    """The 18 real MicAssess micrographs (6 good, 12 bad; ~7 Å/px PNG): the bundled head must
    pass the spread check on them (the issue-17 head answered reject/carbon_only for all)."""
    from draco_em.curate.head import resolve_curator_path

    try:
        resolve_curator_path("bundled")
    except DracoInputError:
        pytest.skip("no bundled curation head installed")
    folder = shared_data / "micassess" / "micrographs"
    if not folder.is_dir():
        pytest.skip(f"real micrographs {folder} are absent")
    proc = run_draco("curate", "predict", folder, "-o", tmp_path, "--pixel-size", "7",
                     "--device", "cpu", "-q", timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "curation.csv")
    assert len(table) == 18
    check_spread(list(table["decision"]), list(table["reason"]), name="MicAssess")


def test_reject_reasons_and_the_batch_warning() -> None:
    decisions = ["reject"] * 10 + ["accept"]
    classes = ["crystalline_ice"] * 9 + ["contamination", "good"]
    assert reject_reasons(decisions, classes) == [("crystalline_ice", 9), ("contamination", 1)]
    assert batch_warning(decisions, classes) is None  # 9 of 11 = 82 %: within the 90 % limit
    all_one = ["crystalline_ice"] * 10 + ["good"]
    warning = batch_warning(decisions, all_one)
    assert warning is not None and "10 of 11" in warning and "crystalline_ice" in warning
    assert batch_warning(["reject"] * 5, ["drift"] * 5) is None  # too few to judge
    assert batch_warning(["accept"] * 20, ["good"] * 20) is None  # all good is no alarm
