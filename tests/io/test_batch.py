from pathlib import Path

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.batch import FailureLog, expand_inputs, settings_changes, shard
from draco_em.io.mrc import write_mrc


def _mic(path: Path) -> Path:
    write_mrc(path, np.random.default_rng(0).normal(size=(8, 8)), 1.0)
    return path


def test_expand_files_globs_folders(tmp_path):
    a = _mic(tmp_path / "a.mrc")
    b = _mic(tmp_path / "sub" / "b.mrc")
    (tmp_path / "sub" / "notes.txt").write_text("x")
    got = expand_inputs([str(a), str(tmp_path / "sub")]).items
    assert [i.path for i in got] == [a, b]
    got = expand_inputs([str(tmp_path / "*.mrc")]).items
    assert [i.path.name for i in got] == ["a.mrc"]


def test_a_file_given_twice_counts_once_and_a_star_does_not_mix(tmp_path):
    """A path and a glob that matches it (or ./path) are one input; a micrographs STAR beside
    plain files is refused (its rows carry optics and signals the files lack)."""
    a, b = _mic(tmp_path / "a.mrc"), _mic(tmp_path / "b.mrc")
    got = expand_inputs([str(a), str(tmp_path / "*.mrc"), str(tmp_path / "." / "a.mrc")]).items
    assert [i.path.name for i in got] == ["a.mrc", "b.mrc"]
    star = tmp_path / "mics.star"
    star.write_text(f"data_micrographs\n\nloop_\n_rlnMicrographName #1\n{a}\n")
    with pytest.raises(DracoInputError, match="not both"):
        expand_inputs([str(star), str(b)])


def test_repeated_star_rows_are_read_once_and_said_once(tmp_path, capsys, monkeypatch):
    """The same micrograph on two rows of a STAR was processed twice: pick said "28 picks on
    1 micrographs" (14), denoise "denoised 2", curate listed it twice."""
    a, b = _mic(tmp_path / "a.mrc"), _mic(tmp_path / "b.mrc")
    star = tmp_path / "mics.star"
    star.write_text(f"data_micrographs\n\nloop_\n_rlnMicrographName #1\n{a}\na.mrc\n{b}\n{a}\n")
    got = expand_inputs([str(star)]).items
    assert [(i.path.name, i.star_row) for i in got] == [("a.mrc", 0), ("b.mrc", 2)]
    err = capsys.readouterr().err
    assert err.count("warning: 2 repeated rows of the STAR were read once") == 1
    monkeypatch.setenv("RANK", "1")  # another torchrun rank reads the same STAR: silent
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert len(expand_inputs([str(star)]).items) == 2 and capsys.readouterr().err == ""


def test_expand_errors(tmp_path):
    with pytest.raises(DracoInputError, match="no such file"):
        expand_inputs([str(tmp_path / "missing*.mrc")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DracoInputError, match="holds no"):
        expand_inputs([str(tmp_path / "empty")])
    _mic(tmp_path / "x" / "m.mrc")
    _mic(tmp_path / "y" / "m.mrc")
    with pytest.raises(DracoInputError, match="collide"):
        expand_inputs([str(tmp_path / "x"), str(tmp_path / "y")])
    # curate predict names no output by stem: two grids' m.mrc are both curated
    both = expand_inputs([str(tmp_path / "x"), str(tmp_path / "y")], unique_stems=False)
    assert [i.path.parent.name for i in both.items] == ["x", "y"]


def test_failure_log_and_shard(tmp_path):
    log = FailureLog(tmp_path)
    log.record("a.mrc", "truncated\nfile")
    log.record("b.mrc", "NaN pixels")
    assert log.path.read_text() == "a.mrc\ttruncated file\nb.mrc\tNaN pixels\n"
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for part in parts for x in part) == items


def test_drop_halves_keeps_full_sums_and_lone_halves(tmp_path):
    """X_EVN / X_ODD beside an input X are X's halves, not micrographs; a half whose full sum
    is not an input is kept (it may be all the user has)."""
    from draco_em.io.halves import drop_halves

    img = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    for name in ("a", "a_EVN", "a_ODD", "b_EVN", "c"):
        write_mrc(tmp_path / f"{name}.mrc", img, pixel_size=1.0)
    kept, n = drop_halves(expand_inputs([tmp_path]))
    assert n == 2 and [it.path.stem for it in kept.items] == ["a", "b_EVN", "c"]
    alone, n = drop_halves(expand_inputs([tmp_path / "a_EVN.mrc", tmp_path / "a_ODD.mrc"]))
    assert n == 0 and len(alone.items) == 2


