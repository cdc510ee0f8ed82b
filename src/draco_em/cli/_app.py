"""The typer application that every ``draco_em.cli.<command>`` module registers on."""

from __future__ import annotations

import typer

from draco_em import __version__

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


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` → ``["a", "b", "c"]``; None or only commas/spaces → None (the option's default).

    The one parser of comma-separated options (``--classes``, ``--accept``, ``--format``,
    ``--exclude-classes``).
    """
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


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
