"""``draco curate predict``: score micrographs with a trained curator and sort them.

Outputs in ``OUTDIR``:

* ``curation.csv``: one row per micrograph: ``micrograph`` (as given), ``p_accept`` (sum of the
  accept classes' probabilities, the score to threshold), ``decision`` (accept/reject),
  ``reason`` (most probable reject class when rejected, most probable accept class otherwise,
  or the failed signal's reason), ``decided_by`` (``image``, or the STAR signals whose
  threshold rejected it, :mod:`draco_em.curate.signals`), ``signals`` (what took part:
  ``image`` and the signals read and checked), ``pixel_size`` (Å), ``nyquist_ratio`` (power
  near Nyquist over the band below; below ``curate.domain.PRE_DENOISED_BELOW`` it looks
  pre-denoised, :mod:`draco_em.curate.domain`), the signal values
  (``motion_A``, ``ice_ring_density``, ``ctf_resolution_A``, ``defocus_um``,
  ``astigmatism_um``; empty when the STAR lacks them) and ``p_<class>`` for every class;
* ``micrographs_accepted.star`` / ``micrographs_rejected.star``: the input STAR's rows (every
  column and the optics block kept) plus ``dracoCurateScore``, ``dracoCurateClass`` and
  ``dracoCurateDecidedBy``; for plain files ``rlnMicrographName`` and ``rlnOpticsGroup`` with
  an optics block of their own (:mod:`draco_em.curate.lists`);
* ``accepted.txt``, ``rejected.txt`` and ``rejected_<reason>.txt``: the names, one per line;
* ``score_histogram.png`` and ``contact_sheet.png`` (see :mod:`draco_em.curate.report`);
* ``failures.txt`` for unreadable inputs (the batch goes on); ``features/`` caches encoder
  outputs, so an interrupted run resumes without recomputing them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from draco_em.curate.config import CuratePredictConfig
from draco_em.curate.domain import denoised_warning
from draco_em.curate.features import (
    micrograph_features,
    micrograph_nyquist_ratio,
    micrograph_vector,
)
from draco_em.curate.head import Curator, is_bundled_curator, load_curator
from draco_em.curate.lists import (
    known_pixel_sizes,
    optics_warning,
    plain_optics,
    with_optics,
    write_name_lists,
)
from draco_em.curate.particles import EvidenceFn, require_evidence
from draco_em.curate.report import contact_sheet, qc_preview, score_histogram
from draco_em.curate.signals import (
    check_signals,
    read_signals,
    unused_thresholds,
    value_columns,
)
from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path
from draco_em.io.batch import (
    FailureLog,
    InputSet,
    check_picture_pixel_size,
    expand_inputs,
    make_output_folder,
    pixel_sizes,
    placeholder_pixel_size_warning,
)
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.halves import drop_halves
from draco_em.io.mrc import read_image
from draco_em.io.resume import input_states, inputs_changed, record_inputs
from draco_em.io.star import MicrographTable, project_path, write_micrographs_star
from draco_em.model.encoder import Encoder, load_encoder, run_blocks
from draco_em.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """What ``predict`` produced: the per-micrograph table and the files written."""

    table: pd.DataFrame
    outputs: dict[str, Path]
    n_failed: int
    warnings: list[str] = field(default_factory=list)  # about the inputs, one line each
    halves_skipped: int = 0  # X_EVN/X_ODD inputs beside their full sum X (io.halves)


def curator_encoder(curator: Curator, weights: str | None, device: torch.device) -> Encoder:
    """The encoder a curator runs on (its own, or ``weights``), fine-tuned blocks applied."""
    source = weights or curator.encoder
    try:
        encoder = load_encoder(source, device, curator.features.pixel_size)
    except DracoInputError as exc:
        what = (
            "the --weights encoder" if weights else "the encoder the curation head was trained on"
        )
        fix = "give a DRACO encoder file or pretrain run" if weights else "pass --weights ENCODER"
        raise DracoInputError(f"cannot load {what} ({source}): {exc}; {fix}") from exc
    if encoder.digest != curator.encoder_digest:  # said by predict_curation's warnings
        log.info("the encoder weights differ from those the head was trained on (%s)", source)
    if curator.encoder_state:
        encoder.model.load_state_dict(curator.encoder_state, strict=False)
    return encoder


def finetune_start(curator: Curator, encoder: Encoder) -> int | None:
    """First fine-tuned encoder block (features are taken before it), or None when frozen."""
    return encoder.depth - curator.finetune if curator.finetune else None


@torch.no_grad()
def tile_vectors(encoder: Encoder, features: np.ndarray, start: int | None) -> torch.Tensor:
    """Pooled tile vectors ``[T, E]`` from ``encode_tiles(..., stop_block=start)`` output.

    ``start`` is :func:`finetune_start`: the curator's fine-tuned blocks run here.
    """
    x = torch.from_numpy(np.asarray(features)).to(encoder.device)
    if start is not None:
        x = run_blocks(encoder, x, start)
    return x.float()


@torch.no_grad()
def score_micrograph(
    curator: Curator,
    encoder: Encoder,
    path: Path,
    pixel_size: float | None,
    cache_dir: Path | None,
    evidence: EvidenceFn | None = None,
) -> tuple[np.ndarray, float | None]:
    """Class probabilities ``[C]`` of one micrograph file and the pixel size used (Å);
    ``evidence`` for a head that reads particle evidence."""
    start = finetune_start(curator, encoder)
    cfg = curator.features
    feats, spectrum, px = micrograph_features(
        encoder, cfg, path, pixel_size, cache_dir, start, evidence
    )
    vector = micrograph_vector(tile_vectors(encoder, feats, start), spectrum, cfg)[None]
    return curator.probabilities(vector.cpu())[0].numpy(), px


def decide(probs: np.ndarray, curator: Curator, threshold: float) -> tuple[float, str, str]:
    """``(p_accept, decision, reason)`` from class probabilities ``[C]``."""
    acc = curator.accept_index
    p_accept = float(probs[acc].sum())
    decision = "accept" if p_accept >= threshold else "reject"
    pool = acc if decision == "accept" else [i for i in range(len(probs)) if i not in acc]
    reason = curator.classes[max(pool, key=lambda i: probs[i])]
    return p_accept, decision, reason


def _input_table(inputs: InputSet, out_dir: Path) -> tuple[MicrographTable, list[int]]:
    """The STAR the inputs came from (row of each item), or a minimal one for plain files."""
    if inputs.table is not None:
        # Items of a STAR input all carry their row (io.batch.expand_inputs).
        return inputs.table, [cast(int, it.star_row) for it in inputs.items]
    frame = pd.DataFrame({"rlnMicrographName": [project_path(it.path) for it in inputs.items]})
    table = MicrographTable(out_dir / "inputs.star", None, frame, block_name="micrographs")
    return table, list(range(len(inputs.items)))


#: Folder of the per-micrograph previews (``--previews``).
PREVIEWS = "previews"


def _nth(n: int) -> str:
    """The suffix of the n-th preview of one stem: ``""``, then ``_2``, ``_3``..."""
    return "" if n == 1 else f"_{n}"


@releases_folder_locks
def predict_curation(cfg: CuratePredictConfig, evidence: EvidenceFn | None = None) -> PredictResult:
    """Run ``draco curate predict``; ``evidence``: the particle-evidence function a head
    trained with ``--particles`` needs (:mod:`draco_em.curate.particles`)."""
    # Outputs are lists, not files per input: two grids' FoilHole_1.mrc may both be curated.
    inputs, n_halves = drop_halves(expand_inputs(cfg.inputs, unique_stems=False))
    check_picture_pixel_size(inputs, cfg.pixel_size)
    curator = load_curator(cfg.model)
    if curator.features.particles:
        require_evidence(evidence)
    encoder = curator_encoder(curator, cfg.weights, resolve_device(cfg.device))
    # Its STARs and PNGs would replace an input STAR there, or be read as micrographs next time.
    make_output_folder(
        cfg.out_dir, [*cfg.inputs, *(it.path for it in inputs.items)], beside_inputs=False
    )
    table, rows = _input_table(inputs, cfg.out_dir)
    failures = FailureLog(cfg.out_dir)
    records, kept, seen = [], [], set()
    n_stem: dict[str, int] = {}  # previews drawn per stem, for unique names
    # what the image head read: the image, and the picker's particle evidence (--particles)
    image_signals = ["image", "particles"] if curator.features.particles else ["image"]
    items = tqdm(
        list(zip(inputs.items, rows, strict=True)),
        desc="curate",
        unit="mic",
        disable=not cfg.progress,
    )
    px_of = pixel_sizes(inputs, cfg.pixel_size)  # --pixel-size, else the STAR row's
    for item, row in items:
        px = px_of[item.path]
        state = input_states([item.path])  # before it is read: recorded with its preview
        try:
            probs, px = score_micrograph(
                curator, encoder, item.path, px, cfg.out_dir / "features", evidence
            )
            # raw sum or pre-denoised picture? (the bundled head knows raw sums; curate/domain)
            ratio = micrograph_nyquist_ratio(item.path, px, cfg.out_dir / "features")
        except (DracoInputError, OSError, ValueError) as exc:  # a missing file too: go on
            if inputs.table is not None and not item.path.exists():  # the STAR's name, not a guess
                name = str(table.micrographs["rlnMicrographName"].iloc[row])
                # The reason names the file as other reasons do: the summary line shows only it.
                failures.record(name, f"{name}: not found from the current folder, the STAR's "
                                "folder or the folders above it")  # fmt: skip
            else:
                failures.record(item.path, str(exc))
            continue
        p_accept, decision, reason = decide(probs, curator, cfg.threshold)
        try:
            values = read_signals(table, row) if inputs.table is not None else {}
        except DracoInputError as exc:
            failures.record(item.path, str(exc))
            continue
        seen |= set(values)
        verdict = check_signals(values, cfg.signals)
        decided_by = "image"
        if verdict.failed:  # a failed threshold rejects, whatever the image head says
            decision, reason = "reject", str(verdict.reason)
            decided_by = ";".join(verdict.failed)
        name = str(table.micrographs["rlnMicrographName"].iloc[row])
        records.append(
            {
                "micrograph": name,
                "path": str(item.path),
                "p_accept": p_accept,
                "decision": decision,
                "reason": reason,
                "pixel_size": px,
                "nyquist_ratio": round(ratio, 4),
                "decided_by": decided_by,
                "signals": ";".join([*image_signals, *verdict.checked]),
                **value_columns(values),
                **{f"p_{c}": float(p) for c, p in zip(curator.classes, probs, strict=True)},
            }
        )
        kept.append(row)
        if cfg.previews:  # named by stem; a stem met again in this run (two grids) gets _2, _3
            stem = item.path.stem
            n_stem[stem] = n_stem.get(stem, 0) + 1
            preview = cfg.out_dir / PREVIEWS / f"{stem}{_nth(n_stem[stem])}.png"
            records[-1]["preview"] = str(preview.relative_to(cfg.out_dir))
            # a resumed run keeps what it drew, unless the micrograph was rewritten since
            if not preview.is_file() or inputs_changed(cfg.out_dir, preview, state):
                preview.parent.mkdir(exist_ok=True)
                qc_preview(preview, read_image(item.path, px)[0], px, records[-1])
                record_inputs(cfg.out_dir, preview, state)
    if not records:
        first = failures.lines[0].split("\t", 1)[-1].strip() if failures.lines else ""
        first = f" (the first: {first})" if first else ""
        raise DracoInputError(f"no micrograph could be scored{first}; see {failures.path}")
    result = pd.DataFrame(records)
    outputs = write_outputs(cfg, table, kept, result, plain=inputs.table is None)
    warnings = [
        optics_warning(cfg, inputs.table is not None, result),
        denoised_warning(list(result["nyquist_ratio"]), bundled=is_bundled_curator(cfg.model)),
        placeholder_pixel_size_warning(inputs, cfg.pixel_size, "curate"),
        unused_thresholds(cfg.signals, seen),
        None
        if encoder.digest == curator.encoder_digest
        else (
            f"the encoder {cfg.weights or curator.encoder} is not the one the head was trained "
            "on: its decisions may not hold"
        ),
    ]
    return PredictResult(result, outputs, failures.count, [w for w in warnings if w], n_halves)


def write_outputs(
    cfg: CuratePredictConfig,
    table: MicrographTable,
    rows: list[int],
    result: pd.DataFrame,
    plain: bool = False,
) -> dict[str, Path]:
    """Write the CSV, the STAR and text lists and the two PNGs; returns their paths by name.

    ``plain``: the inputs were files, not a STAR: the STAR lists get an optics block of their
    own where every pixel size is known (:func:`~draco_em.curate.lists.with_optics`).
    """
    out = cfg.out_dir
    paths = {
        "csv": out / "curation.csv",
        "accepted": out / "micrographs_accepted.star",
        "rejected": out / "micrographs_rejected.star",
        "histogram": out / "score_histogram.png",
        "sheet": out / "contact_sheet.png",
    }
    with atomic_path(paths["csv"]) as tmp:
        result.drop(columns=["path"]).to_csv(tmp, index=False, float_format="%.6g")
    # Names rewritten so they resolve from here too (docs/conventions.md, "Paths in STAR files").
    scored = table.rebased().filtered(np.isin(np.arange(len(table.micrographs)), rows))
    order = {r: i for i, r in enumerate(rows)}
    # filtered keeps table order; map each kept row back to its result row.
    res_idx = [order[r] for r in sorted(rows)]
    scored.micrographs["dracoCurateScore"] = result["p_accept"].to_numpy()[res_idx]
    scored.micrographs["dracoCurateClass"] = result["reason"].to_numpy()[res_idx]
    scored.micrographs["dracoCurateDecidedBy"] = result["decided_by"].to_numpy()[res_idx]
    if plain and (px := known_pixel_sizes(result)) is not None:
        scored = with_optics(scored, px[res_idx], plain_optics(cfg))
    accepted = (result["decision"] == "accept").to_numpy()[res_idx]
    write_micrographs_star(paths["accepted"], scored.filtered(accepted))
    write_micrographs_star(paths["rejected"], scored.filtered(~accepted))
    paths.update(write_name_lists(out, result))
    score_histogram(paths["histogram"], result, cfg.threshold)
    contact_sheet(paths["sheet"], result, per_row=cfg.contact_sheet)
    return paths
