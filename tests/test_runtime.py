"""The runtime layer: device choice and rank discovery from torchrun and SLURM variables."""

from __future__ import annotations

import pytest

from draco_em.errors import DracoInputError
from draco_em.runtime import _first_slurm_host, cpu_has_bf16, launch_env, resolve_device


def test_launch_env() -> None:
    assert launch_env({}) == (0, 1, 0)
    assert launch_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8, 1)
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"}
    assert launch_env(slurm) == (9, 16, 1)
    assert launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0)  # one task
    # srun --preserve-env keeps the job's SLURM_NTASKS; the step's own count wins.
    assert launch_env({**slurm, "SLURM_STEP_NUM_TASKS": "8"}) == (9, 8, 1)
    # torchrun inside an allocation: torchrun's variables win.
    assert launch_env({**slurm, "RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == (2, 4, 2)


def test_a_slurm_batch_script_is_one_process() -> None:
    """The batch script of a 32-task job (no srun) holds SLURM_PROCID=0 and SLURM_NTASKS=32 but
    no step: a draco command run there is one process (it waited for 31 ranks, 30 minutes)."""
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "32", "SLURM_LOCALID": "0",
             "SLURM_JOB_NODELIST": "gpu[01-04]", "ENVIRONMENT": "BATCH"}  # fmt: skip
    assert launch_env(batch) == (0, 1, 0)


def test_master_addr_is_the_first_host_of_the_step(monkeypatch) -> None:
    """A step on part of the allocation (srun -N 2 in a 4-node job) meets on its own first
    node, not the job's, where no task of the step runs."""
    import os

    import torch.distributed as dist

    from draco_em.runtime import init_distributed

    env = {"SLURM_STEP_ID": "1", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
           "SLURM_JOB_NODELIST": "node[01-04]", "SLURM_STEP_NODELIST": "node[03-04]"}  # fmt: skip
    monkeypatch.setattr(os, "environ", env)
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size) == (1, 2) and calls[0]["backend"] == "gloo"
    assert env["MASTER_ADDR"] == "node03"


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
