"""Input-aware resume (io.batch): an output counts as done only while the input files it was
made from are as they were then."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from draco_em.io.batch import check_settings
from draco_em.io.resume import (
    INPUTS_FOLDER,
    input_states,
    inputs_changed,
    record_inputs,
    redone_note,
)


def _write(path: Path, text: str, mtime_ns: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_an_output_is_done_until_one_of_its_input_files_changes(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    mic, half = _write(src / "m.mrc", "aaaa", 10**18), _write(src / "m_EVN.mrc", "e", 10**18)
    output = _write(out / "sub" / "m.mrc", "denoised", 10**18)
    assert not inputs_changed(out, output, input_states([mic, half]))  # no record: as before
    record_inputs(out, output, input_states([mic, half]))
    assert not inputs_changed(out, output, input_states([mic, half]))
    _write(mic, "bbbb", 10**18 + 10**9)  # rewritten: same size, a second later
    assert inputs_changed(out, output, input_states([mic, half]))
    _write(mic, "aaaa", 10**18)
    assert inputs_changed(out, output, input_states([mic]))  # the half is no longer read
    assert inputs_changed(out, output, input_states([mic, half, src / "m_ODD.mrc"]))
    moved = tmp_path / "moved"  # mv keeps size and time stamp: still done
    shutil.move(src, moved)
    assert not inputs_changed(out, output, input_states([moved / "m.mrc", moved / "m_EVN.mrc"]))
    records = list((out / INPUTS_FOLDER).iterdir())
    assert [r.name for r in records] == ["sub+m.mrc.json"]  # one per output, flat
    records[0].write_text("{not json")
    assert inputs_changed(out, output, [])  # a damaged record: done again


def test_a_file_missing_when_recorded_counts_as_changed_once_it_appears(tmp_path):
    """A mask (pick --exclude-masks) added after the picks were made redoes them."""
    out = tmp_path / "out"
    output, mask = _write(out / "a.star", "picks", 1), tmp_path / "masks" / "a.mrc"
    states = input_states([mask])
    assert states == [("a.mrc", None, None)]
    record_inputs(out, output, states)
    assert json.loads(next((out / INPUTS_FOLDER).iterdir()).read_text())["inputs"] == [
        ["a.mrc", None, None]
    ]
    assert not inputs_changed(out, output, input_states([mask]))
    _write(mask, "1", 5)
    assert inputs_changed(out, output, input_states([mask]))


def test_input_records_alone_are_no_outputs_made_with_the_settings(tmp_path):
    """The hidden records do not make a folder count as holding outputs: with its outputs
    gone, other settings are taken as for an empty folder."""
    out = tmp_path / "out"
    output = _write(out / "a.mrc", "x", 1)
    record_inputs(out, output, [])
    check_settings(out, "denoise", {"tile": 64}, overwrite=False)
    output.unlink()
    check_settings(out, "denoise", {"tile": 128}, overwrite=False)  # not refused


def test_the_redone_note_names_the_first_inputs():
    assert redone_note([]) is None
    note = redone_note(["a.mrc", "b.mrc"])
    assert note == "2 redone: input changed since processed (a.mrc, b.mrc)"
    assert str(redone_note(list("abcd"))).endswith("(a, b, c, ...)")
