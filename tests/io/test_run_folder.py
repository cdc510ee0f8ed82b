"""Run folders: config.yaml, run.log and best/latest checkpoints, the same for every command."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel

from draco_em.errors import DracoInputError
from draco_em.io.atomic import write_text_atomic
from draco_em.io.run_folder import (
    checkpoint_path,
    read_config,
    run_checkpoint,
    run_log,
    write_config,
)


class _Cfg(BaseModel):
    out: Path
    lr: float = 0.1


def test_config_round_trip(tmp_path: Path) -> None:
    path = write_config(tmp_path / "run", _Cfg(out=tmp_path))
    assert path.name == "config.yaml"
    assert read_config(tmp_path / "run") == {"out": str(tmp_path), "lr": 0.1}
    assert not list((tmp_path / "run").glob("*.tmp*"))  # written through a temporary file
    path.write_text("- just\n- a list\n")
    with pytest.raises(DracoInputError, match="cannot read the run config"):
        read_config(path)


def test_run_log_copies_records_and_detaches(tmp_path: Path) -> None:
    logger = logging.getLogger("draco_em.test_run_folder")
    with run_log(tmp_path, logger):
        logger.info("inside")
    logger.info("outside")
    text = (tmp_path / "run.log").read_text()
    assert "inside" in text and "outside" not in text
    with run_log(tmp_path / "rank1", logger, enabled=False):
        logger.info("not written")
    assert not (tmp_path / "rank1").exists()


def test_best_then_latest(tmp_path: Path) -> None:
    with pytest.raises(DracoInputError, match="not a draco pretrain run folder"):
        run_checkpoint(tmp_path)
    latest = checkpoint_path(tmp_path, "latest")
    latest.parent.mkdir()
    latest.write_bytes(b"x")
    assert run_checkpoint(tmp_path) == latest  # no validation set: latest is the best there is
    best = checkpoint_path(tmp_path, "best")
    best.write_bytes(b"x")
    assert run_checkpoint(tmp_path) == best and run_checkpoint(tmp_path, "latest") == latest


def test_a_file_where_the_run_folder_should_be_is_one_line(tmp_path: Path) -> None:
    """``-o`` naming an existing file (pretrain, curate/pick train, export -o file/x): a user
    error naming the path, not a FileExistsError traceback (the helper's QA, session 20)."""
    blocker = tmp_path / "regular_file"
    blocker.write_text("x")
    with pytest.raises(DracoInputError, match="a file stands where its folder should be"):
        write_config(blocker, {"a": 1})
    with pytest.raises(DracoInputError, match="a file stands where its folder should be"):
        write_text_atomic(blocker / "sub" / "x.json", "{}")
    with pytest.raises(DracoInputError, match="regular_file"):
        with run_log(blocker, logging.getLogger("t")):
            pass
    assert blocker.read_text() == "x"
