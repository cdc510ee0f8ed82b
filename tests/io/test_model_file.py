"""One way to find, open and check model files, with one error wording."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from draco_em.curate.head import load_curator
from draco_em.errors import DracoInputError
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
