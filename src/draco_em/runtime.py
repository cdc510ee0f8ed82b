"""Where a command runs: device choice, process-group setup and the few collectives we need.

The bottom layer (it imports only torch, :mod:`draco_em.errors` and :mod:`draco_em.launch`),
used by every command: :func:`resolve_device` is the one reading of ``--device`` (``auto``,
``cpu``, ``cuda``, ``cuda:N``; asking for CUDA where torch sees none is a
:class:`DracoInputError`, one line), and :func:`init_distributed` / :func:`barrier` the one
process-group set-up.

One code path for every launch: a plain ``python``/``draco`` call is a world of one process; under
``torchrun`` the rank comes from ``RANK/WORLD_SIZE/LOCAL_RANK`` (``MASTER_ADDR/PORT`` set by
torchrun); under ``srun`` from ``SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID`` (only in an ``srun``
step: :func:`draco_em.launch.launch_env`) with ``MASTER_ADDR`` taken from the environment or
the first host of the step's nodes (as MAE's ``init_distributed_mode``). gloo on CPU, nccl on
CUDA.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from draco_em.errors import DracoInputError
from draco_em.launch import launch_env as launch_env  # re-exported for the commands


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: global rank, 0 … world_size − 1.
        world_size: number of processes.
        local_rank: rank within the node (selects the GPU).
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when a process group was initialised (world_size > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs and draws the progress bar."""
        return self.rank == 0


def _first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list ("gpu[03-05,07],cpu1" → "gpu03")."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        match = re.match(r"([^\[,]+)(?:\[([0-9]+))?", nodelist)
        if not match:
            raise DracoInputError(
                f"cannot parse SLURM_JOB_NODELIST {nodelist!r}; set MASTER_ADDR"
            ) from None
        return match.group(1) + (match.group(2) or "")


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device of a ``--device`` value.

    Args:
        device: ``auto`` (this rank's GPU when CUDA is present, else the CPU), ``cpu``, ``cuda``
            (this rank's GPU) or ``cuda:N``; another torch device name (``mps``) is passed on.
        local_rank: rank within the node, which picks the GPU (default: ``LOCAL_RANK`` or 0).

    Raises:
        DracoInputError: CUDA asked for but not available, a GPU index beyond those present,
            or a name torch does not know.
    """
    if local_rank is None:
        local_rank = launch_env()[2]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DracoInputError(f"--device {device} was asked for but torch sees no CUDA device")
        count = torch.cuda.device_count()
        index = local_rank % count if device == "cuda" else torch.device(device).index
        if index is None or index >= count:
            raise DracoInputError(f"--device {device}: torch sees only {count} CUDA device(s)")
        return torch.device("cuda", index)
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise DracoInputError(f"--device {device!r} is not a device torch knows: {exc}") from None


@functools.cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX flags in ``cpuinfo``).

    There oneDNN runs a bf16 model 1.7× faster than float32 (2 cores, docs/benchmarks.md);
    elsewhere bf16 is emulated and slower, so it is never chosen by default.
    """
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def init_distributed(device: str = "auto") -> DistContext:
    """Initialise the default process group if launched with several processes.

    Args:
        device: a ``--device`` value (:func:`resolve_device`).

    Returns:
        The :class:`DistContext` of this process (world of one when not launched in parallel).
    """
    rank, world_size, local_rank = launch_env()
    dev = resolve_device(device, local_rank)
    if world_size == 1 or (dist.is_available() and dist.is_initialized()):
        ws = dist.get_world_size() if dist.is_initialized() else 1
        rk = dist.get_rank() if dist.is_initialized() else 0
        return DistContext(rk, ws, local_rank, dev)
    if "MASTER_ADDR" not in os.environ:
        # The step's nodes: a step on part of the allocation (srun -N 2 in a 4-node job) has no
        # task on the job's first host, where every rank would wait for rank 0.
        nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise DracoInputError("distributed launch without MASTER_ADDR; use torchrun or srun")
        os.environ["MASTER_ADDR"] = _first_slurm_host(nodes)
    os.environ.setdefault("MASTER_PORT", "29500")
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        backend="nccl" if dev.type == "cuda" else "gloo",
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=30),
    )
    return DistContext(rank, world_size, local_rank, dev)


def cleanup(ctx: DistContext, wait: bool = True) -> None:
    """Wait for every rank (unless ``wait`` is False), then tear the process group down."""
    if ctx.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Synchronise all ranks (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Mean of a Python float over ranks (for logging; MAE's ``all_reduce_mean``)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (e.g. RNG states for a checkpoint), in rank order."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


#: prctl option number (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent(_worker_id: int = 0) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a DataLoader ``worker_init_fn``).

    A reader worker blocked on a full queue never notices that a SIGKILLed parent is gone and
    would stay alive, holding its memory; elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl: the watchdog of torch's workers remains
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
