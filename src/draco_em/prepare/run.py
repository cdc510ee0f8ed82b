"""``draco prepare``: a batch of movies or micrographs → triplets + ``triplets.star``.

Layout of ``OUTDIR``::

    triplets.star             dataset manifest (optics + micrographs; paths as every draco STAR)
    <name>.mrc                full sum          <name>_EVN.mrc / <name>_ODD.mrc: even/odd sums
    motion/<name>.csv         frame,shift_x,shift_y: estimated global shift (movie pixels)
    meta/<name>.json          the item's manifest row, written last: marks it finished
    prepare_config.json       the settings that change the images (checked on resume)
    failures.txt              one line per input that failed (the others go on)

Re-running skips finished items, except those whose input files (a movie, a micrograph or
its halves, the gain) changed since (:func:`draco_em.io.resume.inputs_changed`), and rebuilds
``triplets.star`` from ``meta/``; the settings that change the images are kept in
``prepare_config.json`` and a re-run with other ones is refused.
Work is spread over ``-j`` processes on the CPU, or over the ranks of ``torchrun`` (one per
GPU, each on its share of the inputs).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import (
    FailureLog,
    make_output_folder,
    placeholder_line,
    settings_changes,
    shard,
)
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.gain import load_gain
from draco_em.io.movie_base import MRC_SUFFIXES
from draco_em.io.mrc import header_says_placeholder
from draco_em.io.resume import (
    failed_redo,
    input_states,
    inputs_changed,
    record_inputs,
    redone_note,
)
from draco_em.prepare.config import PrepareConfig, resolved_optics
from draco_em.prepare.frames import ReaderCache, gain_is_divisor
from draco_em.prepare.inputs import plan_items
from draco_em.prepare.manifest import MANIFEST_NAME, write_manifest
from draco_em.prepare.triplets import PrepareItem, output_paths, prepare_item
from draco_em.runtime import barrier, init_distributed, launch_env, resolve_device

log = logging.getLogger(__name__)


@dataclass
class PrepareSummary:
    """What a run did: on rank 0 (``is_main``) every rank's inputs, on other ranks their own
    share (under ``torchrun`` rank 0 reports for the job)."""

    made: int
    skipped: int
    failed: int
    manifest: Path | None
    warnings: list[str] = field(default_factory=list)  # about the inputs, one line each
    is_main: bool = True


def _meta_path(outdir: Path, name: str) -> Path:
    return outdir / "meta" / f"{name}.json"


def finished_row(outdir: Path, item: PrepareItem) -> dict | None:
    """The stored row of an item whose outputs all exist, else None (to be redone)."""
    meta = _meta_path(outdir, item.name)
    if not meta.exists():
        return None
    try:
        row = json.loads(meta.read_text())["row"]
    except (ValueError, KeyError):
        return None  # a damaged record: prepare the item again
    paths = output_paths(outdir, item.name)
    needed = [paths["full"]] + ([paths["odd"], paths["even"]] if row.get("dracoHasPairs") else [])
    return row if all(p.exists() for p in needed) else None


def _sources(cfg: PrepareConfig, item: PrepareItem) -> list[Path]:
    """The files an item's triplet is made from: its movie or micrographs, and the gain a
    movie is corrected with."""
    gain = [cfg.gain] if cfg.gain is not None and item.kind == "movie" else []
    return [*item.sources, *gain]


def _resume_state(cfg: PrepareConfig, item: PrepareItem) -> str:
    """``"done"`` (finished from its input files as they are now), ``"changed"`` (finished,
    but an input file changed since: done again) or ``"new"``."""
    if finished_row(cfg.outdir, item) is None:
        return "new"
    state = input_states(_sources(cfg, item))
    meta = _meta_path(cfg.outdir, item.name)
    return "changed" if inputs_changed(cfg.outdir, meta, state) else "done"


#: Settings that change the images; a resumed run must use the same ones.
_IMAGE_SETTINGS = (
    "gain", "gain_rotate", "gain_flip", "hot_pixels", "pixel_size", "eer_grouping",
    "eer_upsampling", "patches", "bfactor", "align_size", "patch_bfactor", "dose_weighting",
    "dose_per_frame", "float16",
)  # fmt: skip


def _check_resume(cfg: PrepareConfig, target: float | None) -> None:
    """Refuse to mix outputs made with other settings in one folder; record the settings.

    Only finished triplets (``meta/*.json``) hold the old settings: a folder whose every input
    failed (say, TIFF movies without ``--pixel-size``, as the failure line advises to pass)
    takes the new settings, so following that advice does not need a new folder.
    """
    path = cfg.outdir / "prepare_config.json"
    current = json.loads(cfg.model_dump_json(include=set(_IMAGE_SETTINGS)))
    current["target_pixel_size"] = target
    current["eer_gain_rule"] = EER_GAIN_RULE
    if path.exists() and any((cfg.outdir / "meta").glob("*.json")):
        # Folders made before the rule was recorded pass here (non-EER ones are unaffected
        # by it); _check_eer_gain_rule refuses those whose EER triplets it changes.
        legacy = {"eer_gain_rule": EER_GAIN_RULE}
        if changes := settings_changes(path, current, legacy, recorded_only=True):
            raise DracoInputError(
                f"holds triplets made with other settings ({changes}); "
                "use a new output folder or the same settings to resume",
                cfg.outdir,
            )
        _check_eer_gain_rule(cfg, path)
        return
    write_text_atomic(path, json.dumps(current, indent=1))


#: How ``--gain`` applies to EER movies (recorded in prepare_config.json): divided unless it is
#: EPU's ``.gain``, as RELION's loadEERGain reads it (:func:`~draco_em.prepare.frames.
#: gain_is_divisor`); folders made before have no such entry and multiplied every gain.
EER_GAIN_RULE = "relion"


def _check_eer_gain_rule(cfg: PrepareConfig, recorded: Path) -> None:
    """Refuse to resume a folder whose EER triplets were gain-corrected the old way (the gain
    multiplied) where this run would divide by it: the two would mix silently."""
    if cfg.gain is None or not gain_is_divisor(cfg.gain, eer=True):
        return
    if "eer_gain_rule" in json.loads(recorded.read_text()):
        return
    eer = [m for m in (cfg.outdir / "meta").glob("*.json") if _made_from_eer(m)]
    if eer:
        raise DracoInputError(
            f"holds {len(eer)} triplet(s) made from EER movies before draco divided EER "
            f"movies by a gain reference other than EPU's .gain (as RELION does); this run "
            "would divide, the old ones multiplied: prepare them again in a new output folder",
            cfg.outdir,
        )


def _made_from_eer(meta: Path) -> bool:
    """Whether a ``meta/<name>.json`` record names an ``.eer`` movie among its sources."""
    try:
        sources = json.loads(meta.read_text()).get("source", [])
    except (OSError, ValueError, AttributeError):
        return False
    return any(str(s).lower().endswith(".eer") for s in sources)


# ----------------------------------------------------------------------- worker processes
_STATE: dict = {}


def _init_worker(cfg: PrepareConfig, target: float | None, threads: int) -> None:
    torch.set_num_threads(threads)
    _STATE.update(cfg=cfg, target=target, reader=ReaderCache(cfg))


def _one(item: PrepareItem) -> dict:
    cfg: PrepareConfig = _STATE["cfg"]
    state = input_states(_sources(cfg, item))  # before they are read
    row = prepare_item(item, cfg, _STATE["reader"], _STATE["target"])
    notes = row.pop("_notes", [])
    record = {"source": [str(p) for p in item.sources], "notes": notes, "row": row}
    meta = _meta_path(cfg.outdir, item.name)
    write_text_atomic(meta, json.dumps(record, indent=1))
    record_inputs(cfg.outdir, meta, state)
    return row


@dataclass
class _Failures:
    """The run's failure log, and the items whose redo (an input changed) a failure leaves
    with their earlier triplet: their line says so (:func:`draco_em.io.resume.failed_redo`)."""

    log: FailureLog
    changed: set[str]

    def record(self, item: PrepareItem, exc: BaseException) -> None:
        reason = _reason(exc, item)
        self.log.record(_source(item), failed_redo(reason) if item.name in self.changed else reason)


def _run_items(
    todo: list[PrepareItem],
    cfg: PrepareConfig,
    target: float | None,
    failures: _Failures,
    progress: bool,
) -> int:
    """Prepare ``todo``; failures are recorded and skipped. Returns the number made."""
    made, start = 0, time.monotonic()
    bar = tqdm(total=len(todo), desc="prepare", unit="movie", disable=not progress)

    def tick(ok: bool) -> None:
        nonlocal made
        made += ok
        bar.update()
        minutes = max((time.monotonic() - start) / 60, 1e-9)
        bar.set_postfix_str(f"{bar.n / minutes:.1f} movies/min")

    jobs = min(cfg.jobs, len(todo))
    if jobs <= 1:
        _init_worker(cfg, target, threads=max(1, torch.get_num_threads()))
        for item in todo:
            tick(_guarded(item, failures))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = get_context("spawn")  # no fork of a process holding torch threads
        init = (cfg, target, threads)
        with ProcessPoolExecutor(jobs, context, _init_worker, init) as pool:
            futures = {pool.submit(_one, item): item for item in todo}
            for future in as_completed(futures):
                try:
                    future.result()
                    tick(True)
                except Exception as exc:  # one bad movie must not stop the batch
                    failures.record(futures[future], exc)
                    tick(False)
    bar.close()
    return made


def _guarded(item: PrepareItem, failures: _Failures) -> bool:
    try:
        _one(item)
        return True
    except Exception as exc:  # recorded, the batch goes on (our bugs too: see failures.txt)
        log.debug("failed %s", item.name, exc_info=True)
        failures.record(item, exc)
        return False


def _source(item: PrepareItem) -> Path:
    return item.sources[0]


def _reason(exc: BaseException, item: PrepareItem) -> str:
    """One line naming the file: the summary quotes the first failure alone, and an error
    of ours (a RuntimeError from torch) names no file by itself."""
    if isinstance(exc, DracoInputError) and exc.path is not None:
        return str(exc)
    what = str(exc) if isinstance(exc, DracoInputError) else f"{type(exc).__name__}: {exc}"
    return f"{_source(item)}: {what}"


# ------------------------------------------------------------------------------ the run
def _launch(cfg: PrepareConfig) -> tuple[int, int, str, Callable[[], None]]:
    """(rank, world size, device, barrier): a process group only when launched in parallel."""
    rank, world, _ = launch_env()
    if world > 1:
        ctx = init_distributed(cfg.device)
        return ctx.rank, ctx.world_size, str(ctx.device), lambda: barrier(ctx)
    device = cfg.device
    if device == "auto":  # -j workers share the CPU; one process may use the GPU
        device = "cuda" if torch.cuda.is_available() and cfg.jobs == 1 else "cpu"
    if device.startswith("cuda") and cfg.jobs > 1:
        raise DracoInputError("-j is for CPU workers; use torchrun for several GPUs")
    return rank, world, str(resolve_device(device)), lambda: None


@releases_folder_locks
def run_prepare(cfg: PrepareConfig, progress: bool = True) -> PrepareSummary:
    """Prepare every input (resuming a previous run) and write ``OUTDIR/triplets.star``."""
    items = plan_items(cfg)
    if cfg.gain is not None:  # a bad --gain is the option's error, not one failure per movie
        try:
            load_gain(cfg.gain, cfg.gain_rotate, cfg.gain_flip)
        except DracoInputError as exc:
            raise DracoInputError(f"--gain {exc}") from exc
    rank, world, device, barrier = _launch(cfg)
    cfg = cfg.model_copy(update={"device": device})
    sources = [src for item in items for src in item.sources]
    make_output_folder(cfg.outdir, [*cfg.inputs, *sources], beside_inputs=False)
    target = cfg.resolved_target_pixel_size()
    before: list[str] = []
    if rank == 0:
        _check_resume(cfg, target)
        # every rank's items, judged before any rank starts (the summary's "already there";
        # each rank alone knows only its own share)
        before = [_resume_state(cfg, item) for item in items]
    barrier()
    mine = shard(items, rank, world)
    state = {item.name: _resume_state(cfg, item) for item in mine}
    todo = [item for item in mine if state[item.name] != "done"]
    failures = FailureLog(cfg.outdir, rank=rank)
    changed = {name for name, s in state.items() if s == "changed"}
    made = _run_items(todo, cfg, target, _Failures(failures, changed), progress and rank == 0)
    skipped = len(mine) - len(todo)
    barrier()
    manifest, warnings = None, []
    if rank == 0:
        failures.merge(world)  # one failures.txt for every rank
        # the job's counts, not rank 0's share (it said "2 prepared" of 3 under 2 ranks)
        now = [_resume_state(cfg, item) for item in items]
        # a changed item whose redo failed ("changed" still) keeps its earlier triplet on
        # disk, out of the manifest (io.resume.failed_redo)
        rows = [
            {**row, "_optics": resolved_optics(cfg, item.optics)}
            for item, state in zip(items, now, strict=True)
            if state == "done" and (row := finished_row(cfg.outdir, item)) is not None
        ]
        manifest = write_manifest(cfg, rows) if rows else None
        if manifest is None:  # an earlier run's manifest would list triplets it no longer does
            (cfg.outdir / MANIFEST_NAME).unlink(missing_ok=True)
        made = sum(a != "done" and b == "done" for a, b in zip(before, now, strict=True))
        skipped = before.count("done")
        redone = [item.name for item, a, b in zip(items, before, now, strict=True)
                  if a == "changed" and b == "done"]  # fmt: skip
        warnings = [_placeholder_warning(cfg, items), redone_note(redone)]
    return PrepareSummary(made, skipped, failures.count, manifest,
                          [w for w in warnings if w], is_main=rank == 0)  # fmt: skip


def _placeholder_warning(cfg: PrepareConfig, items: list[PrepareItem]) -> str | None:
    """One line when MRC inputs take their pixel size from a 1.0 Å header (often a
    placeholder: the outputs are then Fourier-cropped by the wrong factor), as the other
    commands say it (``io.batch.placeholder_pixel_size_warning``)."""
    if cfg.pixel_size is not None:
        return None
    flagged = [
        item.sources[0]
        for item in items
        if item.pixel_size is None
        and item.sources[0].suffix.lower() in MRC_SUFFIXES
        and header_says_placeholder(item.sources[0])
    ]
    return placeholder_line(flagged, len(items))
