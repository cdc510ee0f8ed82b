"""``draco`` command line. Thin: each command parses, builds a pydantic config, calls the library.

One module per sub-command (``draco_em.cli.<name>``); its docstring is the help text.
"""

from __future__ import annotations

import sys

from draco_em.cli._app import app
from draco_em.errors import DracoInputError

# Importing a command module registers its command on ``app``, in data-path order.
from draco_em.cli import info as _info  # noqa: E402, F401  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="draco")
    except DracoInputError as exc:
        print(f"draco: error: {exc}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
