"""Pretraining: manifest data, the training loop, checkpoints, distributed launch.

``run_pretrain(PretrainConfig(...))`` is what ``draco pretrain`` calls; ``export_run`` is
``draco export``.
"""

from draco_em.train.checkpoint import export_run, load_checkpoint
from draco_em.train.config import PretrainConfig
from draco_em.train.pretrain import epoch_line, run_pretrain

__all__ = ["PretrainConfig", "epoch_line", "export_run", "load_checkpoint", "run_pretrain"]
