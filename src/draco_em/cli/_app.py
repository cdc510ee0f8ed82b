"""The typer application that every ``draco_em.cli.<command>`` module registers on."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from draco_em import __version__
from draco_em.allocator import tune_allocator
from draco_em.errors import DracoInputError, close_names, option_name

app = typer.Typer(
    name="draco",
    help=(
        "DRACO for cryo-EM: denoise micrographs and tilt series, curate micrographs and pick "
        "particles with a denoising-reconstruction masked autoencoder."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def example(command: str) -> str:
    """The epilog every leaf command's ``--help`` ends with: one working example.

    (The command function's docstring is shown above the options; typer renders the epilog
    after them, one paragraph per blank-line-separated block.)
    """
    return f"Example:\n\n  {command}"


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` → ``["a", "b", "c"]``; None or only commas/spaces → None (the option's default).

    The one parser of comma-separated options (``--classes``, ``--accept``, ``--format``,
    ``--exclude-classes``).
    """
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


def batch_exit_code(n_inputs: int, n_failed: int) -> int:
    """The exit code of every batch command: 0 all succeeded, 1 some failed, 2 every one failed.

    ``n_inputs`` counts every input of the run, the ones finished by an earlier run included.
    (2 is also what a command that could not run at all exits with: :func:`draco_em.cli.main`.)
    """
    if n_failed == 0:
        return 0
    return 2 if n_failed >= n_inputs else 1


def halves_note(n: int) -> str:
    """The summary line's note on X_EVN/X_ODD inputs skipped beside their full sum X
    (``io.halves.drop_halves``), or nothing."""
    return f"; {n} half sums (_EVN/_ODD) beside their full sums skipped" if n else ""


