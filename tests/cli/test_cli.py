"""The ``draco`` command-line contract: help, version, ``info``, and user errors.

User errors must reach the terminal as ONE line on stderr with exit code 2 and no traceback, so
those checks run the installed console script in a subprocess (exactly what a user runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from draco_em import __version__
from draco_em.cli import app
from draco_em.io.mrc import write_mrc
from tests.conftest import draco_in_process, run_draco, shared_file

MICROGRAPH = "micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"


_draco = run_draco  # the console script as a user runs it (tests/conftest.py)


@pytest.fixture
def truncated_mrc(tmp_path: Path) -> Path:
    good = write_mrc(tmp_path / "good.mrc", np.ones((64, 64)), 1.0)
    path = tmp_path / "cut_short.mrc"
    path.write_bytes(good.read_bytes()[:3000])
    return path


def test_help_lists_info() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output and "Usage" in result.output


def test_info_bundled_describes_the_shipped_models() -> None:
    """Every --model/--weights option takes `bundled`; `draco info bundled` said "not found"."""
    result = CliRunner().invoke(app, ["info", "bundled", "--json"])
    assert result.exit_code == 0, result.output
    kinds = {Path(d["path"]).name: d["format"] for d in json.loads(result.output)}
    assert kinds["picker.safetensors"].startswith("particle picker")
    assert kinds["curate_head.safetensors"].startswith("curation model")
    assert kinds["draco_denoise_tiny.safetensors"] == "draco-em safetensors"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"draco-em {__version__}"


def test_info_text_on_the_real_micrograph() -> None:
    result = CliRunner().invoke(app, ["info", str(shared_file(MICROGRAPH))])
    assert result.exit_code == 0, result.output
    assert "[927, 959]" in result.output and "float32" in result.output
    assert "placeholder" in result.output  # the 1.0 header pixel size is flagged


def test_info_json_on_the_real_micrograph() -> None:
    result = CliRunner().invoke(app, ["info", str(shared_file(MICROGRAPH)), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["shape"] == [927, 959] and summary["kind"] == "image"
    assert summary["pixel_size"] == 1.0
    assert summary["stats"]["mean"] == pytest.approx(6802, abs=1)


def test_truncated_mrc_is_one_line_and_exit_2(truncated_mrc: Path) -> None:
    proc = _draco("info", truncated_mrc)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("draco: error:") and "cut_short.mrc" in lines[0]
    assert "truncated" in lines[0]


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _draco("info", tmp_path / "nowhere.mrc")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"draco: error: {tmp_path / 'nowhere.mrc'}: file not found"]


def test_several_files_one_bad(truncated_mrc: Path) -> None:
    good = shared_file("mrcfile/EMD-3197.map")
    proc = _draco("info", good, truncated_mrc, shared_file(MICROGRAPH))
    assert proc.returncode == 1  # the batch rule: some described (it said 2, as if none were)
    # Both good files are described, the bad one is one error line.
    assert "EMD-3197.map" in proc.stdout and "Ucsf_stack_1142_DW.mrc" in proc.stdout
    assert "[20, 20, 20]" in proc.stdout and "[927, 959]" in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "cut_short.mrc" in lines[0] and "Traceback" not in proc.stderr


def test_several_files_one_bad_json(truncated_mrc: Path) -> None:
    good = shared_file("mrcfile/EMD-3197.map")
    proc = _draco("info", "--json", truncated_mrc, good)
    assert proc.returncode == 1
    summaries = json.loads(proc.stdout)
    assert [Path(s["path"]).name for s in summaries] == ["EMD-3197.map"]
    assert summaries[0]["nstart"] == [-2, 0, 0]
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize(("rank", "printed"), [("0", True), ("1", False)])
def test_pretrain_prints_its_summary_on_rank_0_only(
    rank, printed, tmp_path, capsys, monkeypatch
) -> None:
    """Under torchrun every rank runs the CLI; the run-folder line comes once, from rank 0."""
    import draco_em.train

    def done(config, *_args, **_kwargs):  # run_pretrain's result on that rank
        return {"metrics": {}, "run_dir": config.out_dir, "is_main": rank == "0"}

    monkeypatch.setattr(draco_em.train, "run_pretrain", done)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.star").write_text("data_\n")
    code, out, _ = draco_in_process(capsys, "pretrain", "--data", "x.star", "-o", "run")
    assert code == 0 and ("run folder" in out) is printed


@pytest.mark.parametrize(("rank", "printed"), [("0", True), ("1", False)])
def test_denoise_prints_and_exits_on_rank_0_only(rank, printed, capsys, monkeypatch) -> None:
    """Under torchrun rank 0 reports the job's counts and exits by them; the other ranks say
    nothing (they printed their own share, QA). tests/cli/test_contract.py runs torchrun."""
    import draco_em.train.adapt

    def shared(cfg, tune):  # run_denoise's result on that rank: every input failed there
        return {"done": 0, "skipped": 0, "failed": 1, "outdir": str(cfg.outdir),
                "with_halves": 0, "is_main": rank == "0"}  # fmt: skip

    monkeypatch.setattr(draco_em.train.adapt, "denoise_with_adaptation", shared)
    code, out, err = draco_in_process(capsys, "denoise", "in.mrc", "-o", "out")
    if printed:
        assert code == 2 and out == "denoised 0, skipped 0 finished, failed 1 → out\n"
        assert "the only input failed" in err
    else:
        assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("pretrain", "--data", "x.mrc", "--stage", "mae", "--pixel-size", "-4", "-o", "run"),
         "invalid --pixel-size: "),
        (("simulate", "-o", "sim", "--particle-size-range", "500", "100"),
         "invalid --particle-size-range: must satisfy 0.0 <= min <= max, got (500.0, 100.0)"),
        (("simulate", "-o", "sim", "--preset", "realistic", "--dose", "-4"), "invalid --dose: "),
    ],
)  # fmt: skip
def test_a_rejected_value_names_the_option_as_typed(argv, message, tmp_path, capsys, monkeypatch):
    """A pydantic config's field can differ from its option (data_pixel_size, a preset's
    range): the one-line error names what the user typed."""
    monkeypatch.chdir(tmp_path)
    code, _, err = draco_in_process(capsys, *argv)
    assert code == 2 and err.startswith(f"draco: error: {message}") and len(err.splitlines()) == 1
    assert not (tmp_path / argv[argv.index("-o") + 1]).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["denoise", "x.mrc", "-o", "out", "--bogus"], "No such option: --bogus"),
        (["denoise"], "Missing argument"),
        (["curate", "predict", "x.mrc", "-o", "out", "--defocus-range", "1"], "requires 2"),
        (["pick", "predict", "x.mrc", "-o", "out", "--threshold", "abc"], "Invalid value"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message) -> None:
    """An unknown option, a missing argument or a value of the wrong type: one line, exit 2
    (typer drew a multi-line box); `draco` alone still prints the help."""
    code, out, err = draco_in_process(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("draco: error: ") and message in err
    code, out, err = draco_in_process(capsys)
    assert code == 2 and "Commands" in out + err


@pytest.mark.parametrize(
    ("typo", "hint"),
    [("--bogus", ""), ("--ot", " (did you mean --out?)"),
     ("--tile-size", " (did you mean --tile?)"), ("--overlp", " (did you mean --overlap?)"),
     ("--batch", " (did you mean --batch-size?)")],
)  # fmt: skip
def test_an_unknown_option_suggests_only_close_ones(capsys, typo, hint) -> None:
    """click compares the names with their '--', which every option shares: --bogus got
    "(Possible options: --out)" (QA)."""
    code, _, err = draco_in_process(capsys, "denoise", "in.mrc", "-o", "x", typo)
    assert code == 2
    assert err == f"draco: error: No such option: {typo}{hint} (draco denoise -h for help)\n"


def _unreadable(path: Path, monkeypatch) -> None:
    """``path`` as a colleague's file without read permission (chmod 000 is no use: tests may
    run as root): click's check and every open are refused."""
    import errno
    import os

    access, real_open = os.access, Path.open
    monkeypatch.setattr(os, "access", lambda p, *a, **k: Path(p) != path and access(p, *a, **k))

    def refuse(self: Path, *args, **kwargs):
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)


