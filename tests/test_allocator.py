"""The allocator settings: applied to this process and handed to workers, the user's kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from draco_em.allocator import ALLOCATOR_ENV, tune_allocator


def _glibc() -> bool:
    try:
        return "glibc" in (os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _glibc()), reason="glibc only")
def test_sets_every_variable_and_applies_it() -> None:
    env: dict[str, str] = {}
    assert tune_allocator(env) == list(ALLOCATOR_ENV)
    assert env == {name: str(value) for name, value in ALLOCATOR_ENV.items()}


def test_the_users_own_setting_wins() -> None:
    env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    assert "MALLOC_MMAP_THRESHOLD_" not in tune_allocator(env)
    assert env["MALLOC_MMAP_THRESHOLD_"] == "131072"


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _glibc()), reason="glibc only")
def test_the_draco_command_hands_the_settings_to_its_workers() -> None:
    # A child of `draco` (a prepare worker, a DataLoader reader) inherits the variables.
    code = (
        "import os\nfrom draco_em.cli import main\n"
        "try:\n    main(['info', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == str(ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"])
