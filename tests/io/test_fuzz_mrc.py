"""Fuzzing the MRC reader: any bytes give a valid result or DracoInputError, never a hang."""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from draco_em.errors import DracoInputError
from draco_em.io.mrc import mrc_summary, read_mrc, write_mrc

FUZZ = settings(
    max_examples=300,
    # No per-example deadline: timings flake on a loaded 2-core machine. hard_timeout() below
    # still fails a hang, and read_mrc checks declared sizes before allocating anything.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@contextlib.contextmanager
def hard_timeout(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: hypothesis' deadline only reports *after* a call returns."""

    def _raise(signum: int, frame: object) -> None:
        raise TimeoutError(f"read_mrc still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _template() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        data = np.arange(6 * 5 * 4, dtype=np.float32).reshape(4, 6, 5)
        return write_mrc(Path(tmp) / "t.mrcs", data, 1.5).read_bytes()


TEMPLATE = _template()


def _check(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.mrc"
        path.write_bytes(raw)
        for mmap in (False, True):
            with hard_timeout(10):
                try:
                    mrc = read_mrc(path, mmap=mmap)
                except DracoInputError as exc:
                    assert "fuzz.mrc" in str(exc) and "\n" not in str(exc)
                    continue
            assert mrc.data.ndim in (2, 3) and mrc.data.size > 0
            assert mrc.pixel_size is None or (np.isfinite(mrc.pixel_size) and mrc.pixel_size > 0)
            del mrc  # release the memory map before the folder goes
        with hard_timeout(10):
            try:
                summary = mrc_summary(path)
            except DracoInputError:
                return
        assert summary["shape"]


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=12),
    length=st.integers(0, len(TEMPLATE) + 64),
)
def test_mutated_valid_file(edits: list[tuple[int, int]], length: int) -> None:
    # Random bytes almost never pass the "MAP " check, so also mutate a valid file's header
    # (dimensions, mode, extended-header size, machine stamp ...) and cut or extend it.
    raw = bytearray(TEMPLATE)
    for pos, value in edits:
        raw[pos] = value
    raw = raw[:length] if length <= len(raw) else raw + bytes(length - len(raw))
    _check(bytes(raw))


@FUZZ
@given(
    field=st.sampled_from([0, 4, 8, 12, 28, 32, 36, 40, 44, 48, 92, 152]),
    value=st.integers(-(2**31), 2**31 - 1),
)
def test_one_header_integer(field: int, value: int) -> None:
    # nx, ny, nz, mode, mx, my, mz, cella, nsymbt, ispg set to any int32 (huge, 0, negative).
    raw = bytearray(TEMPLATE)
    raw[field : field + 4] = int(value).to_bytes(4, "little", signed=True)
    _check(bytes(raw))
