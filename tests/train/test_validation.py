"""Validation: PSNR against clean images after scale/offset matching; best checkpoint by PSNR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import draco_em.train.pretrain as pretrain
from draco_em.runtime import DistContext
from draco_em.train.checkpoint import checkpoint_path, load_checkpoint
from draco_em.train.data import CropDataset, load_manifest
from draco_em.train.engine import evaluate, psnr_matched


def test_psnr_ignores_scale_and_offset() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 32, 32, generator=g)
    noisy = clean + 0.1 * torch.randn(2, 1, 32, 32, generator=g)
    base = psnr_matched(noisy, clean)
    torch.testing.assert_close(psnr_matched(-3.0 * noisy + 7.0, clean), base, rtol=0, atol=1e-3)
    assert (psnr_matched(5 * clean - 2, clean) > 100).all()
    # Peak = range of clean, MSE of the matched noise ≈ 0.01 → about 20 dB.
    assert 18 < float(base.mean()) < 22
    assert (psnr_matched(clean + 0.3 * torch.randn(2, 1, 32, 32, generator=g), clean) < base).all()


class _Identity(nn.Module):
    """Stands in for a model: a constant loss, and 'denoising' that returns its input."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.last_losses = {"n2n": 0.25}

    def forward(self, batch, mask_ratio=0.75, generator=None, denoise=False):
        if denoise:
            return batch["full"] * self.w
        return self.w * 0.5, None, None


def test_evaluate_measures_against_clean_images(tiny_manifest) -> None:
    records = load_manifest(tiny_manifest)
    ds = CropDataset(records[:2], 32, 3, salt=1, with_clean=True)
    metrics = evaluate(
        _Identity(), DataLoader(ds, batch_size=4), DistContext(), mask_ratio=0.75, seed=0, tokens=4
    )
    expected = torch.cat(
        [psnr_matched(ds[i]["full"][None], ds[i]["clean"][None]) for i in range(6)]
    )
    assert metrics["val_psnr"] == pytest.approx(float(expected.mean()), abs=1e-4)
    assert metrics["val_psnr_raw"] == pytest.approx(metrics["val_psnr"])  # identity "denoiser"
    assert metrics["val_loss"] == 0.5 and metrics["val_n2n"] == 0.25


def test_best_checkpoint_follows_psnr_not_loss(tiny_config, monkeypatch) -> None:
    scripted = iter(
        [
            {"val_loss": 1.0, "val_psnr": 10.0},
            {"val_loss": 2.0, "val_psnr": 12.0},
            {"val_loss": 0.5, "val_psnr": 11.0},
        ]
    )
    monkeypatch.setattr(pretrain, "evaluate", lambda *a, **k: next(scripted))
    config = tiny_config(epochs=3, val_micrographs=0)  # crop-level PSNR only
    result = pretrain.run_pretrain(config)
    best = load_checkpoint(checkpoint_path(config.out_dir, "best"))
    assert best["epoch"] == 2 and best["val"]["val_psnr"] == 12.0
    assert result["best"] == {"metric": "val_psnr", "value": 12.0, "epoch": 2}
    assert load_checkpoint(checkpoint_path(config.out_dir, "latest"))["epoch"] == 3


def test_whole_micrograph_psnr_outranks_crop_psnr(tiny_config, monkeypatch) -> None:
    crops = iter([{"val_loss": 1.0, "val_psnr": 12.0}, {"val_loss": 1.0, "val_psnr": 10.0}])
    whole = iter([{"val_psnr_mic": 20.0}, {"val_psnr_mic": 21.0}])
    monkeypatch.setattr(pretrain, "evaluate", lambda *a, **k: next(crops))
    monkeypatch.setattr(pretrain, "evaluate_micrographs", lambda *a, **k: next(whole))
    config = tiny_config(epochs=2)
    result = pretrain.run_pretrain(config)
    assert result["best"] == {"metric": "val_psnr_mic", "value": 21.0, "epoch": 2}


def test_without_clean_images_best_follows_validation_loss(tiny_config, monkeypatch) -> None:
    scripted = iter([{"val_loss": 1.0}, {"val_loss": 0.7}, {"val_loss": 0.9}])
    monkeypatch.setattr(pretrain, "evaluate", lambda *a, **k: next(scripted))
    monkeypatch.setattr(pretrain, "evaluate_micrographs", lambda *a, **k: {})  # no clean images
    config = tiny_config(epochs=3)
    pretrain.run_pretrain(config)
    assert load_checkpoint(checkpoint_path(config.out_dir, "best"))["epoch"] == 2


def test_real_validation_reports_psnr_and_metrics_file(tiny_config) -> None:
    config = tiny_config(epochs=1, log_every_steps=1)
    metrics = pretrain.run_pretrain(config)["metrics"]
    assert {"val_loss", "val_n2n", "val_psnr", "val_psnr_raw"} <= set(metrics)
    # The whole-micrograph score is what `draco denoise` + `draco evaluate denoise` would give.
    from draco_em.evaluate.denoise_metrics import psnr
    from draco_em.infer.denoise import Denoiser
    from draco_em.io.mrc import read_image
    from draco_em.model.weights import load_model
    from draco_em.train.checkpoint import export_run
    from draco_em.train.data import load_manifest, split_train_val

    model, _, meta = load_model(export_run(config.out_dir, config.out_dir / "w.safetensors",
                                           which="latest"))  # fmt: skip
    _, val = split_train_val(load_manifest(config.data), config.val_fraction, config.seed)
    ours, raw = [], []
    for rec in val:
        image, px = read_image(rec.full, pixel_size=rec.pixel_size)
        clean = read_image(rec.clean)[0]
        ours.append(psnr(Denoiser(model, meta["pixel_size"]).denoise_image(image, px)[0], clean))
        raw.append(psnr(image, clean))
    assert metrics["val_psnr_mic"] == pytest.approx(np.mean(ours), abs=1e-3)
    assert metrics["val_psnr_mic_raw"] == pytest.approx(np.mean(raw), abs=1e-6)
    lines = (config.out_dir / "metrics.jsonl").read_text().splitlines()
    assert sum('"kind": "train"' in line for line in lines) == 3
    assert "effective batch 4" in (config.out_dir / "run.log").read_text()


def test_without_validation_the_epoch_records_say_so(tiny_config) -> None:
    """--val-fraction 0 wrote records of kind "val" holding no validation (QA, session 22)."""
    config = tiny_config(val_fraction=0.0, epochs=2, log_every_steps=1)
    pretrain.run_pretrain(config)
    lines = [json.loads(x) for x in (config.out_dir / "metrics.jsonl").read_text().splitlines()]
    ends = [x for x in lines if x["kind"] != "train"]
    assert [(x["kind"], x["epoch"]) for x in ends] == [("epoch", 1), ("epoch", 2)]
    # train records count epochs from 1 too (they said 0 where the epoch record said 1)
    assert {x["epoch"] for x in lines if x["kind"] == "train" and x["step"] <= 3} == {1}
