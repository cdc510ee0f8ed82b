"""Run folders of the training commands (pretrain, pick train, pick calibrate, curate train).

Every run folder has the same bones::

    RUNDIR/config.yaml          every setting of the run (written atomically, YAML)
    RUNDIR/run.log              the run's log
    RUNDIR/checkpoints/         best.pt and latest.pt (pretrain)

and the model file of the command (``picker.safetensors``, ``curator.safetensors``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from draco_em.errors import DracoInputError
from draco_em.io.atomic import make_parent, write_text_atomic
from draco_em.io.model_file import BUNDLED, folder_holds

CONFIG_FILE = "config.yaml"
LOG_FILE = "run.log"
CHECKPOINT_DIR = "checkpoints"
#: Checkpoint names in order of preference when a run folder is used as a model.
CHECKPOINTS = ("best", "latest")


def write_config(run_dir: str | Path, config: BaseModel | Mapping[str, Any]) -> Path:
    """Write ``RUNDIR/config.yaml`` atomically (a pydantic config as its JSON-mode dump)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    path = Path(run_dir) / CONFIG_FILE
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
    return path


def refuse_trained_folder(run_dir: str | Path, model_file: str, what: str) -> None:
    """Refuse a run folder that already holds a trained model (``model_file``).

    Training again into it would replace the model and its ``run.log`` (pretrain asks for
    ``--resume`` the same way), and leave files of the old run beside the new model.

    Raises:
        DracoInputError: ``RUNDIR/model_file`` exists.
    """
    if (Path(run_dir) / model_file).is_file():
        raise DracoInputError(
            f"this folder holds a trained {what} ({model_file}): give a new -o folder (or "
            "delete this one to train again)",
            run_dir,
        )


def absolute_name(value: str) -> str:
    """A file a run records (its data, its weights) by absolute path, so that the run reads it
    from any working folder; names that are no existing path ("bundled", a glob) as they are."""
    if value == BUNDLED or not Path(value).exists():
        return value
    return str(Path(value).resolve())


def read_config(path: str | Path) -> dict[str, Any]:
    """The settings in a ``config.yaml`` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DracoInputError(f"cannot read the run config ({exc})", path) from None
    if not isinstance(data, dict):
        raise DracoInputError("cannot read the run config (not a mapping)", path)
    return data


@contextmanager
def run_log(
    run_dir: str | Path, logger: logging.Logger, enabled: bool = True
) -> Iterator[logging.Handler | None]:
    """Copy ``logger``'s records (INFO and up) to ``RUNDIR/run.log`` while the block runs.

    ``enabled=False`` (ranks other than 0) writes nothing.
    """
    if not enabled:
        yield None
        return
    make_parent(Path(run_dir) / LOG_FILE)
    handler = logging.FileHandler(Path(run_dir) / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def checkpoint_path(run_dir: str | Path, which: str) -> Path:
    """``RUNDIR/checkpoints/<which>.pt`` for 'latest' or 'best'."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.pt"


def run_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint a run folder stands for: ``which``, falling back to the latest.

    A run without a validation set never writes ``best.pt``: its latest is the best it has.

    Raises:
        DracoInputError: the folder holds neither.
    """
    order = (which, *[c for c in CHECKPOINTS if c != which])
    for name in order:
        path = checkpoint_path(run_dir, name)
        if path.is_file():
            return path
    raise DracoInputError(
        f"not a draco pretrain run folder (no {CHECKPOINT_DIR}/best.pt or latest.pt)"
        + folder_holds(Path(run_dir)),
        run_dir,
    )
