"""``draco denoise --adapt``: fine-tune the denoiser on the micrographs being denoised, then
denoise them with the adapted weights.

The objective depends on what the user has:

* **Noise2Noise** (``--stage denoise``, :meth:`DracoMAE.forward_n2n`) where the odd/even halves
  exist: the ``X_EVN``/``X_ODD`` files of MotionCor2 and ``draco prepare`` beside ``X``, or the
  ``dracoMicrographEven/Odd`` columns of a manifest STAR. Each half is denoised and scored
  against the other; the expected loss is minimised by the clean image, which is never read
  (the manifest written here has no clean column, even where the input STAR has one).
* **Blind-spot** (``--stage blindspot``, :meth:`DracoMAE.forward_blindspot`) on the full sums
  otherwise: a sparse grid of pixels is hidden and predicted from the rest (Noise2Self), so the
  model learns E[clean | neighbours] without a second noisy view and without the blur of the
  masked-reconstruction objective (whose 16-px hidden patches are predicted from their
  context: measured on a set with truth, docs/benchmarks.md).
* **Masked reconstruction** (``--stage mae``, the earlier default without halves) on request.

It is ``draco pretrain`` with a small budget, not a second trainer: a manifest of the inputs
in ``OUTDIR/adapt/manifest.star``, a run folder ``OUTDIR/adapt/run`` (config.yaml, run.log,
checkpoints, io/run_folder.py) started from the denoiser being adapted (``--init-weights``), and
the exported weights ``OUTDIR/adapt/adapted.safetensors``. ``OUTDIR/adapt/adapt.json`` records
what they were trained on (inputs with sizes and times, settings); a re-run with the same record
reuses the weights without training, a different one is refused (like ``draco simulate``).

This lives in ``train/`` because ``infer/`` may not import ``train/`` (tests/test_architecture.py):
the command line calls :func:`denoise_with_adaptation`, which trains here and then runs the one
batch denoiser, :func:`draco_em.infer.run_denoise.run_denoise`.

Crops are taken at one pixel size: with ``sampling="native"``, the larger of the inputs' and the
initial model's working pixel size (coarser data are not upsampled); with ``"model"``, the
model's own, coarser data Fourier-upsampled to it first as inference upsamples them (``"auto"``
picks per objective, :data:`AUTO_SAMPLING`, and for blind-spot on data ≥ 1.5× coarser the
model's sampling with a 3×3 blind block, :func:`auto_blindspot`). Data finer than that are
binned *before* cropping, by the inference's own Fourier rescaling (:func:`draco_em.model.encoder.
rescale_to_working`), into ``OUTDIR/adapt/binned/``: the crop loader's antialiased bilinear
resize would correlate neighbouring pixels' noise and lower its variance, and the blind-spot
objective learns to copy correlated noise from the neighbours of a hidden pixel. Measured on the
cryoJAX apoferritin set (1.5 Å/px data, 1.98 Å/px model; docs/benchmarks.md, issue 20 session
4): with bilinear crops the adaptation raised the Noise2Self loss of the whole micrographs and
16 epochs lost 0.95 dB of correlation SNR. The adapted model then runs at that pixel size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.run_denoise import run_denoise
from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import expand_inputs
from draco_em.io.halves import halves_of, is_half
from draco_em.io.images import is_raster
from draco_em.io.manifest import EVEN, FULL, HAS_PAIRS, ODD, optics_group, write_manifest
from draco_em.io.mrc import read_image, read_mrc, write_mrc
from draco_em.io.star import OPTICS_DEFAULTS
from draco_em.model.encoder import RESCALE_TOL, rescale_to_working
from draco_em.model.weights import BUNDLED, BUNDLED_DENOISER, read_weights, resolve_weights
from draco_em.train.checkpoint import export_run
from draco_em.train.config import PretrainConfig
from draco_em.train.pretrain import run_pretrain

__all__ = ["AdaptConfig", "DenoiseConfig", "adapt_denoiser", "denoise_with_adaptation"]

log = logging.getLogger("draco_em.train")

ADAPT_DIR = "adapt"
RECORD_FILE = "adapt.json"
#: How an interrupted adaptation goes on (its run.log's Ctrl-C line).
ADAPT_GO_ON = "the same draco denoise --adapt command (it resumes this adaptation, then denoises)"
WEIGHTS_FILE = "adapted.safetensors"


class AdaptConfig(BaseModel):
    """Settings of the adaptation (``draco denoise --adapt``)."""

    epochs: int = Field(4, gt=0, description="Passes over the crops of every micrograph.")
    crops_per_micrograph: int = Field(32, gt=0, description="Random crops per micrograph/epoch.")
    batch_size: int = Field(8, gt=0, description="Crops per optimiser step.")
    blr: float = Field(
        2e-3, gt=0, description="Base lr (lr = blr × batch / 256); the fine-tune recipe's order."
    )
    crop_size: int = Field(128, gt=0, description="Crop side fed to the model (px).")
    stage: Literal["auto", "denoise", "blindspot", "mae"] = Field(
        "auto", description="auto: Noise2Noise where halves exist, else blind-spot."
    )
    blind_radius: int | None = Field(
        None,
        ge=0,
        description="blindspot: half-width (px) of the block hidden around each pixel; None: "
        ":func:`auto_blindspot`'s (1 on data upsampled ≥ 1.5×, else 0).",
    )
    seed: int = Field(0, ge=0, description="Seed of crops, order and masks.")
    sampling: Literal["auto", "native", "model"] = Field(
        "auto",
        description="Data coarser than the model: native (crops, training and the adapted model "
        "at the data's pixel size) or model (inputs Fourier-upsampled to the model's working "
        "pixel size first, as inference does); auto: :data:`AUTO_SAMPLING` for the objective.",
    )


#: ``sampling="auto"`` for data coarser than the model, per objective, chosen on our own 4 Å
#: realistic set with truth (docs/benchmarks.md, issue 20 session 5, step 2): Noise2Noise gains
#: 0.79 dB correlation SNR at the model's sampling (4.589 against 3.803 native); the blind-spot
#: objective collapses there (0.683 against 3.764: upsampled noise is band-limited, so a hidden
#: pixel's noise can be read from its neighbours). mae: 1.413 at the model's sampling against
#: 0.486 native on the same set (issue 20 session 6, step 3; both far below the unadapted model,
#: 4.561: the masked objective blurs).
AUTO_SAMPLING: dict[str, str] = {"denoise": "model", "blindspot": "native", "mae": "model"}
#: Data at least this much coarser than the model: the blind-spot objective adapts at the
#: model's sampling too, hiding the 3×3 block around each pixel (upsampling correlates a
#: pixel's noise with its neighbours'). Chosen on our own 4 Å set with truth (docs/benchmarks.md,
#: issue 20 session 6, step 2): 4.551 dB correlation SNR against 3.860 native (radius 2: 3.527;
#: the unadapted model 4.561), i.e. the 0.7 dB loss of native blind-spot adaptation is gone.
BLINDSPOT_UPSAMPLED = (1.5, 1)


def auto_blindspot(
    adapt: AdaptConfig, stage: str, coarsest: float, working: float
) -> tuple[str, int]:
    """The sampling and blind radius an adaptation uses: ``adapt``'s where given, else the
    measured defaults (:data:`AUTO_SAMPLING`, :data:`BLINDSPOT_UPSAMPLED`)."""
    far = stage == "blindspot" and coarsest >= BLINDSPOT_UPSAMPLED[0] * working
    sampling: str = adapt.sampling
    if sampling == "auto":
        sampling = "model" if far else AUTO_SAMPLING[stage]
    radius = adapt.blind_radius
    if radius is None:
        radius = BLINDSPOT_UPSAMPLED[1] if far and sampling == "model" else 0
    return sampling, radius


def training_rows(cfg: DenoiseConfig) -> list[dict[str, Any]]:
    """One manifest row per full sum among the inputs: its halves (or none) and pixel size.

    Halves come from the input STAR's ``dracoMicrographEven/Odd`` columns where it has them,
    else from ``X_EVN``/``X_ODD`` files beside ``X``. No clean image is ever listed.
    """
    inputs = expand_inputs(cfg.inputs)
    fulls = {it.path for it in inputs.items}
    rows = []
    for item in inputs.items:
        if is_half(item.path, fulls):
            continue
        halves = halves_of(inputs, item)
        px = cfg.pixel_size
        if px is None and inputs.table is not None and item.star_row is not None:
            px = inputs.table.pixel_size(item.star_row)
        if px is None and not is_raster(item.path):
            px = read_mrc(item.path, mmap=True, ndim=(2,)).pixel_size
        if px is None:
            raise DracoInputError("--adapt needs the pixel size: pass --pixel-size", item.path)
        rows.append(
            {
                FULL: str(item.path.resolve()),
                EVEN: str(halves[0].resolve()) if halves else "",
                ODD: str(halves[1].resolve()) if halves else "",
                HAS_PAIRS: int(halves is not None),
                "rlnMicrographPixelSize": float(px),
            }
        )
    if not rows:
        raise DracoInputError("--adapt found no full sums among the inputs", cfg.inputs[0])
    return rows


def _stage(rows: list[dict[str, Any]], adapt: AdaptConfig) -> str:
    paired = [r for r in rows if r[HAS_PAIRS]]
    if adapt.stage == "denoise" and not paired:
        raise DracoInputError(
            "--adapt-stage denoise needs odd/even halves (X_EVN/X_ODD beside X, or the STAR's "
            "dracoMicrographEven/Odd columns); none found",
            rows[0][FULL],
        )
    if adapt.stage == "auto":
        return "denoise" if paired else "blindspot"
    return adapt.stage


def _file_id(path: str) -> list[Any]:
    stat = Path(path).stat()
    return [path, stat.st_size, stat.st_mtime_ns]


def _record(
    cfg: DenoiseConfig, adapt: AdaptConfig, rows: list[dict], stage: str,
    upsampled_to: float | None = None, radius: int = 0,
) -> dict:  # fmt: skip
    """What the weights depend on: initial weights, settings, every training file, and the
    pixel size coarser data were upsampled to (only where they were: records made before
    upsampling existed stay valid)."""
    init = resolve_weights(cfg.weights, BUNDLED_DENOISER)
    # The initial weights by content: a reinstalled package keeps its adaptations valid.
    digest = hashlib.sha256(init.read_bytes()).hexdigest()
    files = [[_file_id(r[k]) for k in (FULL, EVEN, ODD) if r[k]] for r in rows]
    record = {"stage": stage, "init_weights": digest,
              "settings": _settings(adapt, radius), "pixel_size": cfg.pixel_size,
              "micrographs": files}  # fmt: skip
    if upsampled_to is not None:
        record["upsampled_to"] = round(upsampled_to, 4)
    return record


def _settings(adapt: AdaptConfig, radius: int = 0) -> dict:
    """The settings of the record; ``sampling`` only where given, so that folders adapted
    before the option existed (at the then only, native sampling) are still reused, and the
    blind radius used (the default's, 0 or 1), as records made before it had a default did."""
    settings = adapt.model_dump(mode="json") | {"blind_radius": radius}
    if settings["sampling"] == "auto":
        del settings["sampling"]
    return settings


def binned_rows(rows: list[dict[str, Any]], target: float, folder: Path) -> list[dict[str, Any]]:
    """Rows whose sums are not at ``target`` Å/px, re-pointed at copies Fourier-resampled to
    ``target`` in ``folder`` (the inference's resampling; module doc): binned where finer,
    upsampled where coarser (``sampling="model"``). Copies already there are reused (a resumed
    adaptation); inputs are only read. Other rows are returned as they are.
    """
    out = []
    for row in rows:
        px = row["rlnMicrographPixelSize"]
        if abs(px - target) <= RESCALE_TOL:
            out.append(row)
            continue
        new = dict(row)
        for key in (FULL, EVEN, ODD):
            if not row[key]:
                continue
            src = Path(row[key])
            # Inputs from several folders may share a stem: the path's digest keeps them apart.
            tag = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:8]
            dst = folder / f"{src.stem}_{tag}.mrc"
            if not dst.is_file():
                image, _ = read_image(src, px)
                work, work_px = rescale_to_working(image, px, target)
                write_mrc(dst, work, float(work_px or target), inputs=[src])
            new[key] = str(dst)
            new["rlnMicrographPixelSize"] = read_mrc(dst, mmap=True, ndim=(2,)).pixel_size or target
        out.append(new)
    return out


