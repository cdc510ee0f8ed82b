"""Pretrain's command-line contract (issue 16): sizes checked before allocating, re-runs."""

from __future__ import annotations

import json
import re

import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.train.checkpoint import load_checkpoint
from draco_em.train.pretrain import epoch_line, format_duration, run_pretrain


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


def test_a_folder_whose_run_failed_before_any_step_starts_over(tiny_config) -> None:
    """A bad first try (here a crop larger than the micrographs) leaves config.yaml and run.log
    but no checkpoint: the corrected command runs in the same folder."""
    with pytest.raises(DracoInputError, match="--crop-size"):
        run_pretrain(tiny_config(crop_size=100000))
    assert (tiny_config().out_dir / "config.yaml").is_file()
    result = run_pretrain(tiny_config(epochs=1))
    assert result["state"].epoch == 1


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


def test_progress_lines_read_epoch_k_of_n_with_psnr_and_eta(tiny_config, caplog) -> None:
    """Issue 16: one readable line per epoch (1-based, "of N", loss, validation PSNR with the
    raw input's beside it, ETA); no JSON with 16-digit floats (metrics.jsonl keeps them)."""
    cfg = tiny_config(epochs=2)
    with caplog.at_level("INFO", logger="draco_em"):
        run_pretrain(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [ln.split(",")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"], lines
    assert re.search(r"loss \d+\.\d{4}", lines[0]) and "ETA" in lines[0]
    assert lines[-1].endswith("done")
    if "val PSNR" in lines[0]:  # validation crops with clean images: raw's PSNR beside it
        assert re.search(r"val PSNR -?\d+\.\d\d dB \(raw -?\d+\.\d\d dB\)", lines[0])
    assert not any("{" in ln or re.search(r"\d\.\d{6,}", ln) for ln in lines)
    last = json.loads((cfg.out_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "val" and last["epoch"] == 2  # full precision stays in the file


def test_epoch_line_and_duration() -> None:
    line = epoch_line({"epoch": 3, "val_psnr": 12.3456, "val_psnr_raw": 5.0, "seconds": 10.2},
                      10, 95.0, loss=0.123456)  # fmt: skip
    assert line == ("epoch 3/10, loss 0.1235, val PSNR 12.35 dB (raw 5.00 dB), 10 s, "
                    "ETA 1 min 35 s")  # fmt: skip
    assert format_duration(7300) == "2 h 01 min" and format_duration(42.4) == "42 s"
