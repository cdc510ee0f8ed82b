"""``draco`` command line. Thin: each command parses, builds a pydantic config, calls the library.

One module per sub-command (``draco_em.cli.<name>``); its docstring is the help text. Each
command imports its library module inside the command function: ``draco --help`` then loads
only typer and pydantic (~0.4 s), not torch, scipy and pandas (~9 s together). These are the
package's only imports inside functions, with the TIFF reader's (tifffile, imagecodecs).
"""

from __future__ import annotations

from draco_em.cli._app import app, main

# Importing a command module registers its command on ``app``, in the data's path order.
from draco_em.cli import info as _info  # noqa: F401  isort: skip
from draco_em.cli import convert as _convert  # noqa: F401  isort: skip
from draco_em.cli import simulate as _simulate  # noqa: F401  isort: skip
from draco_em.cli import prepare as _prepare  # noqa: F401  isort: skip
from draco_em.cli import pretrain as _pretrain  # noqa: F401  isort: skip
from draco_em.cli import export as _export  # noqa: F401  isort: skip
from draco_em.cli import denoise as _denoise  # noqa: F401  isort: skip
from draco_em.cli import curate as _curate  # noqa: F401  isort: skip
from draco_em.cli import pick as _pick  # noqa: F401  isort: skip
from draco_em.cli import evaluate as _evaluate  # noqa: F401  isort: skip
from draco_em.cli import relion as _relion  # noqa: F401  isort: skip
from draco_em.cli import watch as _watch  # noqa: F401  isort: skip
from draco_em.cli import demo as _demo  # noqa: F401  isort: skip
from draco_em.cli import docs as _docs  # noqa: F401  isort: skip


__all__ = ["app", "main"]
