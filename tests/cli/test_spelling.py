"""One spelling per option in every command (issue 16); old spellings still work, with a note."""

from __future__ import annotations

import pytest

from draco_em.cli._app import OLD_SPELLINGS, normalise_argv
from tests.cli.test_help_examples import LEAVES
from tests.conftest import draco_in_process


def _names(path) -> dict[str, list[str]]:
    return {p.name: [*p.opts, *p.secondary_opts] for p in LEAVES[path].params}


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_one_spelling_per_option(path) -> None:
    names = _names(path)
    spelled = {o for opts in names.values() for o in opts}
    assert not spelled & set(OLD_SPELLINGS), spelled & set(OLD_SPELLINGS)
    for opts in names.values():
        if "-o" in opts:
            assert opts == ["-o", "--out"] or opts == ["--out", "-o"], opts
        if "-j" in opts or "--workers" in opts:
            assert sorted(opts) == ["--workers", "-j"], opts
        if "--diameter" in opts:  # in Å everywhere
            help_text = next(p.help for p in LEAVES[path].params if "--diameter" in p.opts)
            assert "Å" in help_text, (path, help_text)
    # --model: the trained model a command applies; the denoiser too (was --weights).
    if path in {("denoise",), ("demo",)}:
        assert "--model" in spelled and "--weights" not in spelled


def test_every_command_with_an_output_takes_dash_o() -> None:
    without = [p for p in LEAVES if not any("-o" in o for o in _names(p).values())]
    # draco relion takes RELION's own spellings (--o, --in_mics, --j): RELION writes them;
    # draco watch passes -o on to the command it runs.
    # (evaluate denoise/pick/curate took none before session 24: they printed only; docs
    # prints, session 25)
    assert sorted(without) == [("docs",), ("info",), ("relion",), ("watch",)]


def test_every_command_with_a_progress_bar_takes_dash_q() -> None:
    """`-q/--quiet` hides the progress bars of every command that draws one (the README's
    rule; `draco demo` lacked it until session 24)."""
    without = [p for p in LEAVES if not any("-q" in o for o in _names(p).values())]
    # no progress bar: they score, describe, print or export in one go; relion and watch pass
    # options on to the command they run
    assert sorted(without) == [("docs",), ("evaluate", "curate"), ("evaluate", "denoise"),
                               ("evaluate", "pick"), ("export",), ("info",), ("relion",),
                               ("watch",)]  # fmt: skip


def test_old_spellings_are_mapped_with_a_note() -> None:
    argv, notes = normalise_argv(["denoise", "in/", "--outdir=o", "--weights", "w", "--jobs", "2"])
    assert argv == ["denoise", "in/", "--out=o", "--model", "w", "--workers", "2"]
    assert len(notes) == 3 and "--outdir is now --out" in notes[0]
    # --weights keeps its meaning where it is the starting point (curate, pick train).
    argv, notes = normalise_argv(["pick", "train", "--weights", "bundled", "--", "--outdir"])
    assert argv == ["pick", "train", "--weights", "bundled", "--", "--outdir"] and not notes


def test_simulate_takes_dash_o_and_the_old_positional(tmp_path, capsys) -> None:
    args = ["--n-micrographs", "1", "--size", "64", "--pixel-size", "4", "--no-movies",
            "--preset", "classic", "-q"]  # fmt: skip
    code, _, err = draco_in_process(capsys, "simulate", "-o", tmp_path / "a", *args)
    assert code == 0 and (tmp_path / "a" / "micrographs.star").is_file(), err
    code, _, err = draco_in_process(capsys, "simulate", tmp_path / "b", *args)
    assert code == 0 and "-o/--out" in err and (tmp_path / "b" / "micrographs.star").is_file()
    code, _, err = draco_in_process(capsys, "simulate", tmp_path / "c", "-o", tmp_path / "d")
    assert code == 2 and "two output folders" in err
    code, _, err = draco_in_process(capsys, "simulate", *args)
    assert code == 2 and "-o/--out" in err


def test_old_outdir_spelling_still_runs(tmp_path, capsys) -> None:
    code, _, err = draco_in_process(capsys, "simulate", "--outdir", tmp_path / "s", "--jobs", "1",
                                    "--n-micrographs", "1", "--size", "64", "--pixel-size", "4",
                                    "--no-movies", "--preset", "classic", "-q")  # fmt: skip
    assert code == 0 and "--outdir is now --out" in err and "--jobs is now --workers" in err
    assert (tmp_path / "s" / "micrographs.star").is_file()


def test_an_option_of_one_value_given_twice_is_refused(capsys) -> None:
    """click keeps the last of an option given twice, without a word: `evaluate pick --truth
    A --truth B` scored against B alone (QA of the wheel install, session 25). Options that
    take several values and on/off flags may repeat; watch and relion pass theirs on."""
    from draco_em.cli._app import main, repeated_option

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "pick", "--pred", "p", "--truth", "a", "--truth=b", "--radius", "5"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.count("\n") == 0
    assert err == ("draco: error: --truth given twice: it takes one value (the last would be "
                   "used without a word); give it once")  # fmt: skip
    assert "--out given twice" in str(repeated_option(["denoise", "in", "-o", "a", "--out", "b"]))
    for fine in (["pick", "train", "--micrographs", "a", "--micrographs", "b"],
                 ["demo", "-q", "-q"], ["watch", "denoise", "in", "-o", "a", "-o", "b"],
                 ["denoise", "in", "-o", "a", "--", "-o"]):  # fmt: skip
        assert repeated_option(fine) is None, fine
