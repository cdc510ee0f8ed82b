"""Every leaf command's ``--help`` ends with an example that its own parser accepts (issue 16)."""

from __future__ import annotations

import shlex

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from draco_em.cli import app

ROOT = get_command(app)


def _leaves(command, path=()):
    subs = getattr(command, "commands", None)
    if not subs:
        yield path, command
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


LEAVES = dict(_leaves(ROOT))


def test_every_leaf_command_is_covered() -> None:
    assert len(LEAVES) >= 17 and ("pick", "predict") in LEAVES and ("info",) in LEAVES


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_help_ends_with_an_example_the_parser_accepts(path: tuple[str, ...]) -> None:
    command = LEAVES[path]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    lines = [line.strip(" │╰─╯") for line in result.output.splitlines()]
    lines = [line for line in lines if line]
    assert "Example:" in lines, result.output
    at = len(lines) - 1 - lines[::-1].index("Example:")
    example = " ".join(lines[at + 1 :])  # the last paragraph (wrapped to the terminal)
    assert example.startswith(f"draco {' '.join(path)} ")
    argv = shlex.split(example)[1 + len(path) :]
    # The command's own parser: unknown options, missing required ones or bad values raise.
    ctx = command.make_context(path[-1], argv)
    assert ctx.params  # parsed, not run


@pytest.mark.parametrize("command", ["denoise", "prepare"])
def test_float16_help_warns_about_relion_31(command: str) -> None:
    option = next(p for p in LEAVES[(command,)].params if p.name == "float16")
    assert "RELION 3.1 refuses" in (option.help or "")


def test_piped_help_shows_every_option_name_whole(monkeypatch) -> None:
    """Help read through a pipe or in a log (no terminal) was cut at 80 columns, and long
    option names with it: `--expected-particl…`, `--exclude-by-curat…` (README walkthrough,
    session 23)."""
    from tests.conftest import run_draco

    monkeypatch.setenv("COLUMNS", "80")  # as a CI job or pytest exports it
    result = run_draco("pick", "predict", "--help")
    assert result.returncode == 0 and "--expected-particles" in result.stdout
    assert "…" not in result.stdout


@pytest.mark.parametrize(
    "path", [(), ("pick",), ("curate",), ("evaluate",), *sorted(LEAVES)], ids=" ".join
)
def test_help_shows_no_rst_markup(path: tuple[str, ...]) -> None:
    """Command summaries are docstrings' first lines: rich prints RST's ``literal`` marks as
    they are (`draco --help` showed "(``bundled``: ...)")."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "``" not in result.output, result.output
