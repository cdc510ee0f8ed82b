"""Re-set a picker's stored threshold on labelled micrographs, without training.

Two uses:

* A user labels a few micrographs of their protein: ``draco pick calibrate`` chooses the cut-off
  there (the rule of :func:`draco_em.pick.train.choose_threshold`), so the general picker's
  default suits that protein without fine-tuning.
* The bundled general picker. Its threshold is chosen on validation phantoms, which it knows as
  well as its training ones (true particles score ≥ 0.95 there). On a protein it has never seen,
  true particles score lower, so that threshold cuts recall. ``logit_shift`` moves the stored
  threshold down by the logit shift an unseen protein causes, measured *without* the test
  structures: with a picker trained on phantoms only, the threshold chosen on its phantom
  validation set against the one chosen on apoferritin, which it never saw
  (``benchmarks/pick_calibrate.py``; docs/benchmarks.md, Picking).

Example::

    draco pick calibrate --model bundled --micrographs val_mics/ --coords val_picks/ \\
        -o runs/pick_cal
    draco pick predict mics/ -o picks/ --model runs/pick_cal
"""

from __future__ import annotations

import logging
import math

from draco_em.errors import DracoInputError
from draco_em.io.batch import make_output_folder
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.run_folder import refuse_trained_folder, run_log, write_config
from draco_em.pick.config import DEFAULT_TTA, PickCalibrateConfig
from draco_em.pick.model_io import (
    PREDENOISED_KEY,
    RUN_FILE,
    read_picker,
    resolve_picker,
    save_picker,
)
from draco_em.pick.predict import Picker
from draco_em.pick.train import THRESHOLD_RANGE, choose_threshold, load_labelled, threshold_line
from draco_em.runtime import resolve_device

log = logging.getLogger("draco_em.pick")


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def shift_threshold(threshold: float, shift: float) -> float:
    """sigmoid(logit(threshold) − shift), clipped to the range stored thresholds use."""
    t = 1.0 / (1.0 + math.exp(-(logit(threshold) - shift)))
    return min(max(t, THRESHOLD_RANGE[0]), THRESHOLD_RANGE[1])


def unseen_shift(threshold_seen: float, threshold_unseen: float) -> float:
    """Logit shift from a set the picker knows to one of a protein it never saw (> 0: lower)."""
    return logit(threshold_seen) - logit(threshold_unseen)


def choose(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None = None, progress: bool = False
) -> tuple[float, dict, Picker, dict]:
    """(threshold chosen on ``cfg.micrographs``, its validation summary, picker, header).

    Args:
        diameters: Å per micrograph stem (sets of several particle sizes), else
            ``cfg.diameter`` or the picker's own.
    """
    device = resolve_device(cfg.device)
    detector, info = read_picker(cfg.model)
    diameter = float(cfg.diameter or info["diameter"])
    # Scores as `draco pick predict` makes them (its default test-time views).
    picker = Picker(detector.to(device), diameter, device=device, tta=DEFAULT_TTA)
    examples = load_labelled(cfg.micrographs, cfg.coords, detector.config, diameter, diameters,
                             cfg.pixel_size, invert_y=cfg.invert_y)  # fmt: skip
    threshold, summary = choose_threshold(picker, examples, progress, cfg.expected_particles)
    summary["micrographs"] = len(examples)
    return threshold, summary, picker, info


@releases_folder_locks
def run_calibrate(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None = None, progress: bool = False
) -> dict:
    """Choose, shift and store the threshold in ``cfg.outdir`` (never over the input picker).

    Returns:
        dict with ``chosen`` and ``stored`` thresholds, ``validation`` summary and ``path``.
    """
    make_output_folder(cfg.outdir)
    with run_log(cfg.outdir, log):
        return _calibrate(cfg, diameters, progress)


def _calibrate(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None, progress: bool
) -> dict:
    source = resolve_picker(cfg.model).resolve()
    out = (cfg.outdir / RUN_FILE).resolve()
    if out == source:
        raise DracoInputError("-o/--out would overwrite the input picker: choose a new folder")
    refuse_trained_folder(cfg.outdir, RUN_FILE, "picker")
    chosen, summary, picker, info = choose(cfg, diameters, progress)
    stored = shift_threshold(chosen, cfg.logit_shift) if cfg.logit_shift else chosen
    log.info("%s; stored %.3f (logit shift %g) in place of the picker's %.3f", threshold_line(
        chosen, summary).replace("stored threshold", "threshold chosen", 1), stored,
        cfg.logit_shift, info["threshold"])  # fmt: skip
    meta = dict(info["metadata"])
    meta.pop(PREDENOISED_KEY, None)  # chosen for the threshold replaced here: not carried over
    meta["calibration"] = {"source": str(source), "chosen": chosen, "stored": stored,
                           "logit_shift": cfg.logit_shift, "validation": summary,
                           "previous_threshold": info["threshold"]}  # fmt: skip
    make_output_folder(cfg.outdir)
    path = save_picker(out, picker.detector.cpu(), picker.diameter, stored, meta)
    write_config(cfg.outdir, cfg)
    return {"chosen": chosen, "stored": stored, "validation": summary, "path": str(path),
            "previous": float(info["threshold"])}  # fmt: skip
