"""Training the head: the loss falls, two easy classes separate, fine-tuning, the saved file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.curate.config import CuratePredictConfig, CurateTrainConfig, FeatureConfig
from draco_em.curate.head import CurationHead, load_curator
from draco_em.curate.predict import predict_curation
from draco_em.curate.train import class_weights, train_curator


def _cfg(labels: Path, out: Path, encoder: Path, **kw: object) -> CurateTrainConfig:
    return CurateTrainConfig(
        labels=labels,
        out_dir=out,
        weights=str(encoder),
        progress=False,
        features=FeatureConfig(tile=64),
        device="cpu",
        **kw,
    )


def test_head_is_batchnorm_without_affine_then_linear() -> None:
    head = CurationHead(6, 3)
    assert not head.norm.affine
    assert head(torch.randn(4, 6)).shape == (4, 3)


def test_training_separates_good_from_contaminated(
    toy_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    summary = train_curator(_cfg(toy_set / "micrographs.star", tmp_path, tiny_encoder, epochs=60))
    assert summary["classes"] == ["good", "contamination"]
    assert summary["train_accuracy"] == 1.0
    hist = summary["loss_history"]
    assert hist[-1] < 0.5 * hist[0]
    curator = load_curator(tmp_path)
    assert curator.classes == ["good", "contamination"] and curator.accept == ["good"]
    assert curator.features.tile == 64 and curator.finetune == 0
    # 2E + 8: mean + upper quantile of E = 32, then the spectrum features
    assert curator.head.linear.weight.shape == (2, 72)
    # A second run re-uses the cached features: one file per micrograph.
    assert len(list((tmp_path / "features").glob("*.npz"))) == 16


def test_custom_names_and_finetuning(toy_set: Path, tiny_encoder: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        toy_set / "labels.csv",
        tmp_path,
        tiny_encoder,
        epochs=30,
        accept=["clean"],
        finetune=1,
        val_fraction=0.25,
    )
    summary = train_curator(cfg)
    assert summary["classes"] == ["clean", "dirty"] and "val_accuracy" in summary
    curator = load_curator(tmp_path / "curator.safetensors")
    assert curator.finetune == 1 and curator.accept == ["clean"]
    tuned = set(curator.encoder_state)
    assert any(k.startswith("blocks.1.") for k in tuned) and "norm.weight" in tuned
    assert not any(k.startswith("blocks.0.") for k in tuned)
    # The stored block differs from the random encoder's: it was trained.
    from draco_em.model.weights import load_model

    base, _, _ = load_model(tiny_encoder)
    key = "blocks.1.mlp.fc1.weight"
    assert not np.allclose(curator.encoder_state[key].numpy(), base.state_dict()[key].numpy())

    # Prediction runs the stored blocks on cached tokens.
    pred = predict_curation(
        CuratePredictConfig(
            inputs=[str(toy_set / "mics")],
            out_dir=tmp_path / "p",
            model=str(tmp_path),
            progress=False,
            device="cpu",
        )
    )
    assert len(pred.table) == 16 and set(pred.table["reason"]) <= {"clean", "dirty"}


def test_class_weights_balance_accept_against_all_reject_reasons() -> None:
    y = np.array([0] * 6 + [1] * 2 + [2] * 4)  # 6 good, 2 + 4 of two reject reasons
    w = class_weights(y, 4, accept_index=[0])
    total = np.bincount(y, minlength=4) * w
    assert total[0] == pytest.approx(total[1] + total[2])  # accept vs reject: half each
    assert total[1] == pytest.approx(total[2])  # reasons share the reject half equally
    assert w[3] == 0.0  # a class nobody labelled


def test_the_head_names_its_encoder_by_an_absolute_path(tmp_path, monkeypatch) -> None:
    """A head trained with `--weights exp/enc.safetensors` named it relative to where it was
    trained, and curate predict from another folder could not find it."""
    from draco_em.io.run_folder import absolute_name as _absolute

    monkeypatch.chdir(tmp_path)
    Path("exp").mkdir()
    Path("exp/enc.safetensors").write_bytes(b"")
    assert _absolute("exp/enc.safetensors") == str(tmp_path / "exp" / "enc.safetensors")
    assert _absolute("bundled") == "bundled"
