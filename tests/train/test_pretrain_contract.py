"""Pretrain's command-line contract (issue 16): sizes checked before allocating, re-runs."""

from __future__ import annotations

import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.train.checkpoint import load_checkpoint
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


def test_ctrl_c_saves_latest_and_the_run_resumes(tiny_config, caplog) -> None:
    def interrupt(state, stats) -> None:
        if state.global_step == 2:
            raise KeyboardInterrupt

    cfg = tiny_config(epochs=1)
    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, on_step=interrupt)
    latest = cfg.out_dir / "checkpoints" / "latest.pt"
    assert latest.is_file() and "--resume latest" in caplog.text
    result = run_pretrain(tiny_config(epochs=1, resume="latest"))
    assert result["state"].global_step == 3 and result["state"].epoch == 1


def test_resume_repairs_a_best_pt_a_kill_left_stale(tiny_config) -> None:
    cfg = tiny_config(epochs=1)
    run_pretrain(cfg)
    ckpts = cfg.out_dir / "checkpoints"
    latest = ckpts / "latest.pt"
    stale = load_checkpoint(latest)
    stale["epoch"] = 0  # as if the copy of epoch 1 to best.pt never happened
    torch.save(stale, ckpts / "best.pt")
    run_pretrain(tiny_config(epochs=1, resume="latest"))
    assert (ckpts / "best.pt").read_bytes() == latest.read_bytes()
