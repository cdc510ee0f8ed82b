"""The bundled head's recipe refuses a head that answers one thing (issue 19: "a head that
answers one class for everything must be impossible to ship").

``benchmarks/train_bundled_curator.py`` gates every candidate with the spread check on its
simulated validation sets and on real micrographs' answers, then selects only among those that
pass. These tests run that gate and that selection on the toy set with the tiny encoder
(seconds), so that neither can be dropped from the recipe unnoticed; the real-data check of
the installed head is the slow one in ``test_spread.py`` (``..._on_real_micassess``).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch

from draco_em.curate.head import load_curator
from tests.conftest import REPO
from tests.curate.conftest import PIXEL_SIZE, train_toy_curator

RECIPE = REPO / "benchmarks" / "train_bundled_curator.py"


@pytest.fixture(scope="module")
def recipe() -> ModuleType:
    """The recipe script as a module (the sdist carries the tests but not benchmarks/)."""
    if not RECIPE.is_file():
        pytest.skip(f"{RECIPE} is absent (benchmarks/ is not in the sdist)")
    spec = importlib.util.spec_from_file_location("train_bundled_curator", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def heads(
    toy_set: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(a head trained on the toy set, the same head answering ``contamination`` for all)."""
    run = train_toy_curator(toy_set, tiny_encoder, tmp_path_factory.mktemp("gate"), 60)
    curator = load_curator(run)
    with torch.no_grad():  # no feature counts: the bias alone decides
        curator.head.linear.weight.zero_()
        curator.head.linear.bias.zero_()
        curator.head.linear.bias[curator.classes.index("contamination")] = 10.0
    return run / "curator.safetensors", curator.save(run / "one_answer.safetensors")


def test_a_head_answering_one_class_on_validation_is_never_selected(
    recipe: ModuleType, heads: tuple[Path, Path], toy_set: Path, tmp_path: Path
) -> None:
    sorting, one_answer = heads
    val = [toy_set / "micrographs.star"]  # 8 good, 8 contaminated
    results = {str(one_answer): recipe.gated_scores(one_answer, val, tmp_path, None)}
    assert results[str(one_answer)]["spread_ok"] is False
    with pytest.raises(SystemExit, match="nothing written"):
        recipe.select_winner(results)
    results[str(sorting)] = recipe.gated_scores(sorting, val, tmp_path, None)
    assert results[str(sorting)]["spread_ok"] is True
    assert recipe.select_winner(results) == str(sorting)


def test_a_head_answering_one_class_on_the_real_micrographs_is_never_selected(
    recipe: ModuleType, heads: tuple[Path, Path], toy_set: Path, tmp_path: Path
) -> None:
    """A head that sorts its validation set but answers one thing for the unlabelled "real"
    folder (here: only the contaminated toy micrographs) fails the real-spread gate."""
    sorting, _ = heads
    real = tmp_path / "real"
    real.mkdir()
    for i in range(1, 16, 2):  # the toy set's contaminated micrographs
        shutil.copy(toy_set / "mics" / f"toy_{i:02d}.mrc", real)
    val = [toy_set / "micrographs.star"]
    scores = recipe.gated_scores(sorting, val, tmp_path / "cache", (real, PIXEL_SIZE))
    assert scores[toy_set.name]["spread_ok"] is True  # the validation gate alone passes it
    assert scores["real_spread"]["spread_ok"] is False
    assert scores["spread_ok"] is False
    with pytest.raises(SystemExit, match="nothing written"):
        recipe.select_winner({recipe.CURRENT: {"score": 0.0, "spread_ok": True},
                              str(sorting): scores})  # fmt: skip
