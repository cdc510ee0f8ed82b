"""One way to find, open and check model files, with one error wording."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from draco_em.curate.head import load_curator
from draco_em.errors import DracoInputError
from draco_em.io import model_file
from draco_em.io.model_file import read_model_file, read_torch_file, write_model_file
from draco_em.model.weights import load_model
from draco_em.pick.model_io import read_picker


def test_round_trip_and_format_tag(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.safetensors", {"w": torch.ones(2, 3)},
                            {"format": "x/1", "meta": '{"a": 1}'})  # fmt: skip
    file = read_model_file(path, "thing", "x/1")
    assert file.json("meta") == {"a": 1} and file.json("absent", 7) == 7
    assert file.shapes == {"w": [2, 3]} and torch.equal(file.tensors["w"], torch.ones(2, 3))
    assert read_model_file(path, "thing", tensors=False).tensors == {}
    with pytest.raises(DracoInputError, match=r"not a thing \(format tag 'x/1', expected 'y/1'\)"):
        read_model_file(path, "thing", "y/1")


def test_every_loader_words_a_bad_file_the_same_way(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    for load, what in ((load_model, "DRACO weights file"), (load_curator, "curation model"),
                       (read_picker, "picker model")):  # fmt: skip
        with pytest.raises(DracoInputError, match=rf"junk\.safetensors: cannot read {what} \("):
            load(junk)
    foreign = write_model_file(tmp_path / "f.safetensors", {"w": torch.ones(1)}, {"format": "z"})
    for load, what in ((load_curator, "curation model"), (read_picker, "picker model")):
        with pytest.raises(DracoInputError, match=rf"not a {what} \(format tag 'z'"):
            load(foreign)
    with pytest.raises(DracoInputError, match="training checkpoint not found"):
        read_torch_file(tmp_path / "none.pt", "training checkpoint")


def test_a_damaged_torch_file_is_a_short_line_without_torchs_advice(tmp_path: Path) -> None:
    """torch.load's ~700-character refusal advises weights_only=False and a PyTorch bug report:
    wrong for a corrupt file. Both loaders of .pt files say what is wrong in a few words."""
    import argparse

    from draco_em.train.checkpoint import load_checkpoint

    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(166, 256)) * 50)
    pickled = tmp_path / "args.pth"  # an MAE-style checkpoint that also pickles its argparse args
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1)}, pickled)
    damaged = "not a PyTorch checkpoint, or a damaged one"
    cases = [
        (garbage, f"{damaged} (Unsupported operand 166)"),
        (cut, f"{damaged} (PytorchStreamReader failed reading zip archive"),
        (pickled, "it holds a pickled argparse.Namespace; draco loads only tensors"),
    ]
    for load, what in ((load_model, "DRACO weights file"),
                       (load_checkpoint, "training checkpoint")):  # fmt: skip
        for path, reason in cases:
            with pytest.raises(DracoInputError) as info:
                load(path)
            message = str(info.value)
            assert message.startswith(f"{path}: cannot read {what}: {reason}"), message
            assert "weights_only" not in message and len(message) < 200 + len(str(path))


def test_bundled_is_recognised_by_name_and_by_path(tmp_path: Path) -> None:
    """The bundled-only advice (pick's thresholds, curate's warning) follows the file, not
    the spelling: "bundled", the shipped file's path; never another file or a missing one."""
    from draco_em.curate.head import is_bundled_curator, resolve_curator_path
    from draco_em.pick.model_io import is_bundled_picker, resolve_picker

    for is_bundled, resolve in ((is_bundled_curator, resolve_curator_path),
                                (is_bundled_picker, resolve_picker)):  # fmt: skip
        shipped = resolve("bundled")
        assert is_bundled("bundled") and is_bundled(shipped) and is_bundled(str(shipped))
        copy = tmp_path / f"copy_{shipped.name}"
        copy.write_bytes(shipped.read_bytes())
        assert not is_bundled(copy)  # a user's file, even with the same bytes
        assert not is_bundled(tmp_path / "missing.safetensors")


def test_ctrl_c_while_a_model_is_read_is_an_interrupt_not_a_damaged_file(tmp_path, monkeypatch):
    """Session 20's QA: Ctrl-C while denoise loaded its weights gave exit 2 and "cannot read
    DRACO weights file (could not determine the shape of object type ...)": torch turned the
    KeyboardInterrupt into a ValueError. The interrupt now waits for the read, then stops it."""
    path = write_model_file(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {})
    real_open = model_file.safe_open

    def interrupted_open(*args, **kwargs):  # Ctrl-C lands inside native code, as in the report
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        except KeyboardInterrupt:
            raise ValueError(
                "could not determine the shape of object type 'UntypedStorage'"
            ) from None
        return real_open(*args, **kwargs)

    monkeypatch.setattr(model_file, "safe_open", interrupted_open)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        read_model_file(path, "thing")
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
    monkeypatch.setattr(model_file, "safe_open", real_open)
    assert read_model_file(path, "thing").shapes == {"w": [2]}  # no interrupt: a plain read


def test_a_model_rewritten_while_it_is_loaded_is_refused(tmp_path):
    """The version a batch folder records (io.model_file.model_stamp) is taken before the
    model loads and checked after: a file rewritten in between (a pretrain run saving its
    best checkpoint) would record one version and make outputs with another."""
    from draco_em.io.model_file import load_stamped, model_stamp

    path = tmp_path / "best.safetensors"
    path.write_bytes(b"12345")
    value, stamp = load_stamped(path, lambda: "model")
    assert (value, stamp) == ("model", model_stamp(path))
    assert load_stamped(None, lambda: "bundled") == ("bundled", None)

    def rewrite() -> str:
        os.utime(path, ns=(5, 5))
        return "half old, half new"

    with pytest.raises(DracoInputError, match="rewritten while this run read it"):
        load_stamped(path, rewrite)


def test_a_model_version_reads_the_same_in_every_time_zone(tmp_path, monkeypatch):
    """The stamp was written in local time: a folder made on a UTC node was refused on a
    workstation set to another zone, for the same file (review, session 25)."""
    from draco_em.io.model_file import model_stamp

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"x")
    stamps = set()
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        stamps.add(model_stamp(path))
    monkeypatch.delenv("TZ")
    time.tzset()
    assert len(stamps) == 1 and next(iter(stamps)).endswith("Z")