def adapt_denoiser(cfg: DenoiseConfig, adapt: AdaptConfig) -> dict[str, Any]:
    """Fine-tune ``cfg.weights`` on ``cfg.inputs`` (or reuse an earlier adaptation).

    Returns:
        ``{"weights": adapted safetensors, "stage", "micrographs", "reused", "seconds"}``.

    Raises:
        DracoInputError: no usable inputs, no pixel size, ``OUTDIR/adapt`` adapted to other
            inputs or settings.
    """
    folder = cfg.outdir / ADAPT_DIR
    rows = training_rows(cfg)
    stage = _stage(rows, adapt)
    if stage == "denoise":  # Noise2Noise: only micrographs with halves are training data
        rows = [r for r in rows if r[HAS_PAIRS]]
    init = resolve_weights(cfg.weights, BUNDLED_DENOISER)
    working = read_weights(init)[2].get("pixel_size") or rows[0]["rlnMicrographPixelSize"]
    # One pixel size for every crop: the coarser of the data's and the model's (native), or the
    # model's (model); data finer or coarser than it resampled as inference does (module doc).
    coarsest = max(r["rlnMicrographPixelSize"] for r in rows)
    sampling, radius = auto_blindspot(adapt, stage, coarsest, working)
    target = working
    if sampling == "native":
        target = max(working, coarsest)
    if stage == "blindspot" and coarsest > 1.1 * working and (sampling == "native" or not radius):
        log.warning(  # measured at 2× (4 Å data); upsampled with radius ≥ 1 it did not lose
            "blind-spot adaptation of data coarser (%.2f Å/px) than the model (%.2f) at their "
            "own sampling, or upsampled with --adapt-blind-radius 0, lost 0.7-0.8 dB against "
            "the unadapted model on simulated sets with truth (%s); give X_EVN/X_ODD halves "
            "(Noise2Noise) or denoise without --adapt", coarsest, working, doc_ref("benchmarks"),
        )  # fmt: skip
    upsampled = coarsest > target + RESCALE_TOL  # sampling "model" on coarser data
    record = _record(cfg, adapt, rows, stage, target if upsampled else None, radius)
    weights, record_path = folder / WEIGHTS_FILE, folder / RECORD_FILE
    if record_path.is_file():
        saved = json.loads(record_path.read_text())
        if saved.get("trained_on") != record:
            raise DracoInputError(
                "holds an adaptation to other inputs or settings; use a new output folder or "
                "delete it to adapt again",
                folder,
            )
        if weights.is_file():
            log.info("reusing the adapted weights %s", weights)
            return {"weights": weights, "stage": stage, "micrographs": len(rows),
                    "reused": True, "seconds": saved.get("seconds")}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record_path, json.dumps({"trained_on": record}, indent=1))
    t0 = time.perf_counter()
    manifest = folder / "manifest.star"
    rows = binned_rows(rows, target, folder / "binned")
    # write_manifest reads names relative to the manifest's folder: give it absolute paths
    # (a relative -o named every file twice: adout/adapt/adout/adapt/binned/...).
    rows = [{**r, **{k: str(Path(r[k]).resolve()) for k in (FULL, EVEN, ODD) if r[k]}}
            for r in rows]  # fmt: skip
    px0 = rows[0]["rlnMicrographPixelSize"]
    write_manifest(manifest, [optics_group(1, px0, px0, *OPTICS_DEFAULTS.values())], rows)
    side = adapt.crop_size * target
    device = "cuda" if cfg.device.startswith("cuda") else cfg.device
    # A step must fit in one epoch's crops (a single micrograph with few crops still adapts).
    batch = min(adapt.batch_size, len(rows) * adapt.crops_per_micrograph)
    train_cfg = PretrainConfig(
        data=manifest, out_dir=folder / "run", stage=stage, init_weights=init,
        crop_size=adapt.crop_size, crop_angstrom=(side, side),
        crops_per_micrograph=adapt.crops_per_micrograph, val_fraction=0.0, val_micrographs=0,
        workers=0, epochs=adapt.epochs, warmup_epochs=min(1.0, adapt.epochs / 4),
        batch_size=batch, blr=adapt.blr, seed=adapt.seed, device=device,
        blind_radius=radius,
        resume="latest", save_every_steps=0, progress=cfg.progress,
    )  # fmt: skip
    # Ctrl-C: going on is the same denoise command (it resumes this run, exports, denoises);
    # `draco pretrain --resume` would train on without exporting or denoising.
    run_pretrain(train_cfg, go_on=ADAPT_GO_ON)
    export_run(folder / "run", weights, which="latest")
    seconds = round(time.perf_counter() - t0, 1)
    write_text_atomic(record_path, json.dumps({"trained_on": record, "seconds": seconds}, indent=1))
    return {"weights": weights, "stage": stage, "micrographs": len(rows), "reused": False,
            "seconds": seconds}  # fmt: skip


