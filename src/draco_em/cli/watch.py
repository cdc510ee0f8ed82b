"""Process files as they arrive during a collection session (live processing).

``draco watch COMMAND ...`` runs a batch command (prepare, denoise, pick predict, curate
predict) on the files of its folders and globs that are ready (unchanged for ``--settle``
seconds), then again each time more are ready: a resumed run, so finished outputs are
skipped and the output folder always covers every file so far. A file rewritten after it was
processed (a movie exported again) is done again by that resume, its outputs replaced. It ends
``--idle`` minutes after the last new file (0: never), when ``--stop-file`` appears, or on
Ctrl-C.

Example:
    draco watch prepare Movies/ -o Triplets/ --gain gain.mrc --pixel-size 0.83
    draco watch --settle 60 denoise "MotionCorr/*.mrc" -o Denoised/
    draco watch --idle 0 --stop-file STOP pick predict Denoised/ -o Picks/ --diameter 120
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from draco_em.cli._app import app, click_command, example, main, normalise_argv
from draco_em.errors import DracoInputError


@app.command(
    epilog=example("draco watch --idle 1 --settle 5 denoise sim/micrographs/ -o denoised/"),
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def watch(
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command to run (prepare, denoise, pick predict, curate predict), then its "
            "inputs and options as you would give them.",
            metavar="COMMAND ARGS...",
        ),
    ],
    settle: Annotated[
        float, typer.Option(help="A file is ready this many seconds after its last change.")
    ] = 30.0,
    every: Annotated[float, typer.Option(help="Seconds between looks at the inputs.")] = 10.0,
    idle: Annotated[
        float, typer.Option(help="End this many minutes after the last new file (0: never).")
    ] = 60.0,
    stop_file: Annotated[
        Path | None, typer.Option(help="End when this file appears (touch it to stop).")
    ] = None,
) -> None:
    """Run a batch command again and again as new files arrive (crYOLO's monitor mode)."""
    from draco_em.io.watch import WATCHABLE, WatchConfig, watch_command

    words = 2 if command[0] in ("pick", "curate") else 1
    name, rest = " ".join(command[:words]), command[words:]
    if name not in WATCHABLE:
        runs = f"draco watch runs {', '.join(WATCHABLE)}"
        if words == 2:  # "pick Movies/", "pick train"
            raise DracoInputError(f"{runs}: write '{command[0]} predict'")
        raise DracoInputError(f"{runs}, not {command[0]!r}")
    # The old spellings of one command (denoise's --weights): main() read this line as
    # "watch"'s and left them, so _split would take them for unknown options.
    rest, notes = normalise_argv([*command[:words], *rest])
    for note in notes:
        typer.echo(note, err=True)
    options, inputs = _split(click_command(name.split()), rest[words:], name)
    if not inputs:
        raise DracoInputError(f"give draco {name} its inputs: folders, globs, files or a STAR")
    cfg = WatchConfig(settle_s=settle, every_s=every, idle_min=idle, stop_file=stop_file)
    code = watch_command(
        name, options, inputs, _outdir(options), _run, cfg, lambda line: typer.echo(line, err=True)
    )
    raise typer.Exit(code)


def _split(cmd: Any, tokens: list[str], name: str = "") -> tuple[list[str], list[str]]:
    """(options with their values, the positional inputs) of a command line for ``cmd``.

    Raises:
        DracoInputError: an option ``cmd`` does not have, or one short of its values: the
            command would read its value as an input (``--settle 60`` after the command), or
            the next option or nothing as its value (a trailing ``-o``: the current folder).
    """
    names = _option_names(cmd)
    params = [p for p in cmd.params if p.param_type_name == "option"]
    n_values = {o: p.nargs for p in params if not p.is_flag and not p.count for o in p.opts}
    options: list[str] = []
    inputs: list[str] = []
    it = iter(tokens)
    for token in it:
        if token == "--":
            inputs += list(it)
        elif token.startswith("-") and len(token) > 1:
            option = token.partition("=")[0] if token.startswith("--") else token[:2]
            if option not in names:
                own = option in _option_names(click_command(["watch"]))  # --settle after it
                where = "draco watch's own options go before the command" if own else name
                raise DracoInputError(f"no such option: {option} ({where})")
            options.append(token)
            if token in n_values:  # "--opt value" (not "--opt=value" nor "-oDIR")
                n = n_values[token]
                values = list(itertools.islice(it, n))
                if len(values) < n or any(v.startswith("--") for v in values):
                    raise DracoInputError(f"{token} needs {'a value' if n == 1 else f'{n} values'}")
                options += values
        else:
            inputs.append(token)
    return options, inputs


def _option_names(cmd: Any) -> set[str]:
    """Every spelling of ``cmd``'s options (``--png`` and ``--no-png``), help included."""
    params = [p for p in cmd.params if p.param_type_name == "option"]
    return {"-h", "--help", *(o for p in params for o in (*p.opts, *p.secondary_opts))}


def _outdir(options: list[str]) -> Path | None:
    """The ``-o``/``--out`` folder among ``options``."""
    for i, token in enumerate(options):
        if token in ("-o", "--out") and i + 1 < len(options):
            return Path(options[i + 1])
        if token.startswith("--out="):
            return Path(token.removeprefix("--out="))
        if token.startswith("-o") and len(token) > 2:  # "-oDIR", as click reads it
            return Path(token[2:])
    return None


def _run(argv: list[str]) -> int:
    """Run ``draco ARGV`` in this process; its exit code."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdout.flush()
    return 0