def first_failure(failure_log: str | Path) -> str | None:
    """The reason of the first failure in a ``failures.txt`` (``path<TAB>reason`` lines), so
    that the summary line says what went wrong, not only where it is listed."""
    try:
        with open(failure_log, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\n")
    except OSError:
        return None
    return line.split("\t", 1)[-1] or None


def exit_batch(n_inputs: int, n_failed: int, failure_log: str | Path) -> None:
    """End a batch command by the one rule: summarise failures on stderr, exit 0, 1 or 2.

    Used by every batch command (denoise, pick predict, prepare, curate predict, simulate,
    convert); the failed inputs are listed with their reasons in ``failure_log``.
    """
    code = batch_exit_code(n_inputs, n_failed)
    if n_failed:
        every = f"{n_failed} of {n_inputs} inputs"
        if code == 2:
            every = "the only input" if n_inputs == 1 else f"all {n_inputs} inputs"
        first = first_failure(failure_log)
        first = f" (the first: {first})" if first else ""
        typer.echo(f"draco: error: {every} failed{first}; listed in {failure_log}", err=True)
    if code:
        raise typer.Exit(code)


#: Old option spellings still accepted (issue 16: one spelling per option), in every command.
#: They are not shown in ``--help``; :func:`normalise_argv` maps them and prints a note.
OLD_SPELLINGS = {"--outdir": "--out", "--output": "--out", "--jobs": "--workers"}
#: Old spellings of one command only: ``--model`` names the trained model a command applies
#: (denoiser, picker, curator); ``--weights`` the weights a command starts from or builds on.
OLD_SPELLINGS_BY_COMMAND: dict[tuple[str, ...], dict[str, str]] = {
    ("denoise",): {"--weights": "--model"},
    ("demo",): {"--weights": "--model"},
    # realism's encoder is the model the command applies, so --model (README)
    ("evaluate", "realism"): {"--weights": "--model"},
}


def normalise_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with old option spellings replaced by the current ones, and one note per change.

    Only option names are rewritten (``--outdir X`` and ``--outdir=X``); everything after ``--``
    is left alone.
    """
    words = [a for a in argv if not a.startswith("-")][:2]
    spellings = dict(OLD_SPELLINGS)
    for command, extra in OLD_SPELLINGS_BY_COMMAND.items():
        if tuple(words[: len(command)]) == command:
            spellings.update(extra)
    out, notes = [], []
    for i, arg in enumerate(argv):
        if arg == "--":
            out += argv[i:]
            break
        name, eq, value = arg.partition("=")
        if name in spellings:
            new = spellings[name]
            notes.append(f"draco: note: {name} is now {new} (the old spelling still works)")
            arg = f"{new}{eq}{value}"
        out.append(arg)
    return out, notes


def click_command(words: Sequence[str]) -> Any:
    """The (typer-vendored) click command behind ``draco WORDS...``: the deepest one the leading
    words name (``["pick", "predict", "mics/"]``: pick predict's; the walk stops at a word that
    names no sub-command, so a group comes back where none is named)."""
    command: Any = typer.main.get_command(app)
    for word in words:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    return command


def repeated_option(args: list[str]) -> str | None:
    """The one-line refusal of an option that takes one value given more than once
    (``evaluate pick --truth A --truth B``), else None. click keeps the last without a word,
    so a user who meant both got a score of one; options that take several (``--micrographs
    A --micrographs B``) and on/off flags may repeat. Commands that pass options on to another
    (``watch``, ``relion``) are not checked: their options are that command's.
    """
    tokens = args[: args.index("--")] if "--" in args else list(args)
    try:
        command = click_command([t for t in tokens if not t.startswith("-")])
    except (AttributeError, TypeError):  # not a typer app (a test's stand-in): nothing to check
        return None
    # a group: no command named (click says so); watch and relion pass options on
    if hasattr(command, "commands") or command.context_settings.get("ignore_unknown_options"):
        return None
    single = {o: p for p in command.params if getattr(p, "is_flag", True) is False
              and not p.multiple and p.param_type_name == "option" for o in p.opts}  # fmt: skip
    seen: dict[str, int] = {}
    for token in tokens:
        name = token.partition("=")[0]
        if name in single:
            key = single[name].name
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 2:
                return (f"{name} given twice: it takes one value (the last would be used "
                        "without a word); give it once")  # fmt: skip
    return None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"draco-em {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """DRACO for cryo-EM."""


#: Width of --help where stdout is no terminal (a pager, a log): every option name fits.
HELP_COLUMNS = 120


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors (and a full disk) become one line on stderr and exit
    code 2."""
    tune_allocator()  # before any array is allocated; inherited by worker processes
    args, notes = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    if not sys.stdout.isatty() and {"--help", "-h"} & set(args):
        # help piped or logged: rich would cut option names at 80 columns (--expected-partic…);
        # only for help, as COLUMNS also sets the width of the progress bars on stderr
        width = os.environ.get("COLUMNS", "")
        os.environ["COLUMNS"] = str(max(int(width) if width.isdigit() else 0, HELP_COLUMNS))
    for note in notes:
        print(note, file=sys.stderr)
    if twice := repeated_option(args):
        print(f"draco: error: {twice}", file=sys.stderr)
        sys.exit(2)
    try:
        code = app(args=args, prog_name="draco", standalone_mode=False)
    except KeyboardInterrupt:  # typer maps Ctrl-C inside a command to 130; outside it too
        sys.exit(130)
    except _CLICK_ERROR as error:  # a usage error (unknown option, missing value): one line
        exc: Any = error  # typer's vendored click exception: show, format_message, exit_code
        if type(exc).__name__ == "NoArgsIsHelpError":  # `draco` or a group alone: its help
            exc.show()
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        where = f" ({ctx.command_path} -h for help)" if ctx is not None else ""
        print(f"draco: error: {usage_message(exc)}{where}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except DracoInputError as exc:
        print(f"draco: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # a pydantic config rejected an option value
        print(f"draco: error: {option_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk or quota is for the user to fix, not a bug: one line, no traceback.
        # (Batch commands record it per file in failures.txt and never get here.)
        print(f"draco: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) comes back as n


#: typer's usage errors (its vendored click's ClickException), found through a public class.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def usage_message(exc: Any) -> str:
    """A usage error's message; an unknown option's suggests only options close to it.

    click suggests ``difflib.get_close_matches`` of the whole name, whose ``--`` matches every
    option's: ``--bogus`` got "(Possible options: --out)". Here only :func:`close_options`.
    """
    ctx = getattr(exc, "ctx", None)
    name = str(getattr(exc, "option_name", ""))
    if type(exc).__name__ != "NoSuchOption" or ctx is None or not name.startswith("--"):
        return str(exc.format_message())
    known = {o for p in ctx.command.get_params(ctx) for o in (*p.opts, *p.secondary_opts)}
    close = close_options(name, sorted(known))
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"{exc.message}{hint}"


def close_options(typo: str, options: list[str], cutoff: float = 0.6) -> list[str]:
    """The long ``options`` nearest to ``typo`` (at most 3, best first), none when nothing is:
    :func:`draco_em.errors.close_names` on the names without their leading ``--`` (which every
    option shares)."""
    names = [o[2:] for o in options if o.startswith("--")]
    return [f"--{n}" for n in close_names(typo.removeprefix("--"), names, cutoff)]


def option_error(exc: ValidationError) -> str:
    """The first rejected value of a pydantic config as one line naming the CLI option."""
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if not loc:  # a check across options (model_validator)
        return msg
    return f"invalid {option_name(str(loc[0]))}: {msg}"