def test_info_on_an_unreadable_file_describes_the_others(tmp_path, capsys, monkeypatch) -> None:
    """click's readable check made one unreadable file a usage error: nothing was described."""
    good = write_mrc(tmp_path / "good.mrc", np.ones((64, 64)), 1.0)
    theirs = write_mrc(tmp_path / "theirs.mrc", np.ones((64, 64)), 1.0)
    _unreadable(theirs, monkeypatch)
    code, out, err = draco_in_process(capsys, "info", good, theirs)
    assert code == 1 and "good.mrc" in out and "not readable" not in err
    assert err.splitlines() == [f"draco: error: {theirs}: cannot read the file (Permission denied)"]


def test_pick_predict_takes_an_unreadable_micrograph_past_parsing(
    tmp_path, capsys, monkeypatch
) -> None:
    """click refused the whole command ("Invalid value ... is not readable"); the batch records
    the file in failures.txt instead (here the command stops later, on the missing model)."""
    theirs = write_mrc(tmp_path / "theirs.mrc", np.ones((64, 64)), 1.0)
    _unreadable(theirs, monkeypatch)
    code, _, err = draco_in_process(
        capsys, "pick", "predict", theirs, "-o", tmp_path / "o", "--model", tmp_path / "none"
    )
    assert code == 2 and "not readable" not in err and "Invalid value" not in err, err
