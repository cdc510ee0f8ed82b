"""Particle evidence of the bundled picker as a curation feature block (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from draco_em.curate.config import CuratePredictConfig, CurateTrainConfig, FeatureConfig
from draco_em.curate.features import micrograph_features, n_features
from draco_em.curate.head import load_curator
from draco_em.curate.particles import N_PARTICLES
from draco_em.curate.predict import predict_curation
from draco_em.curate.stats import N_STATS
from draco_em.curate.train import train_curator
from draco_em.errors import DracoInputError
from draco_em.model.encoder import load_encoder
from draco_em.pick.evidence import (
    DIAMETERS,
    N_EVIDENCE,
    ParticleEvidence,
    central_crop,
    evidence_from_scores,
    particle_evidence,
)


def test_evidence_by_hand() -> None:
    a = np.pi * 100.0**2 / 4  # one 100 Å particle
    area = 1000 * a  # k = 0.05 * 1000 = 50 candidates for the top mean
    scores = {100.0: np.array([0.9, 0.8, 0.2, 0.1])}
    cover, top = evidence_from_scores(scores, 0.5, area, (100.0,))
    assert cover == pytest.approx(np.log10(2 / 1000 + 1e-3))  # two at or above 0.5
    assert top == pytest.approx(2.0 / 50)  # missing candidates count 0
    empty = evidence_from_scores({100.0: np.zeros(0)}, 0.5, a, (100.0,))
    assert empty[0] == pytest.approx(-3.0) and empty[1] == 0.0  # k = MIN_TOP, nothing found


def test_central_crop() -> None:
    img = np.arange(100).reshape(10, 10)
    c = central_crop(img, 4)
    assert c.shape == (4, 4) and c[0, 0] == 33
    assert central_crop(img, 50).shape == (10, 10)


def _blobs(rng: np.random.Generator, n: int, px: float, diameter: float) -> np.ndarray:
    """[384, 384] noise with ``n`` dark Gaussian blobs of ``diameter`` Å (particles)."""
    size = 384
    img = rng.normal(0.0, 1.0, (size, size))
    yy, xx = np.mgrid[:size, :size]
    sigma = diameter / px / 4
    for cy, cx in rng.uniform(30, size - 30, (n, 2)):
        img -= 2.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def test_the_bundled_picker_sees_particles_that_noise_lacks() -> None:
    rng = np.random.default_rng(0)
    px = 6.0
    crowded = particle_evidence(_blobs(rng, 60, px, 180.0), px)
    noise = particle_evidence(_blobs(rng, 0, px, 180.0), px)
    assert crowded.shape == noise.shape == (N_PARTICLES,) and np.isfinite(crowded).all()
    i = DIAMETERS.index(180.0)
    assert crowded[i] > noise[i]  # coverage at the particles' diameter
    assert crowded[-1] > noise[-1] + 0.2  # the best blots' score
    with pytest.raises(DracoInputError, match="pixel size"):
        particle_evidence(np.zeros((64, 64), np.float32), None)


def test_vector_length_with_particles() -> None:
    assert N_EVIDENCE == N_PARTICLES  # the picker's evidence is what the curation block holds
    e = 32
    assert n_features(e, FeatureConfig(blocks="stats", particles=True)) == N_STATS + 8 + 8
    assert n_features(e, FeatureConfig(blocks="both", particles=True)) == 2 * e + N_STATS + 16


def test_head_with_particles_trains_caches_and_predicts(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train_curator(
        CurateTrainConfig(
            labels=toy_set / "labels.csv", out_dir=run, weights=str(tiny_encoder),
            progress=False, device="cpu", accept=["clean"], cv=0,
            features=FeatureConfig(tile=64, blocks="stats", particles=True),
        ),
        evidence=ParticleEvidence(),
    )  # fmt: skip
    curator = load_curator(run)
    assert curator.features.particles
    assert curator.head.linear.weight.shape == (2, N_STATS + 8 + N_PARTICLES)
    assert len(list((run / "features").glob("*-particles-*.npy"))) == 16
    pcfg = CuratePredictConfig(
        inputs=[str(toy_set / "mics")], out_dir=tmp_path / "p", model=str(run),
        progress=False, device="cpu",
    )  # fmt: skip
    with pytest.raises(DracoInputError, match="particle evidence"):
        predict_curation(pcfg)  # curation does not import the picker: the caller hands it in
    pred = predict_curation(pcfg, evidence=ParticleEvidence())
    assert len(pred.table) == 16 and set(pred.table["decision"]) <= {"accept", "reject"}


def test_particles_need_a_pixel_size(tiny_encoder: Path, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "nopx.png"  # a picture has no pixel size
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128), np.uint8)).save(path)
    encoder = load_encoder(str(tiny_encoder), torch.device("cpu"))
    cfg = FeatureConfig(tile=64, blocks="stats", particles=True)
    with pytest.raises(DracoInputError, match="pixel size"):
        micrograph_features(encoder, cfg, path, None, evidence=ParticleEvidence())


def test_cli_trains_and_predicts_with_particles(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from draco_em.cli import app

    res = CliRunner().invoke(app, [
        "curate", "train", "--labels", str(toy_set / "labels.csv"), "--weights",
        str(tiny_encoder), "--accept", "clean", "--device", "cpu", "-q", "--features", "stats",
        "--particles", "--cv", "0", "-o", str(tmp_path / "run"),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load_curator(tmp_path / "run").features.particles
    res = CliRunner().invoke(app, [
        "curate", "predict", str(toy_set / "mics"), "--model", str(tmp_path / "run"),
        "-o", str(tmp_path / "pred"), "--device", "cpu", "-q",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "pred" / "curation.csv")
    assert len(table) == 16 and set(table["decision"]) <= {"accept", "reject"}
    assert set(table["signals"]) == {"image;particles"}  # which signals the decision used
