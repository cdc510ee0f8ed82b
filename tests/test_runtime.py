"""The runtime layer: device choice and rank discovery from torchrun and SLURM variables."""

from __future__ import annotations

import pytest

from draco_em.errors import DracoInputError
from draco_em.runtime import _first_slurm_host, cpu_has_bf16, launch_env, resolve_device


def test_launch_env() -> None:
    assert launch_env({}) == (0, 1, 0)
    assert launch_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8, 1)
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}
    assert launch_env(slurm) == (9, 16, 1)
    assert launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0)  # one task
    # torchrun inside an allocation: torchrun's variables win.
    assert launch_env({**slurm, "RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == (2, 4, 2)


def test_first_slurm_host_without_scontrol() -> None:
    assert _first_slurm_host("gpu[03-05,07],cpu1") == "gpu03"
    assert _first_slurm_host("node17") == "node17"


def test_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    import torch

    if not torch.cuda.is_available():
        for asked in ("cuda", "cuda:1"):  # one behaviour for every command
            with pytest.raises(DracoInputError, match=f"--device {asked} .* no CUDA"):
                resolve_device(asked)
        assert resolve_device("auto").type == "cpu"
    with pytest.raises(DracoInputError, match="not a device"):
        resolve_device("gpu0")


def test_cpu_has_bf16_reads_the_cpu_flags(tmp_path):
    for flags, expected in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True),
                            ("fpu avx2 avx512f", False)):  # fmt: skip
        info = tmp_path / f"cpuinfo_{expected}_{len(flags)}"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_has_bf16(str(info)) is expected
    assert cpu_has_bf16(str(tmp_path / "absent")) is False