def denoise_with_adaptation(cfg: DenoiseConfig, adapt: AdaptConfig | None = None) -> dict:
    """``draco denoise``: with ``adapt``, fine-tune first and denoise with the adapted weights.

    Returns:
        :func:`run_denoise`'s counts, plus ``"adapt"`` (:func:`adapt_denoiser`'s result).
    """
    if adapt is None:
        return run_denoise(cfg)
    if cfg.blends:  # infer.halves_blend: D(a) must not have trained on b's noise
        flag = "--pseudo-halves" if cfg.pseudo_halves else "--blend-halves"
        raise DracoInputError(
            f"{flag} calibrates on the halves, which --adapt trains on: use one of them"
        )
    if cfg.weights != BUNDLED and not Path(cfg.weights).exists():
        raise DracoInputError("model weights file not found", cfg.weights)
    adapted = adapt_denoiser(cfg, adapt)
    update: dict[str, Any] = {"weights": str(adapted["weights"])}
    if adapted["stage"] == "mae" and cfg.shifts == 1:
        # The masked stage drops the pixel refiner (train/stage_model.py), whose job was to remove
        # the 16-px patch grid of the per-token head; averaging 4 offset grids does it instead
        # (measured on the real micrograph: a visible grid at 1 shift, Eq. 11 9.15 → 9.75 dB).
        update["shifts"] = 4
    adapted["shifts"] = update.get("shifts", cfg.shifts)
    result = run_denoise(cfg.model_copy(update=update))
    return {**result, "adapt": adapted}
