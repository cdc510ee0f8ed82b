"""One pixel-size resolver: precedence, each stage's policy, one error wording."""

from __future__ import annotations

import math

import pytest

from draco_em.errors import DracoInputError
from draco_em.io.pixel_size import POLICY, UNKNOWN, require_pixel_size, resolve_pixel_size


def test_first_known_value_wins() -> None:
    assert resolve_pixel_size("pick", "m.mrc", None, 0.0, 1.5, 2.0) == 1.5
    assert resolve_pixel_size("pick", "m.mrc", 3.0, 1.5) == 3.0  # the override first
    assert resolve_pixel_size("denoise", "m.mrc", math.nan, -1.0) is None


@pytest.mark.parametrize("stage", sorted(POLICY))
def test_each_stage_policy(stage: str) -> None:
    if POLICY[stage]:
        with pytest.raises(DracoInputError, match=r"m\.mrc: pixel size unknown .*--pixel-size"):
            resolve_pixel_size(stage, "m.mrc", None, 0.0)  # type: ignore[arg-type]
        assert require_pixel_size(stage, "m.mrc", 0.0, 1.2) == 1.2  # type: ignore[arg-type]
    else:  # runs at the input's own sampling
        assert resolve_pixel_size(stage, "m.mrc", None, 0.0) is None  # type: ignore[arg-type]
    assert UNKNOWN.startswith("pixel size unknown")


@pytest.mark.parametrize("name", ["m.png", "m.JPG", "m.jpeg", "m.tif", "m.tiff"])
def test_a_picture_without_one_is_not_said_to_have_a_header(name: str) -> None:
    """PNG/JPEG/TIFF pictures have no pixel-size header: the error said "the header says 0"
    (``draco pretrain --data m.png``; QA)."""
    with pytest.raises(DracoInputError, match="pictures carry none") as caught:
        resolve_pixel_size("train", name, None)
    assert "header" not in str(caught.value) and "--pixel-size" in str(caught.value)
    with pytest.raises(DracoInputError, match="the header says 0"):  # an MRC keeps its wording
        resolve_pixel_size("train", "m.mrc", 0.0)
