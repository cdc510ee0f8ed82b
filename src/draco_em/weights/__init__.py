"""Model files shipped inside the package (loaded with ``importlib.resources``; never downloaded).

- ``draco_tiny.safetensors``: the bundled pretrained DRACO model, the encoder of curation and
  picking (see docs/model-card.md).
- ``draco_denoise_tiny.safetensors``: its denoising fine-tune (``--stage denoise``, with the
  pixel refiner), used by ``draco denoise`` and ``draco demo``.
- ``curate_head.safetensors``: the bundled curation head for that encoder (docs/curation.md;
  recipe ``benchmarks/train_bundled_curator.py``, re-run whenever the encoder changes).
- ``picker.safetensors``: the bundled general particle picker (docs/picking.md; recipe
  ``benchmarks/pick_recipe.py``).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from draco_em.errors import DracoInputError

BUNDLED = "bundled"


def resolve_model_file(
    model: str | Path,
    bundled_file: str,
    *,
    missing_bundled: str,
    not_found: str,
    run_file: str | None = None,
) -> Path:
    """The one way every command finds a model file: ``"bundled"``, a run folder or a file.

    Args:
        model: ``"bundled"`` (the file shipped here), a run folder (with ``run_file``) or a path.
        bundled_file: name of the shipped file in this package.
        missing_bundled: message when the package ships no such file.
        not_found: message when the given path is not a file.
        run_file: file name inside a run folder, when folders are accepted.
    """
    if str(model) == BUNDLED:
        bundled = importlib.resources.files("draco_em.weights") / bundled_file
        if not bundled.is_file():
            raise DracoInputError(missing_bundled)
        return Path(str(bundled))
    path = Path(model)
    if run_file is not None and path.is_dir():
        path = path / run_file
    if not path.is_file():
        raise DracoInputError(not_found, path)
    return path
