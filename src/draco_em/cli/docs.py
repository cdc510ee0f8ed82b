"""Read the documents that messages and ``--help`` texts point at (``docs/picking.md; `draco
docs picking```), also where the package was installed from a wheel, with no checkout.

Example:
    draco docs                  # the documents, each with its title
    draco docs picking          # print docs/picking.md
    draco docs picking --path   # where that file is
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from draco_em.cli._app import app, example

# Imported at the top, unlike the other commands' libraries: stdlib only, no start-up cost.
from draco_em.docs_index import docs_folder, find_doc, index_text


@app.command(epilog=example("draco docs picking"))
def docs(
    topic: Annotated[
        str | None,
        typer.Argument(
            metavar="TOPIC",
            help="A document: its name (picking) or its path as messages give it; none: list.",
        ),
    ] = None,
    path: Annotated[
        bool, typer.Option("--path", help="Print its file's path (no TOPIC: the folder's).")
    ] = False,
) -> None:
    """List the documents (name and title), or print one as Markdown."""
    if path:
        typer.echo(find_doc(topic) if topic else docs_folder())
        return
    text = find_doc(topic).read_text(encoding="utf-8") if topic else index_text() + "\n"
    try:
        typer.echo(text, nl=False)
    except BrokenPipeError:  # `draco docs benchmarks | head`: the reader has what it wanted
        # stdout to /dev/null, or Python reports the pipe again when it flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
