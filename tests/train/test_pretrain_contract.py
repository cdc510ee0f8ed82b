"""Pretrain's command-line contract (issue 16): sizes checked before allocating, re-runs."""

from __future__ import annotations

import pytest

from draco_em.errors import DracoInputError
from draco_em.train.pretrain import run_pretrain


def test_crop_size_beyond_the_micrographs_is_refused(tiny_config) -> None:
    with pytest.raises(DracoInputError, match=r"--crop-size 100000 px exceeds .* \(128 px\)"):
        run_pretrain(tiny_config(crop_size=100000))


def test_an_existing_run_needs_resume(tiny_config) -> None:
    run_pretrain(tiny_config(epochs=1))
    best = tiny_config().out_dir / "checkpoints"
    before = sorted(p.name for p in best.iterdir())
    with pytest.raises(DracoInputError, match="--resume latest"):
        run_pretrain(tiny_config(epochs=1))
    assert sorted(p.name for p in best.iterdir()) == before
