"""Train or fine-tune the picker: config → data → detector → optimiser → loop → threshold → save.

Example (fine-tune the general picker from a few hundred hand-picked particles)::

    draco pick train --micrographs mics/ --coords picks/ --diameter 250 -o runs/pick1 \
        --weights bundled --finetune-blocks 2 --epochs 20

The run folder gets ``picker.safetensors`` (weights + diameter + default threshold),
``config.yaml`` and ``run.log``. While it trains, ``checkpoints/latest.pt`` holds the run after
its last finished epoch (:class:`~draco_em.pick.checkpoint.Checkpoints`): after a kill or Ctrl-C
the same command with ``--resume latest`` goes on from there and ends with the picker an
uninterrupted run writes.

The default threshold is the one with the best F1 on the held-out micrographs (the training
ones when there is only one), matched within half a diameter. With sparse labels that F1
undercounts precision (unlabelled particles count as false picks) and its cut-off is too high;
given ``--expected-particles`` (per micrograph) the F1 is the positive-unlabelled estimate
instead (:func:`draco_em.pick.threshold.threshold_from_matches`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.io.batch import make_output_folder
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.run_folder import refuse_trained_folder, run_log, write_config
from draco_em.model.weights import read_weights, resolve_weights
from draco_em.pick.autoscale import ScaleChoice, scale_on_micrographs
from draco_em.pick.checkpoint import (
    Checkpoints,
    remove_checkpoint,
    resume_point,
    train_settings,
)
from draco_em.pick.config import DEFAULT_TTA, DetectorConfig, PickTrainConfig
from draco_em.pick.data import (
    Example,
    make_batch,
)
from draco_em.pick.detector import ParticleDetector, load_encoder_weights
from draco_em.pick.labels import say_warning
from draco_em.pick.loss import class_prior, offset_loss, pu_focal_loss
from draco_em.pick.model_io import RUN_FILE, read_picker, save_picker
from draco_em.pick.predict import Picker
from draco_em.pick.threshold import (
    choose_threshold,
    density_threshold,
    epoch_validation,
    epoch_validation_note,
    labelled_fraction,
    no_label_found_warning,
    threshold_line,
    validation_matches,
)
from draco_em.pick.training_data import (
    TrainingData,
    data_change,
    load_training_data,
    validation_line,
)
from draco_em.runtime import resolve_device

log = logging.getLogger("draco_em.pick")


def build_detector(weights: str | None, detector_cfg: DetectorConfig | None = None):
    """(detector, trains_whole_encoder) from a picker, a DRACO encoder, or nothing."""
    if weights is None:
        return ParticleDetector(detector_cfg or DetectorConfig()), True
    try:  # a picker file / run folder / the bundled picker
        detector, _ = read_picker(weights)
        return detector.train(), False
    except DracoInputError:
        if weights == "bundled":
            raise
    _, enc_cfg, _ = read_weights(resolve_weights(weights))  # a pretrain run folder too
    base = (detector_cfg or DetectorConfig()).model_dump()
    cfg = DetectorConfig(**{**base, "encoder": enc_cfg.model_dump()})
    detector = ParticleDetector(cfg)
    load_encoder_weights(detector, weights)
    return detector, False


def scale_for_training(
    cfg: PickTrainConfig,
    detector: ParticleDetector,
    device: torch.device,
    diameters: Mapping[str, float] | None = None,
) -> ScaleChoice:
    """``--auto-scale``: the multiple of ``cfg.diameter`` the *starting* picker is most
    confident at on the first training micrographs (``autoscale.first_micrographs``), with
    its stored threshold and `pick predict`'s views, as ``draco pick predict --diameter-scales
    auto`` chooses it (issue 18, session 7, step 2); each micrograph at its own diameter where
    ``diameters`` (Å per stem) gives one, as it is then trained at."""
    if cfg.weights is None:
        raise DracoInputError("--auto-scale needs --weights: a picker (bundled) to choose with")
    try:
        threshold = float(read_picker(cfg.weights)[1]["threshold"])
    except DracoInputError:
        raise DracoInputError(
            "--auto-scale needs --weights to be a picker (bundled or a pick train run), "
            "not a DRACO encoder", cfg.weights
        ) from None  # fmt: skip
    picker = Picker(detector.to(device).eval(), cfg.diameter, threshold, device=device,
                    tta=DEFAULT_TTA)  # fmt: skip
    choice = scale_on_micrographs(picker, cfg.micrographs, cfg.pixel_size, diameters)
    detector.train()
    return choice


def say(message: str, progress: bool) -> None:
    """A line in run.log, and on the terminal when ``progress`` (``-q`` hides it)."""
    log.info(message)
    if progress:
        tqdm.write(message)


#: Said when no labelled micrograph could be held out to choose the stored threshold.
NO_HOLDOUT_WARNING = (
    "no labelled micrograph was held out (fewer than 3 labelled, no --val-micrographs): the "
    "stored threshold was chosen on the training micrographs; with few labels it can "
    "under-pick (EMPIAR-10017, 20 picks on 2 micrographs: F1 0.615 at it, 0.766 at the best; "
    "200 picks on 2: 0.823, as good as the best); look at the picks, label a third "
    "micrograph, or pick with --expected-particles N"
)


#: Said on Ctrl-C before the first epoch was saved: nothing of the run is kept but its run.log.
INTERRUPTED_NOTE = (
    "interrupted before its first epoch ended: no checkpoint or picker was written; run the "
    "same command again to train from the start"
)


@contextmanager
def interrupted_note(checkpoints: Checkpoints) -> Iterator[None]:
    """On Ctrl-C, one line in run.log (inside :func:`run_log`) and on stderr: how to go on
    from the checkpoint, or :data:`INTERRUPTED_NOTE` when none was saved."""
    try:
        yield
    except KeyboardInterrupt:
        note = INTERRUPTED_NOTE
        if checkpoints.saved is not None:
            note = (f"interrupted: the run is saved after {checkpoints.saved} in "
                    f"{checkpoints.path}; continue it with the same command and --resume "
                    "latest")  # fmt: skip
        log.warning(note)
        tqdm.write(note, file=sys.stderr)
        raise


def _optimizer(detector: ParticleDetector, cfg: PickTrainConfig, whole: bool):
    for p in detector.encoder.parameters():
        p.requires_grad_(whole)
    groups = [{"params": detector.head_parameters(), "lr": cfg.lr}]
    if whole:
        groups.append({"params": list(detector.encoder.parameters()), "lr": cfg.lr})
    else:
        enc = detector.encoder_parameters(cfg.finetune_blocks)
        for p in enc:
            p.requires_grad_(True)
        if enc:
            groups.append({"params": enc, "lr": cfg.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=1e-4)


def fit(detector: ParticleDetector, train: list[Example], cfg: PickTrainConfig, whole: bool,
        prior: float, device: torch.device = torch.device("cpu"), progress: bool = False,
        validate: Callable[[], str] | None = None,
        checkpoints: Checkpoints | None = None) -> list[float]:  # fmt: skip
    """The training loop on ``device`` (where ``detector`` is); the mean loss of each epoch.

    Each epoch ends with one line (run.log, and the terminal under the progress bar when
    ``progress``): ``epoch k/N loss L``, plus the validation figures from ``validate`` (called
    with the detector in eval mode; :func:`epoch_validation`) when given, and then with a
    checkpoint when ``checkpoints`` is given; a resumed one goes on after its last epoch.
    """
    rng = np.random.default_rng(cfg.seed)
    opt = _optimizer(detector, cfg, whole)
    steps = max(1, cfg.crops_per_epoch // cfg.batch_size)
    total = cfg.epochs * steps
    base = [g["lr"] for g in opt.param_groups]  # before a resume loads the last step's lr
    done, losses = checkpoints.restore(detector, opt, rng) if checkpoints else (0, [])
    sigma = detector.config.diameter_px * detector.config.sigma_fraction
    detector.train()
    bar = tqdm(total=total, initial=done * steps, unit="step", disable=not progress, leave=False)
    for epoch in range(done, cfg.epochs):
        running = []
        bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
        for step in range(steps):
            k = epoch * steps + step  # cosine decay after a short warm-up
            scale = (
                min(1.0, (k + 1) / max(1, total // 20)) * 0.5 * (1 + math.cos(math.pi * k / total))
            )
            for g, lr in zip(opt.param_groups, base, strict=True):
                g["lr"] = lr * scale
            b = make_batch(train, cfg.batch_size, cfg.crop, sigma, rng, jitter=cfg.scale_jitter)
            b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            logits, off = detector(b["image"])
            loss = pu_focal_loss(logits, b["heat"], b["centres"], prior, b["junk"], cfg.junk_weight)
            loss = loss + offset_loss(off, b["offsets"], b["centres"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{running[-1]:.4f}")
        losses.append(float(np.mean(running)))
        line = f"epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.4f}"
        if validate is not None:
            detector.eval()
            line += f" {validate()}"
            detector.train()
        log.info(line)
        if progress:
            bar.write(line)
        if checkpoints is not None:
            checkpoints.save(epoch + 1, detector, opt, rng, losses)
    bar.close()
    return losses


def refit_all(
    cfg: PickTrainConfig, examples: list[Example], val: list[Example], threshold: float,
    val_result: dict, detector_config: DetectorConfig | None, device: torch.device,
    progress: bool = False, negatives: Sequence[Example] = (),
    checkpoints: Checkpoints | None = None,
) -> tuple[ParticleDetector, float, dict]:  # fmt: skip
    """Train again from ``cfg.weights`` on every labelled micrograph (``--refit``).

    The first model's cut-off ``threshold`` was chosen on ``val``, micrographs it never saw;
    the second model sees them too (a third more labels with 3 labelled micrographs), so
    nothing is left to choose its cut-off on. ``cfg.refit`` says how it is carried over:
    ``score`` keeps the same cut-off (same recipe, same PU prior per micrograph, so a similar
    calibration); ``density`` takes the cut-off at which the second model finds as many
    peaks per working px² on all labelled micrographs as the first found on ``val`` at
    ``threshold`` (pick predict's default views both times). ``checkpoints``: saved after
    each epoch of this second training, which a resume in it continues.

    Returns:
        (detector in eval mode, stored threshold, the run's ``refit`` metadata).
    """
    torch.manual_seed(cfg.seed)
    detector, whole = build_detector(cfg.weights, detector_config)
    n_labelled = sum(len(e.xy) for e in examples)
    expected = cfg.expected_particles * len(examples) if cfg.expected_particles else n_labelled
    prior = class_prior(max(expected, 1.0), sum(e.image.size for e in examples))
    log.info("refit: %d micrographs, %d labelled particles, prior %.4g",
             len(examples), n_labelled, prior)  # fmt: skip
    losses = fit(detector.to(device), [*examples, *negatives], cfg, whole, prior, device,
                 progress, checkpoints=checkpoints)  # fmt: skip
    detector.eval()
    density = val_result.get("at_threshold", {}).get("n_pred", 0) / sum(e.image.size for e in val)
    picker = Picker(detector, cfg.diameter, device=device)
    picker.tta = DEFAULT_TTA
    _tp, scores, _n = validation_matches(picker, examples, progress)
    by_density = density_threshold(scores, density * sum(e.image.size for e in examples))
    # no validation picks at all: no density to match, so the first cut-off is carried over
    by_score = cfg.refit == "score" or "at_threshold" not in val_result
    stored = threshold if by_score else by_density
    log.info("refit: stored threshold %.3f (%s; first model's cut-off %.3f, the density-matched "
             "one %.3f for %.3g picks per 1000 working px²)", stored,
             "by score" if by_score else "by density", threshold,
             by_density, 1000 * density)  # fmt: skip
    info = {"mode": cfg.refit, "first_threshold": threshold, "density_threshold": by_density,
            "picks_per_kpx2": 1000 * density, "n_labelled": n_labelled,
            "losses": losses}  # fmt: skip
    return detector, stored, info


def first_model(
    cfg: PickTrainConfig, detector: ParticleDetector, whole: bool, data: TrainingData,
    device: torch.device, progress: bool, checkpoints: Checkpoints,
) -> tuple[float, dict, dict]:  # fmt: skip
    """Train ``detector`` on ``data.train`` and choose its threshold on ``data.val``;
    (threshold, validation report, the picker's metadata)."""
    val = data.val
    picker = Picker(detector, cfg.diameter, device=device)
    fraction = None
    if cfg.expected_particles:  # as choose_threshold takes it
        fraction = labelled_fraction(sum(len(e.xy) for e in val), len(val),
                                     cfg.expected_particles)  # fmt: skip
    if val:
        say(epoch_validation_note(fraction), progress)

    def validate() -> str:
        return epoch_validation(*validation_matches(picker, val), fraction)

    losses = fit(detector.to(device), [*data.train, *data.negatives], cfg, whole, data.prior,
                 device, progress, validate if val else None, checkpoints)  # fmt: skip
    detector.eval()
    # The stored threshold is chosen on scores made as `draco pick predict` makes them
    # (its default test-time views), so that it suits the scores it will cut.
    picker.tta = DEFAULT_TTA
    threshold, val_result = choose_threshold(picker, val, expected_particles=cfg.expected_particles)
    say(threshold_line(threshold, val_result), progress)
    if val is data.train:  # fewer than 3 labelled micrographs and no --val-micrographs
        say_warning(NO_HOLDOUT_WARNING)
    if missed := no_label_found_warning(threshold, val_result):
        say_warning(missed)
    meta = {"n_labelled": data.n_labelled, "n_negatives": len(data.negatives),
            "validation_micrographs": [e.name for e in val], "losses": losses,
            "validation": val_result, "weights": cfg.weights}  # fmt: skip
    return threshold, val_result, meta


def resumed_scale(state: dict[str, Any] | None) -> ScaleChoice | None:
    """The ``--auto-scale`` choice a resumed checkpoint records (chosen once per run)."""
    saved = None if state is None else state.get("auto_scale")
    if saved is None:
        return None
    criteria = {float(m): float(c) for m, c in saved["criteria"].items()}
    return ScaleChoice(float(saved["multiplier"]), criteria, list(saved["micrographs"]))


@releases_folder_locks
def train_picker(
    cfg: PickTrainConfig,
    diameters: dict[str, float] | None = None,
    detector_config: DetectorConfig | None = None,
    progress: bool = False,
) -> Path:
    """Run :class:`PickTrainConfig` and return the picker file written in ``cfg.outdir``.

    Args:
        cfg: the run settings (``resume='latest'``: go on from the folder's checkpoint).
        diameters: Å per micrograph stem, overriding ``cfg.diameter`` for training images.
        detector_config: architecture of a new detector (default :class:`DetectorConfig`);
            ignored when ``cfg.weights`` is a picker.
        progress: a progress bar and one line per epoch on the terminal.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    make_output_folder(cfg.outdir)
    refuse_trained_folder(cfg.outdir, RUN_FILE, "picker")
    settings = train_settings(cfg, detector_config, diameters)
    resumed = resume_point(cfg, settings)  # before anything in the folder is written
    # The settings as given (--auto-scale's multiple goes to the picker's metadata), first: an
    # interrupted run's folder says what it ran, and the picker is the last file written. On
    # resume only RESUME_MAY_CHANGE can differ (resume_point refuses the rest), so the file
    # then says what the run went on with (--device, --threads), as pretrain's does.
    write_config(cfg.outdir, cfg)
    checkpoints = Checkpoints(cfg.outdir, {"settings": settings}, resumed)
    with run_log(cfg.outdir, log), interrupted_note(checkpoints):
        if resumed is not None:  # on the terminal too: the epoch lines go on from there
            say(f"resuming {checkpoints.path} after {checkpoints.saved}", progress)
        path = _train(cfg, diameters, detector_config, device, progress, checkpoints)
    remove_checkpoint(checkpoints.path)  # the picker holds all that is left of it
    return path


def _train(
    cfg: PickTrainConfig, diameters: dict[str, float] | None,
    detector_config: DetectorConfig | None, device: torch.device, progress: bool,
    checkpoints: Checkpoints,
) -> Path:  # fmt: skip
    """:func:`train_picker` inside its run.log: detector → scale → data → train → refit → save."""
    resumed = checkpoints.resumed
    detector, whole = build_detector(cfg.weights, detector_config)
    given, choice = cfg.diameter, resumed_scale(resumed)
    if cfg.auto_scale and choice is None:
        choice = scale_for_training(cfg, detector, device, diameters)
    if choice is not None:
        cfg = cfg.model_copy(update={"diameter": choice.multiplier * cfg.diameter})
        if diameters:  # each micrograph at its own diameter × the multiple, as predict picks
            diameters = {stem: choice.multiplier * d for stem, d in diameters.items()}
        log.info("diameter: %g Å given, × %g chosen from the data (C %s): trained at %g Å",
                 given, choice.multiplier, choice.to_json()["criteria"],
                 cfg.diameter)  # fmt: skip
    data = load_training_data(cfg, detector, diameters)
    say(validation_line(data.val, data.val is data.train, bool(cfg.val_micrographs)), progress)
    if resumed is not None and (changed := data_change(resumed["data"], data.names())):
        raise DracoInputError(
            f"--resume latest: the micrographs differ from the interrupted run's ({changed}): "
            "restore them to continue it, or give a new -o folder", checkpoints.path,
        )  # fmt: skip
    checkpoints.record |= {"data": data.names(),
                           "auto_scale": None if choice is None else choice.to_json()}  # fmt: skip
    if resumed is not None and resumed["phase"] == "refit":  # the first model is done
        first = resumed["first"]
        threshold, val_result, meta = first["threshold"], first["val_result"], first["meta"]
        say(f"the first model's threshold {threshold:.3f} was chosen before the interruption: "
            "going on with the --refit training", progress)  # fmt: skip
    else:
        threshold, val_result, meta = first_model(cfg, detector, whole, data, device, progress,
                                                  checkpoints)  # fmt: skip
    held_out = data.val is not data.train and not cfg.val_micrographs
    if cfg.refit != "none" and not held_out:
        log.info("refit skipped: no micrograph was held out from the labelled ones")
    elif cfg.refit != "none":
        # plain JSON (numpy scalars are no weights_only type), as the picker stores them
        first = json.loads(json.dumps({"threshold": threshold, "val_result": val_result,
                                       "meta": meta}))  # fmt: skip
        checkpoints.record["first"], checkpoints.phase = first, "refit"
        detector, threshold, refit = refit_all(cfg, data.examples, data.val, threshold,
                                               val_result, detector_config, device, progress,
                                               data.negatives, checkpoints)  # fmt: skip
        meta.update(n_labelled=refit["n_labelled"], losses=refit.pop("losses"), refit=refit)
    meta["train_seconds"] = round(time.time() - checkpoints.started, 1)
    if choice is not None:  # the given diameter is stored; the picker runs at m × it
        meta["auto_scale"] = {"given_diameter": given, **choice.to_json()}
    return save_picker(cfg.outdir / RUN_FILE, detector, given, threshold, meta)
