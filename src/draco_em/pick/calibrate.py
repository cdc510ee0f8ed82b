"""Re-set a picker's stored threshold on labelled micrographs, without training.

Two uses:

* A user labels a few micrographs of their protein: ``draco pick calibrate`` chooses the cut-off
  there (the rule of :func:`draco_em.pick.threshold.choose_threshold`), so the general picker's
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
from draco_em.pick.autoscale import ScaleChoice, scale_on_micrographs
from draco_em.pick.config import DEFAULT_TTA, PickCalibrateConfig
from draco_em.pick.labels import load_labelled
from draco_em.pick.model_io import (
    PREDENOISED_KEY,
    RUN_FILE,
    picker_scales,
    read_picker,
    resolve_picker,
    save_picker,
    trained_scales,
)
from draco_em.pick.predict import Picker
from draco_em.pick.threshold import THRESHOLD_RANGE, choose_threshold, threshold_line
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


def scoring_picker(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None = None
) -> tuple[Picker, dict, ScaleChoice | None]:
    """(``cfg.model`` as ``draco pick predict`` runs it, its header, the multiple of the
    diameter chosen from the data or None).

    Predict's default test-time views, and its default multiple of the diameter
    (``model_io.picker_scales``): the one a trained picker was trained or calibrated at, or,
    for the bundled picker, the one chosen from the data (``autoscale``, on the first of
    ``cfg.micrographs``, each at its own diameter from ``diameters``, Å per stem, as
    :func:`choose_with` then scores it). The picker's ``scales`` is that multiple: a threshold
    chosen at another would not suit the scores it will cut.
    """
    detector, info = read_picker(cfg.model)
    diameter = float(cfg.diameter or info["diameter"])
    device = resolve_device(cfg.device)
    picker = Picker(detector.to(device), diameter, float(info["threshold"]), device=device,
                    tta=DEFAULT_TTA, scales=trained_scales(info))  # fmt: skip
    choice = None
    if picker_scales(cfg.model, picker) == "auto":
        choice = scale_on_micrographs(picker, cfg.micrographs, cfg.pixel_size, diameters)
        picker.scales = (choice.multiplier,)
        log.info("diameter %g Å × %g chosen from the data (C %s)", diameter, choice.multiplier,
                 choice.to_json()["criteria"])  # fmt: skip
    elif picker.scales[0] != 1.0:
        log.info("diameter %g Å × %g: the multiple the picker was trained at", diameter,
                 picker.scales[0])  # fmt: skip
    return picker, info, choice


def choose_with(
    cfg: PickCalibrateConfig, picker: Picker, diameters: dict[str, float] | None = None,
    progress: bool = False,
) -> tuple[float, dict]:  # fmt: skip
    """(threshold chosen on ``cfg.micrographs`` with ``picker`` (:func:`scoring_picker`), its
    validation summary); the labels are read at ``picker.scales[0]`` × the diameter.

    Args:
        diameters: Å per micrograph stem (sets of several particle sizes), else
            ``picker.diameter`` (each times the multiple).
    """
    m = picker.scales[0]
    at_m = {stem: m * d for stem, d in diameters.items()} if diameters else None
    examples = load_labelled(cfg.micrographs, cfg.coords, picker.detector.config,
                             m * picker.diameter, at_m, cfg.pixel_size,
                             invert_y=cfg.invert_y)  # fmt: skip
    threshold, summary = choose_threshold(picker, examples, progress, cfg.expected_particles)
    summary["micrographs"] = len(examples)
    return threshold, summary


def choose(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None = None, progress: bool = False
) -> tuple[float, dict, Picker, dict]:
    """(threshold chosen on ``cfg.micrographs``, its validation summary, picker, header):
    :func:`scoring_picker`, then :func:`choose_with`."""
    picker, info, _ = scoring_picker(cfg, diameters)
    return (*choose_with(cfg, picker, diameters, progress), picker, info)


@releases_folder_locks
def run_calibrate(
    cfg: PickCalibrateConfig, diameters: dict[str, float] | None = None, progress: bool = False
) -> dict:
    """Choose, shift and store the threshold in ``cfg.outdir`` (never over the input picker).

    Returns:
        dict with ``chosen`` and ``stored`` thresholds, ``validation`` summary, ``path``,
        the ``previous`` threshold, the ``diameter`` (Å) and the ``multiplier`` of it the
        threshold was chosen at (``scale_chosen``: chosen from the data here).
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
    picker, info, choice = scoring_picker(cfg, diameters)
    chosen, summary = choose_with(cfg, picker, diameters, progress)
    stored = shift_threshold(chosen, cfg.logit_shift) if cfg.logit_shift else chosen
    log.info("%s; stored %.3f (logit shift %g) in place of the picker's %.3f", threshold_line(
        chosen, summary).replace("stored threshold", "threshold chosen", 1), stored,
        cfg.logit_shift, info["threshold"])  # fmt: skip
    meta = dict(info["metadata"])
    meta.pop(PREDENOISED_KEY, None)  # chosen for the threshold replaced here: not carried over
    if choice is not None:  # pick predict with this picker then picks at the same multiple
        meta["auto_scale"] = {"given_diameter": picker.diameter, **choice.to_json()}
    meta["calibration"] = {"source": str(source), "chosen": chosen, "stored": stored,
                           "logit_shift": cfg.logit_shift, "validation": summary,
                           "previous_threshold": info["threshold"],
                           "multiplier": picker.scales[0]}  # fmt: skip
    make_output_folder(cfg.outdir)
    write_config(cfg.outdir, cfg)  # first: the picker, written last, marks a finished run
    path = save_picker(out, picker.detector.cpu(), picker.diameter, stored, meta)
    return {"chosen": chosen, "stored": stored, "validation": summary, "path": str(path),
            "previous": float(info["threshold"]), "diameter": picker.diameter,
            "multiplier": picker.scales[0], "scale_chosen": choice is not None}  # fmt: skip
