"""How this process was launched: its rank among the processes of one job (stdlib only).

The bottom layer beside :mod:`draco_em.errors`: :mod:`draco_em.runtime` builds the process group
from it, and :mod:`draco_em.io.folder_lock` lets rank 0 alone lock a job's output folder.
"""

from __future__ import annotations

import os


def launch_env(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun or SLURM variables; (0, 1, 0) otherwise.

    torchrun's variables win, so ``srun torchrun ...`` (one task per node) also works. SLURM
    variables count only for multi-task steps (``SLURM_NTASKS > 1``): an interactive
    ``salloc`` shell or a one-task batch job is a single process.
    """
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0
