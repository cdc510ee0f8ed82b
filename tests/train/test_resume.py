"""Resume equivalence: a run killed mid-epoch, resumed with --resume latest, ends bitwise equal."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.train.checkpoint import checkpoint_path, load_checkpoint, rng_state, set_rng_state
from draco_em.train.config import PretrainConfig
from draco_em.train.pretrain import run_pretrain


class Crash(RuntimeError):
    """Stands in for a kill -9 / node failure."""


def _crash_at(step: int):
    def hook(state, stats) -> None:
        if state.global_step == step:
            raise Crash(f"killed at step {step}")

    return hook


def _final_weights(config: PretrainConfig) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint_path(config.out_dir, "latest"))["model"]


@pytest.mark.parametrize("accum", [1, 2])
def test_killed_run_resumes_to_identical_weights(tiny_config, tmp_path, accum: int) -> None:
    # 3 train micrographs × 4 crops = 12 crops; batch 2 × accum → 6/accum steps per epoch.
    kw = {"epochs": 2, "batch_size": 2, "accum": accum, "save_every_steps": 2, "log_every_steps": 1}
    straight = tiny_config(out_dir=tmp_path / "straight", **kw)
    run_pretrain(straight)

    broken = tiny_config(out_dir=tmp_path / "broken", **kw)
    crash_step = 5  # mid-epoch; the last checkpoint is step 4, also mid-epoch
    with pytest.raises(Crash):
        run_pretrain(broken, on_step=_crash_at(crash_step))
    ckpt = load_checkpoint(checkpoint_path(broken.out_dir, "latest"))
    assert ckpt["global_step"] < crash_step and ckpt["step_in_epoch"] > 0  # resumes mid-epoch
    result = run_pretrain(broken.model_copy(update={"resume": "latest"}))
    assert result["state"].global_step == 2 * 6 // accum
    # metrics.jsonl as the uninterrupted run's: the steps logged after the checkpoint went
    # (they were logged again on resume, so they stood twice)
    lines = lambda c: [  # noqa: E731
        (r["kind"], r["step"]) for r in map(json.loads, (c.out_dir / "metrics.jsonl").open())
    ]
    assert lines(broken) == lines(straight)

    a, b = _final_weights(straight), _final_weights(broken)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ref = load_checkpoint(checkpoint_path(straight.out_dir, "latest"))
    res = load_checkpoint(checkpoint_path(broken.out_dir, "latest"))
    timeless = lambda val: {k: v for k, v in val.items() if k != "seconds"}  # noqa: E731
    assert timeless(ref["val"]) == timeless(res["val"])  # validation metrics identical too
    for sa, sb in zip(
        ref["optimizer"]["state"].values(), res["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_max_steps_stops_with_checkpoint_and_resume_continues(tiny_config, tmp_path) -> None:
    config = tiny_config(out_dir=tmp_path / "run", epochs=2, max_steps=4)
    result = run_pretrain(config)
    assert result["state"].global_step == 4
    ckpt = load_checkpoint(checkpoint_path(config.out_dir, "latest"))
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)
    assert ckpt["scheduler"]["last_epoch"] == 4
    # A resumed command may extend the run and change the device, but not the batch size.
    resumed = config.model_copy(update={"resume": "latest", "max_steps": None, "batch_size": 3})
    result = run_pretrain(resumed)
    assert result["state"].global_step == 6
    saved = PretrainConfig.load(config.out_dir / "config.yaml")
    assert saved.batch_size == 4 and saved.max_steps is None


def test_resume_latest_without_checkpoint_starts_fresh(tiny_config, tmp_path) -> None:
    config = tiny_config(out_dir=tmp_path / "run", epochs=1, resume="latest")
    assert run_pretrain(config)["state"].global_step == 3


def test_resume_latest_before_any_checkpoint_takes_the_corrected_command(tiny_config) -> None:
    """A first try that stopped before its first checkpoint (here a crop larger than the
    micrographs) left a config.yaml; `--resume latest` with the mistake corrected kept that
    config.yaml's crop size and failed again, for as long as the folder lived (QA, session 24).
    """
    from draco_em.errors import DracoInputError

    with pytest.raises(DracoInputError, match="--crop-size"):
        run_pretrain(tiny_config(crop_size=100000, resume="latest"))
    config = tiny_config(epochs=1, resume="latest")
    assert run_pretrain(config)["state"].epoch == 1
    assert PretrainConfig.load(config.out_dir / "config.yaml").crop_size == 64


def test_rng_state_round_trip() -> None:
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_resume_with_more_epochs_stretches_the_schedule(tiny_config, tmp_path) -> None:
    import json

    from draco_em.train.optim import WarmupCosine, scaled_lr

    config = tiny_config(out_dir=tmp_path / "run", epochs=2, max_steps=4, log_every_steps=1)
    run_pretrain(config)
    run_pretrain(config.model_copy(update={"resume": "latest", "max_steps": None, "epochs": 4}))
    lines = [json.loads(x) for x in (config.out_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = {x["step"]: x["lr"] for x in lines if x["kind"] == "train"}
    peak = scaled_lr(config.blr, 4)
    assert lrs[4] == pytest.approx(peak * WarmupCosine(3, 6)(3))  # before: 2 epochs of 3 steps
    assert lrs[5] == pytest.approx(peak * WarmupCosine(3, 12)(4))  # after: 4 epochs
    assert len(lrs) == 12


def test_a_noise2noise_stage_run_resumes(tiny_config, tmp_path) -> None:
    """--stage denoise never masks, so the mask token gets no gradient and no Adam state; the
    strict optimiser load refused every resume of such a run (and of `denoise --adapt`)."""
    kw = {"epochs": 2, "batch_size": 2, "save_every_steps": 2, "stage": "denoise"}
    straight = tiny_config(out_dir=tmp_path / "straight", **kw)
    run_pretrain(straight)
    broken = tiny_config(out_dir=tmp_path / "broken", **kw)
    with pytest.raises(Crash):
        run_pretrain(broken, on_step=_crash_at(5))
    run_pretrain(broken.model_copy(update={"resume": "latest"}))
    a, b = _final_weights(straight), _final_weights(broken)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_from_a_checkpoint_path_uses_its_settings(tiny_config, tmp_path) -> None:
    """`--resume PATH -o NEW` has no config.yaml to keep: the checkpoint's stored settings are
    the run's (this command's defaults built another model: a size-mismatch traceback)."""
    first = tiny_config(out_dir=tmp_path / "a", epochs=1)
    run_pretrain(first)
    branch = tiny_config(out_dir=tmp_path / "b", epochs=2, crop_size=32, batch_size=2,
                         resume=str(checkpoint_path(first.out_dir, "latest")))  # fmt: skip
    result = run_pretrain(branch)
    assert result["state"].global_step == 2 * 3  # 3 steps an epoch at the run's batch of 4
    saved = PretrainConfig.load(branch.out_dir / "config.yaml")
    assert saved.crop_size == 64 and saved.batch_size == 4 and saved.epochs == 2


def test_ctrl_c_between_an_update_and_its_count_resumes_bitwise(
    tiny_config, tmp_path, monkeypatch
) -> None:
    """A SIGINT that lands after the optimiser update but before the step is counted waits
    for the count: the checkpoint saved on Ctrl-C then holds the update once (it held it with
    the old count, so the resume applied that step twice; QA, session 22)."""
    kw = {"epochs": 2, "batch_size": 2}
    straight = tiny_config(out_dir=tmp_path / "straight", **kw)
    run_pretrain(straight)
    broken = tiny_config(out_dir=tmp_path / "broken", **kw)
    original, calls = torch.optim.AdamW.zero_grad, []

    def zero_grad(self, *args, **kwargs):  # called between the update and the count
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "zero_grad", zero_grad)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(broken)
    monkeypatch.undo()
    assert load_checkpoint(checkpoint_path(broken.out_dir, "latest"))["global_step"] == 3
    run_pretrain(broken.model_copy(update={"resume": "latest"}))
    a, b = _final_weights(straight), _final_weights(broken)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_from_another_working_folder(tiny_config, tiny_manifest, tmp_path, monkeypatch):
    """config.yaml names the manifest by an absolute path: `--resume latest` from another
    folder found no relative `--data` (QA, session 22)."""
    monkeypatch.chdir(tiny_manifest.parent)
    config = tiny_config(data=Path(tiny_manifest.name), out_dir=tmp_path / "run", epochs=1)
    run_pretrain(config)
    assert PretrainConfig.load(config.out_dir / "config.yaml").data == tiny_manifest.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_pretrain(config.model_copy(update={"resume": "latest", "epochs": 2}))
    assert result["state"].epoch == 2


def test_ctrl_c_during_validation_validates_that_epoch_on_resume(
    tiny_config, tmp_path, monkeypatch
) -> None:
    """The epoch counted as done before its validation, so a Ctrl-C there saved it as done
    and the resume skipped its validation for good (QA, session 22)."""
    from draco_em.train import pretrain

    config = tiny_config(out_dir=tmp_path / "run", epochs=2, log_every_steps=1)
    original = pretrain.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(config)
    monkeypatch.setattr(pretrain, "evaluate", original)
    saved = load_checkpoint(checkpoint_path(config.out_dir, "latest"))
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (0, 3, 3)
    run_pretrain(config.model_copy(update={"resume": "latest"}))
    lines = [json.loads(x) for x in (config.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(x["epoch"], x["step"]) for x in lines if x["kind"] == "val"] == [(1, 3), (2, 6)]
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, 7))


def test_resume_with_fewer_epochs_than_trained_is_refused(tiny_config, tmp_path) -> None:
    """It trained nothing, silently, and wrote the smaller number into config.yaml."""
    from draco_em.errors import DracoInputError

    config = tiny_config(out_dir=tmp_path / "run", epochs=2)
    run_pretrain(config)
    before = (config.out_dir / "config.yaml").read_text()
    with pytest.raises(DracoInputError, match="--epochs 1 is fewer than the 2 epochs"):
        run_pretrain(config.model_copy(update={"resume": "latest", "epochs": 1}))
    assert (config.out_dir / "config.yaml").read_text() == before


def test_resuming_a_finished_run_says_there_is_nothing_to_do(tiny_config, tmp_path) -> None:
    config = tiny_config(out_dir=tmp_path / "run", epochs=1)
    first = run_pretrain(config)
    again = run_pretrain(config.model_copy(update={"resume": "latest"}))
    assert again["state"].global_step == first["state"].global_step
    assert again["metrics"]["epoch"] == 1  # the last epoch's record, for the summary line
    assert "nothing to do" in (config.out_dir / "run.log").read_text()


def test_resume_needs_neither_the_initial_weights_nor_their_file(tiny_config, tmp_path) -> None:
    """The architecture came from --init-weights, read before the checkpoint: a resume failed
    once that file had been moved, although the checkpoint holds every weight (QA, session
    22). The checkpoint's own architecture is used, and run.log says what resuming kept."""
    from draco_em.train.checkpoint import export_run

    first = tiny_config(out_dir=tmp_path / "first", epochs=1)
    run_pretrain(first)
    init = tmp_path / "init.safetensors"
    export_run(first.out_dir, init)
    config = tiny_config(out_dir=tmp_path / "run", epochs=2, init_weights=init, max_steps=2)
    run_pretrain(config)
    init.unlink()
    resumed = config.model_copy(update={"resume": "latest", "max_steps": None, "seed": 5})
    result = run_pretrain(resumed)
    assert result["state"].epoch == 2
    log = (config.out_dir / "run.log").read_text()
    assert "kept the run's seed" in log and "at epoch 1, step 2" in log


def test_branching_from_a_checkpoint_needs_no_data_option(tiny_config, tmp_path, capsys):
    """`draco pretrain --resume PATH.pt -o NEW` stopped with "--data is required": the
    checkpoint records the run's data (README walkthrough, session 23)."""
    from tests.conftest import draco_in_process

    first = tiny_config(out_dir=tmp_path / "a", epochs=1)
    run_pretrain(first)
    latest = checkpoint_path(first.out_dir, "latest")
    code, _, err = draco_in_process(capsys, "pretrain", "--resume", latest, "-o",
                                      tmp_path / "b", "--epochs", "2", "--no-progress")  # fmt: skip
    assert code == 0, err
    saved = PretrainConfig.load(tmp_path / "b" / "config.yaml")
    assert saved.data == first.data.resolve() and saved.epochs == 2
    # Nothing but --epochs was typed: no option is said to be overridden (every default of
    # this command was listed as "kept the run's crop_size, ..." before).
    assert "kept the run's" not in (tmp_path / "b" / "run.log").read_text()