def test_placeholder_pixel_size_warning_names_headers_that_say_one_angstrom(tmp_path) -> None:
    """A 1.0 Å header is often a placeholder: one line, unless --pixel-size is given."""
    from draco_em.io.batch import placeholder_pixel_size_warning
    from draco_em.io.mrc import read_mrc
    from draco_em.simulate.config import SimulateConfig
    from draco_em.simulate.run import run_simulation

    img = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    write_mrc(tmp_path / "a.mrc", img, 1.0)
    write_mrc(tmp_path / "b.mrc", img, 1.06)
    both = expand_inputs([tmp_path])
    warning = placeholder_pixel_size_warning(both, None, "denoise")
    assert warning is not None and warning.startswith("1 of 2 inputs") and "a.mrc" in warning
    assert placeholder_pixel_size_warning(both, 1.0, "denoise") is None  # the user said so
    assert placeholder_pixel_size_warning(expand_inputs([tmp_path / "b.mrc"]), None, "pick") is None
    sim = tmp_path / "sim"  # draco simulate's files state the pixel size they simulated
    run_simulation(SimulateConfig(outdir=sim, n_micrographs=1, size=64, preset="classic",
                                  movies=False), progress=False)  # fmt: skip
    assert read_mrc(sim / "micrographs" / "mic_00001.mrc").pixel_size == 1.0
    assert (
        placeholder_pixel_size_warning(expand_inputs([sim / "micrographs"]), None, "pick") is None
    )


def test_a_header_without_pixel_size_is_said_where_the_stage_goes_on(tmp_path) -> None:
    """Header 0: denoise and curate run at the input's sampling (a guess) and say so in one
    line; pick fails each such input with the reason instead (no line here)."""
    import mrcfile

    from draco_em.io.batch import placeholder_pixel_size_warning

    with mrcfile.new(tmp_path / "z.mrc") as mrc:
        mrc.set_data(np.zeros((32, 32), np.float32))
        mrc.voxel_size = 0.0
    inputs = expand_inputs([tmp_path / "z.mrc"])
    for stage in ("denoise", "curate"):
        warning = placeholder_pixel_size_warning(inputs, None, stage)
        assert warning is not None and "no pixel size" in warning and "z.mrc" in warning
    assert placeholder_pixel_size_warning(inputs, None, "pick") is None
    assert placeholder_pixel_size_warning(inputs, 2.0, "denoise") is None
    write_mrc(tmp_path / "one.mrc", np.zeros((32, 32), np.float32), 1.0)  # beside it, 1.0 Å
    both = placeholder_pixel_size_warning(expand_inputs([tmp_path]), None, "curate")
    assert both is not None and "z.mrc" in both and "one.mrc" in both  # each said, not one


def test_settings_changes_one_comparison_for_every_resumable_folder(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"dose": 40, "jobs": 1, "gone": 3}')
    # a key only the record has: an option set back to its default (batch folders record
    # options only when not default), or a field a command dropped (recorded_only)
    assert settings_changes(path, {"dose": 40, "jobs": 1}) == "gone 3 → None"
    assert settings_changes(path, {"dose": 40}, recorded_only=True) is None
    assert settings_changes(path, {"dose": 20}, recorded_only=True) == "dose 40 → 20"
    assert settings_changes(path, {"dose": 40, "jobs": 4}, ignore={"jobs", "gone"}) is None
    # a key recorded only by later versions: an older folder had its legacy value
    legacy = {"preset": "classic"}
    same = {"dose": 40, "preset": "classic"}
    assert settings_changes(path, same, legacy, {"jobs", "gone"}) is None
    assert settings_changes(path, {"preset": "realistic"}, legacy, recorded_only=True) == (
        "preset 'classic' → 'realistic'"
    )
    path.write_text('{"dose": 4')  # damaged: records nothing, so everything differs
    assert settings_changes(path, {"dose": 40}, recorded_only=True) == "dose None → 40"


def test_a_long_setting_is_shown_where_it_changed():
    """A value longer than a line is cut, but where it differs: a model file rewritten in
    place (model_file: name, size, time stamp) was refused with "'m.safetensors, 247352
    bytes, modified 2026-12-06T23:32:2... → 'm.safetensors, ... 2026-12-06T23:32:2...",
    the same text both sides (QA, session 25)."""
    from draco_em.io.batch import settings_diff

    stamp = "draco_pretrain_best.safetensors, 123456789 bytes, modified 2026-12-06T23:32:{}"
    said = settings_diff({"model_file": stamp.format("29.154108")},
                         {"model_file": stamp.format("41.000000")})  # fmt: skip
    assert said is not None
    old, new = said.removeprefix("model_file ").split(" → ")
    assert old.endswith("23:32:29.154108'") and new.endswith("23:32:41.000000'")
    assert len(old) <= 60 and len(new) <= 60
    # and its first part, the file's name, still says which model (QA of watch, session 25)
    assert old.startswith("'draco_pretrain_best.safetensors, ...") and new.startswith("'draco_")
    short = settings_diff({"tile": 256, "blocks": [1] * 40}, {"tile": 128, "blocks": [2] * 40})
    assert short == (  # values that differ early are cut from their start, as before
        "blocks [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,... → "
        "[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,..., tile 256 → 128"
    )
