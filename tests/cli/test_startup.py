"""The command line starts fast: importing it pulls in neither torch nor pandas (each
command imports what it needs when it runs), so `draco --help` and every command's start-up
stay short (docs/benchmarks.md, issue 20 session 12: the lazy imports of `draco denoise`)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_neither_torch_nor_pandas() -> None:
    code = "import sys, draco_em.cli; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
