"""Memory-allocator settings for array work: keep freed memory in the process (glibc only).

Why: glibc's ``malloc`` serves every block above its mmap threshold (128 KiB at start, raised
up to 32 MiB as such blocks are freed) with a fresh ``mmap`` and returns it to the kernel on
``free``, and trims the heap whenever 128 KiB+ at its top is free. A command that handles one
movie or micrograph after another allocates and frees MB-sized arrays (frames, spectra, tile
batches) thousands of times, and the kernel page-faults each fresh one in again: ``draco
prepare`` on 2048² × 40-frame movies spent 6–8 of its 11–13 s in the kernel (``sys`` time) on
2 cores. Here every block under 32 MiB comes from the heap, which is trimmed only above 1 GiB
free and grows 256 MiB at a time. The threshold is fixed at the dynamic scheme's ceiling on
purpose: glibc stops adapting it once any of these is set, and a lower fixed value (16 MiB
was tried) maps the 16–32 MiB arrays of ``draco denoise`` afresh every time and made it
slower. Trimming alone, without the threshold, was slower still.

Measured (docs/prepare.md, "Benchmark"): ``draco prepare`` 3.4–4.1 → 1.9–2.1 s per movie with
that session's other changes; the allocator alone raised that run's peak memory from 1.76 to
2.01 GB (since offset: prepare holds frames in their stored dtype, 1.55 GB). On a 4096²
micrograph (medians of three runs): ``draco denoise`` 7 % and ``pick predict`` 4 % faster,
``--blend-halves`` unchanged within the runs' spread; training +1–6 % (docs/benchmarks.md,
"Motion correction").

Stdlib only (the ``draco`` entry point calls :func:`tune_allocator` before torch is imported).
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's environment names and the values set here (bytes). Worker processes inherit the
#: variables (glibc reads them at start); this process gets them through ``mallopt``.
ALLOCATOR_ENV: dict[str, int] = {
    "MALLOC_MMAP_THRESHOLD_": 32 << 20,
    "MALLOC_TRIM_THRESHOLD_": 1 << 30,
    "MALLOC_TOP_PAD_": 256 << 20,
}
#: ``mallopt`` parameter numbers (glibc's malloc.h: M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD).
_MALLOPT_PARAM = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


def tune_allocator(environ: dict[str, str] | None = None) -> list[str]:
    """Apply :data:`ALLOCATOR_ENV` to this process and its future children, where glibc runs.

    A variable the user has set already is left alone (glibc applied it at start); elsewhere
    (macOS, Windows, musl) nothing happens.

    Args:
        environ: the environment to update (default ``os.environ``; tests pass a dict).

    Returns:
        The names applied to this process (empty where none was).
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return []
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  glibc only (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return []
    applied = []
    for name, value in ALLOCATOR_ENV.items():
        if name in env:
            continue
        env[name] = str(value)
        if mallopt(_MALLOPT_PARAM[name], value) == 1:  # mallopt returns 1 on success
            applied.append(name)
    return applied
