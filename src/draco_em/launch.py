"""How this process was launched: its rank among the processes of one job (stdlib only).

The bottom layer beside :mod:`draco_em.errors`: :mod:`draco_em.runtime` builds the process group
from it, and :mod:`draco_em.io.folder_lock` lets rank 0 alone lock a job's output folder.
"""

from __future__ import annotations

import os


def launch_env(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun or SLURM variables; (0, 1, 0) otherwise.

    torchrun's variables win, so ``srun torchrun ...`` (one task per node) also works. SLURM
    variables count only for the tasks of a multi-task ``srun`` step (``SLURM_STEP_ID`` set,
    more than one task): an interactive ``salloc`` shell or a one-task job is a single
    process, and so is the batch script itself, whose environment also holds
    ``SLURM_PROCID=0`` and the job's ``SLURM_NTASKS`` (a ``draco`` command run there without
    ``srun`` waited 30 minutes for the other ranks, then failed). The step's own task count
    (``SLURM_STEP_NUM_TASKS``) wins over ``SLURM_NTASKS``, which ``srun --preserve-env``
    leaves at the job's.
    """
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env and tasks > 1:
        return int(env["SLURM_PROCID"]), tasks, int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0
