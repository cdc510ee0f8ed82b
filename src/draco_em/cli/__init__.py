"""``draco`` command line. Thin: each command parses, builds a pydantic config, calls the library.

One module per sub-command (``draco_em.cli.<name>``); its docstring is the help text. Each
command imports its library module inside the command function: ``draco --help`` then loads
only typer and pydantic (~0.4 s), not torch, scipy and pandas (~9 s together). These are the
package's only imports inside functions, with the TIFF reader's (tifffile, imagecodecs).
"""

from __future__ import annotations

import errno
import sys

from pydantic import ValidationError

from draco_em.allocator import tune_allocator
from draco_em.cli._app import app, normalise_argv
from draco_em.errors import DracoInputError

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
from draco_em.cli import demo as _demo  # noqa: F401  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors (and a full disk) become one line on stderr and exit
    code 2."""
    tune_allocator()  # before any array is allocated; inherited by worker processes
    args, notes = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    for note in notes:
        print(note, file=sys.stderr)
    try:
        app(args=args, prog_name="draco")
    except KeyboardInterrupt:  # typer maps Ctrl-C inside a command to 130; outside it too
        sys.exit(130)
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


#: Config fields whose command-line option has another name (``dose_range``: the realistic
#: preset's range that ``draco simulate --dose`` fixes).
OPTION_NAMES = {"from_format": "from", "out_dir": "out", "outdir": "out", "output": "out",
                "jobs": "workers", "data_pixel_size": "pixel_size",
                "dose_range": "dose"}  # fmt: skip


def option_error(exc: ValidationError) -> str:
    """The first rejected value of a pydantic config as one line naming the CLI option."""
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if not loc:  # a check across options (model_validator)
        return msg
    name = OPTION_NAMES.get(str(loc[0]), str(loc[0]))
    return f"invalid --{name.replace('_', '-')}: {msg}"


__all__ = ["app", "main"]
