"""``draco export``: run folder → safetensors that load_model reads back with its config."""

from __future__ import annotations

import pytest
import torch

from draco_em.cli import main
from draco_em.model.weights import load_model
from draco_em.train.checkpoint import checkpoint_path, load_checkpoint
from draco_em.train.pretrain import run_pretrain


def draco(*args: str) -> int:
    """Run the ``draco`` console entry point; returns its exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_export_round_trip(tiny_config, tmp_path) -> None:
    config = tiny_config(epochs=1)
    run_pretrain(config)
    out = tmp_path / "model.safetensors"
    assert draco("export", str(config.out_dir), "-o", str(out), "--which", "latest") == 0
    model, model_config, metadata = load_model(out)
    state = load_checkpoint(checkpoint_path(config.out_dir, "latest"))
    assert model_config.embed_dim == 32 and model_config.img_size == 64
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name
    assert metadata["pixel_size_range"] == pytest.approx([1.0, 2.0])
    assert metadata["training"]["stage"] == "draco" and metadata["patch_size"] == 16
    assert metadata["normalization"] == "robust" and metadata["training"]["epoch"] == 1
    # The run folder (its checkpoint) as the model: the same working pixel size as its export
    # (it had none, so the model ran at the input's sampling, silently).
    _, _, from_run = load_model(config.out_dir)
    assert from_run["pixel_size"] == pytest.approx(metadata["pixel_size"])
    assert from_run["pixel_size_range"] == pytest.approx(metadata["pixel_size_range"])


def test_export_errors_are_one_line(tmp_path, capsys) -> None:
    assert draco("export", str(tmp_path / "nothing"), "-o", str(tmp_path / "m.safetensors")) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_export_best_of_a_run_without_best_says_it_took_latest(
    tiny_config, tmp_path, capsys
) -> None:
    """A run without validation writes no best.pt: its latest is exported (the best it has),
    and the summary line says so; before, it said nothing (the helper's QA, session 20)."""
    config = tiny_config(epochs=1, val_fraction=0.0, max_steps=1)
    run_pretrain(config)
    assert not checkpoint_path(config.out_dir, "best").exists()
    out = tmp_path / "m.safetensors"
    for which in (("--which", "best"), ()):  # best is also the default
        out.unlink(missing_ok=True)
        assert draco("export", str(config.out_dir), "-o", str(out), *which) == 0
        said = capsys.readouterr().out
        assert "latest.pt (the run has no best.pt: it ran without validation)" in said
        assert out.is_file()
    before = out.read_bytes()
    assert draco("export", str(config.out_dir), "-o", str(out), "--which", "latest") == 2
    assert "exists: give another -o, or --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before  # an exported model is never replaced unasked
    assert draco("export", str(config.out_dir), "-o", str(out), "--which", "latest",
                 "--overwrite") == 0  # fmt: skip
    assert "no best" not in capsys.readouterr().out
    assert draco("export", str(out), "-o", str(tmp_path / "again.safetensors")) == 2
    assert "is a model file already" in capsys.readouterr().err


def test_cli_pretrain_then_resume(tiny_manifest, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(tiny_manifest),
        "-o",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--crops-per-micrograph",
        "4",
        "--crop-size",
        "32",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        "--max-steps",
        "2",
    ]
    assert draco(*args) == 0
    assert load_checkpoint(checkpoint_path(out, "latest"))["global_step"] == 2
    assert (
        draco(
            "pretrain",
            "-o",
            str(out),
            "--resume",
            "latest",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--no-progress",
        )
        == 0
    )
    assert load_checkpoint(checkpoint_path(out, "latest"))["epoch"] == 1
    code = draco(
        "pretrain", "--data", str(tiny_manifest), "-o", str(tmp_path / "r2"), "--mask-ratio", "0.3"
    )
    assert code == 2 and "mask ratio 0.3" in capsys.readouterr().err


def test_cli_resume_keeps_the_runs_settings(tiny_manifest, tmp_path, caplog) -> None:
    out = tmp_path / "run"
    first = ["pretrain", "--data", str(tiny_manifest), "-o", str(out), "--epochs", "1",
             "--batch-size", "2", "--blr", "0.01", "--crops-per-micrograph", "4",
             "--crop-size", "32", "--device", "cpu", "--workers", "0", "--no-progress",
             "--max-steps", "1"]  # fmt: skip
    assert draco(*first) == 0
    caplog.clear()
    resumed = ["pretrain", "-o", str(out), "--resume", "latest", "--epochs", "2", "--seed", "5"]
    assert draco(*resumed) == 0
    state = load_checkpoint(checkpoint_path(out, "latest"))
    assert state["config"]["batch_size"] == 2 and state["config"]["blr"] == 0.01
    assert state["config"]["epochs"] == 2 and state["config"]["seed"] == 0
    assert state["global_step"] == 2 * 6  # 12 train crops / batch 2, two epochs
    assert "kept the run's seed" in caplog.text  # only the typed, forbidden change is reported


def test_export_half_halves_the_file_and_loads_as_float32(tiny_config, tmp_path) -> None:
    config = tiny_config(epochs=1)
    run_pretrain(config)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    assert draco("export", str(config.out_dir), "-o", str(full), "--which", "latest") == 0
    assert draco("export", str(config.out_dir), "-o", str(half), "--which", "latest", "--half") == 0
    assert half.stat().st_size < 0.6 * full.stat().st_size
    m_full, _, _ = load_model(full)
    m_half, _, _ = load_model(half)
    for (name, a), b in zip(m_full.state_dict().items(), m_half.state_dict().values(), strict=True):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4, msg=name)


def test_a_pretrain_run_folder_starts_a_picker(tiny_config) -> None:
    """`pick train --weights RUN` reads the run's encoder as its export would (it said
    "unknown weights format ''"), like curate train's --weights."""
    from draco_em.pick.config import DetectorConfig
    from draco_em.pick.train import build_detector

    config = tiny_config(epochs=1)
    run_pretrain(config)
    detector, whole = build_detector(str(config.out_dir), DetectorConfig(encoder_blocks=1))
    saved = load_checkpoint(checkpoint_path(config.out_dir, "best"))["model"]
    assert not whole
    assert torch.equal(detector.encoder.state_dict()["patch_embed.proj.weight"],
                       saved["patch_embed.proj.weight"])  # fmt: skip
