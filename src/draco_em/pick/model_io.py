"""Save and load trained pickers: one safetensors file with its config, diameter and threshold.

A run folder from ``draco pick train`` holds ``picker.safetensors``; ``"bundled"`` is the general
picker shipped in :mod:`draco_em.weights` (``picker.safetensors``, read with importlib.resources).
While it trains, the folder holds ``checkpoints/latest.pt`` instead
(:mod:`draco_em.pick.checkpoint`), which ``--resume latest`` continues from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from draco_em.errors import DracoInputError
from draco_em.io.model_file import (
    BUNDLED,
    is_bundled_model,
    read_model_file,
    resolve_model_file,
    write_model_file,
)
from draco_em.io.run_folder import checkpoint_path
from draco_em.pick.config import DetectorConfig
from draco_em.pick.detector import ParticleDetector
from draco_em.pick.predict import Picker

log = logging.getLogger("draco_em.pick")

FORMAT = "draco-em-picker/1"
#: Metadata key of a second stored threshold for pre-denoised pictures (issue 18, session 14).
PREDENOISED_KEY = "threshold_predenoised"
BUNDLED_FILE = "picker.safetensors"
RUN_FILE = "picker.safetensors"


def save_picker(
    path: str | Path, detector: ParticleDetector, diameter: float, threshold: float,
    metadata: Mapping[str, object] | None = None,
) -> Path:  # fmt: skip
    """Write the detector, its config, the diameter (Å) and default threshold atomically."""
    header = {
        "format": FORMAT,
        "detector_config": detector.config.model_dump_json(),
        "diameter": json.dumps(float(diameter)),
        "threshold": json.dumps(float(threshold)),
        "metadata": json.dumps(dict(metadata or {})),
    }
    return write_model_file(path, detector.state_dict(), header)


def resolve_picker(model: str | Path) -> Path:
    """A picker file from a file, a run folder, or ``"bundled"``.

    Raises:
        DracoInputError: none there; a ``pick train`` folder whose run was interrupted (its
            checkpoint, no picker yet) says how to finish it.
    """
    unfinished = checkpoint_path(Path(model), "latest")
    if str(model) != BUNDLED and not (Path(model) / RUN_FILE).exists() and unfinished.is_file():
        raise DracoInputError(
            "an unfinished pick train run (its checkpoint, no picker yet): finish it with the "
            "same pick train command and --resume latest",
            model,
        )
    return resolve_model_file(
        model, BUNDLED_FILE, run_file=RUN_FILE,
        missing_bundled="no bundled picker is installed: pass --model RUNDIR",
        not_found="picker model not found (a run folder or .safetensors)",
    )  # fmt: skip


def is_bundled_picker(model: str | Path) -> bool:
    """True for ``"bundled"`` and for the bundled picker's file given by its path."""
    return is_bundled_model(model, resolve_picker)


def read_picker(model: str | Path) -> tuple[ParticleDetector, dict]:
    """(detector in eval mode, header dict with ``diameter``, ``threshold``, ``metadata``)."""
    file = read_model_file(resolve_picker(model), "picker model", FORMAT)
    detector = ParticleDetector(DetectorConfig.model_validate_json(file.header["detector_config"]))
    detector.load_state_dict(file.tensors)
    info = {k: file.json(k) for k in ("diameter", "threshold", "metadata")}
    info["path"] = str(file.path)
    return detector.eval(), info


def load_picker(
    model: str | Path, diameter: float | None = None, threshold: float | None = None,
    device: str | torch.device = "cpu", batch_size: int = 8,
) -> Picker:  # fmt: skip
    """A ready :class:`Picker`; ``diameter``/``threshold`` override the stored ones.

    A picker trained with ``--auto-scale`` runs at the multiple of the diameter it was trained
    at (``scales`` from its metadata), also when the user gives the diameter again. A picker
    with a ``threshold_predenoised`` entry (the bundled one) uses it on pre-denoised pictures
    unless ``threshold`` is given.
    """
    detector, info = read_picker(model)
    device = torch.device(device)
    predenoised = (info.get("metadata") or {}).get(PREDENOISED_KEY)
    return Picker(
        detector.to(device),
        float(diameter or info["diameter"]),
        float(info["threshold"] if threshold is None else threshold),
        batch_size,
        device,
        scales=trained_scales(info),
        threshold_predenoised=None if threshold is not None or predenoised is None
        else float(predenoised),
    )  # fmt: skip


def trained_scales(info: Mapping) -> tuple[float, ...]:
    """The multiple(s) of the diameter a picker was trained at: (m,) after ``pick train
    --auto-scale`` (its metadata), else (1.0,)."""
    auto = (info.get("metadata") or {}).get("auto_scale") or {}
    return (float(auto.get("multiplier", 1.0)),)


def picker_scales(model: str | Path, picker: Picker | None = None) -> list[float] | str:
    """The multiple(s) of the diameter ``pick predict`` picks at with ``model`` unless told
    (``--diameter-scales``): 'auto', chosen from the data, for the bundled picker (the rule of
    issue 18, session 7, docs/benchmarks.md); for any other picker the multiple it was
    trained or calibrated at (``picker.scales``, :func:`trained_scales`; 1 when none)."""
    if is_bundled_picker(model):
        return "auto"
    return [float(s) for s in picker.scales] if picker is not None else [1.0]
