"""Pretrain's command-line contract (issue 16): sizes checked before allocating, re-runs."""

from __future__ import annotations

import pytest

from draco_em.errors import DracoInputError
from draco_em.train.pretrain import run_pretrain


def test_crop_size_beyond_the_micrographs_is_refused(tiny_config) -> None:
    with pytest.raises(DracoInputError, match=r"--crop-size 100000 px exceeds .* \(128 px\)"):
        run_pretrain(tiny_config(crop_size=100000))
