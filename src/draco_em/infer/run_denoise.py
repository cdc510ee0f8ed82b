"""``draco denoise``: a resumable batch over thousands of micrographs, stacks and tilt series.

A DataLoader decodes and normalises inputs in worker processes while the model runs; outputs
are written atomically, finished ones are skipped (``skip_existing``) unless an input file
changed since (:func:`draco_em.io.resume.inputs_changed`), a file that fails goes to
``OUTDIR/failures.txt`` and the rest continue. Under ``torchrun`` each rank takes its share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.denoise import Denoiser
from draco_em.infer.outputs import (
    Layout,
    denoise_one,
    output_path,
    tilt_companions,
    write_output_star,
)
from draco_em.io.batch import (
    FailureLog,
    InputItem,
    InputSet,
    check_picture_pixel_size,
    check_settings,
    expand_inputs,
    make_output_folder,
    pixel_sizes,
    placeholder_pixel_size_warning,
    shard,
)
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.halves import halves_of, is_half
from draco_em.io.images import is_raster, read_raster_stack, require_pixel_size
from draco_em.io.model_file import BUNDLED, MODEL_STAMP, model_stamp, rewritten_while_read
from draco_em.io.mrc import check_micrograph_pixels, read_mrc
from draco_em.io.resume import (
    FileState,
    failed_redo,
    input_states,
    inputs_changed,
    record_failed_redo,
    record_inputs,
    redone_note,
)
from draco_em.model.weights import BUNDLED_DENOISER, load_model, resolve_weights
from draco_em.runtime import (
    DistContext,
    all_gather_objects,
    cleanup,
    cpu_has_bf16,
    die_with_parent,
    init_distributed,
)

#: What the reader hands over: (index, image, pixel size, error text, (even, odd) or None,
#: layout).
Read = tuple[
    int, np.ndarray | None, float | None, str, tuple[np.ndarray, np.ndarray] | None, Layout
]


class _Reader(Dataset):
    """Reads and checks one input (and its real halves, with ``--blend-halves`` or
    ``--pseudo-halves``) per item in a worker; errors travel back as text."""

    def __init__(
        self,
        items: list[InputItem],
        pixel_sizes: dict[Path, float | None],
        halves: dict[Path, tuple[Path, Path]] | None = None,
    ) -> None:
        """``pixel_sizes``: what each input is read with ahead of its header
        (``io.batch.pixel_sizes``: ``--pixel-size``, else its STAR row's; None: the header's);
        its halves are read with the input's."""
        self.items, self.pixel_sizes, self.halves = items, pixel_sizes, halves or {}

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: Path, given: float | None) -> tuple[np.ndarray, float | None, Layout]:
        px: float | None
        layout: Layout = None
        if is_raster(path):  # PNG/JPEG/TIFF (a multi-page TIFF: a stack), px from the option
            px = require_pixel_size(path, given)
            data = read_raster_stack(path)
        else:
            mrc = read_mrc(path, pixel_size=given, ndim=(2, 3))
            data, px = np.array(mrc.data, dtype=np.float32), mrc.pixel_size  # writable copy
            layout = (data.ndim == 3 and not mrc.is_stack, mrc.origin)
        check_micrograph_pixels(data, path, "image")  # as every other stage (8×8 went through)
        return data, px, layout

    def __getitem__(self, i: int) -> Read:
        path = self.items[i].path
        given = self.pixel_sizes.get(path)
        try:
            data, px, layout = self._read(path, given)
            pair = None
            if path in self.halves:  # a stack's halves are stacks: blended section by section
                even, odd = self.halves[path]
                pair = (self._read(even, given)[0], self._read(odd, given)[0])
                for half, arr in zip(self.halves[path], pair, strict=True):
                    if arr.shape != data.shape:
                        raise DracoInputError(
                            f"half sum of shape {arr.shape} beside a {data.shape} micrograph", half
                        )
            return i, data, px, "", pair, layout
        except DracoInputError as exc:
            return i, None, None, str(exc), None, None


def _as_is(item: Any) -> Any:
    """Keep numpy arrays as they are (the default collate would turn them into tensors)."""
    return item


def _load(cfg: DenoiseConfig, device: torch.device) -> Denoiser:
    model, _, meta = load_model(cfg.weights, device=device, bundled=BUNDLED_DENOISER)
    # bf16 by default where it is native: CUDA, and CPUs with AVX512-BF16/AMX (1.7× faster
    # on 2 cores, PSNR −0.002 dB on the classic held-out set; docs/benchmarks.md).
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    bf16 = native if cfg.bf16 is None else cfg.bf16
    return Denoiser(
        model,
        meta.get("pixel_size"),
        cfg.tile,
        cfg.overlap,
        cfg.batch_size,
        device,
        bf16,
        cfg.shifts,
    )


def _load_as_recorded(cfg: DenoiseConfig, ctx: DistContext) -> Denoiser:
    """Check the folder's settings, then load the model: one verdict and one model version
    for every ``torchrun`` rank.

    Rank 0 alone compares this run's settings with the folder's record and records them
    (:func:`draco_em.io.batch.check_settings`); the other ranks follow its verdict. Each rank
    judged by itself before, looking at the model file's version (``model_file``) itself: a
    file rewritten between their looks (a ``draco pretrain`` run's best checkpoint as it
    trains on) let one rank refuse while the others went on, or denoise with another version
    than the one recorded. Each rank looks at the file again once it has loaded it: a file
    rewritten since rank 0 recorded it stops the job on every rank.
    """
    error: DracoInputError | None = None
    stamp = None  # the model file's version as recorded (None: the bundled model)
    if ctx.rank == 0:
        try:
            settings = _settings(cfg)
            check_settings(cfg.outdir, "denoise", settings, cfg.overwrite,
                           if_recorded=[MODEL_STAMP])  # fmt: skip
            stamp = settings.get(MODEL_STAMP)
        except DracoInputError as exc:  # every rank stops with it, below
            error = exc
    refusal, stamp = all_gather_objects((None if error is None else str(error), stamp), ctx)[0]
    if refusal:
        raise error or DracoInputError(refusal)
    denoiser = _load(cfg, ctx.device)
    loaded = None if stamp is None else model_stamp(resolve_weights(cfg.weights))
    changed = [s for s in all_gather_objects(loaded, ctx) if s != stamp]
    if changed:
        raise rewritten_while_read(str(stamp), str(changed[0]), cfg.weights)
    return denoiser


@dataclass
class _Share:
    """What one rank did with its share of the inputs (:func:`run_denoise`)."""

    done: int
    skipped: int  # finished by an earlier run
    how: dict[str, int]  # outputs by kind (denoise_one's return value)
    not_counts_first: str  # the first input --pseudo-halves had no noise model for, and why
    with_halves: int  # inputs with X_EVN/X_ODD halves (counted without --blend-halves)
    redone: list[str]  # names of inputs done again: changed since their output was made

    @staticmethod
    def total(shares: list[_Share]) -> _Share:
        """The job's counts: every rank's shares added up (the note on --pseudo-halves: the
        lowest rank's that has one)."""
        how: dict[str, int] = {}
        for share in shares:
            for kind, n in share.how.items():
                how[kind] = how.get(kind, 0) + n
        first = next((s.not_counts_first for s in shares if s.not_counts_first), "")
        return _Share(sum(s.done for s in shares), sum(s.skipped for s in shares), how, first,
                      sum(s.with_halves for s in shares),
                      [name for s in shares for name in s.redone])  # fmt: skip


@releases_folder_locks
def run_denoise(cfg: DenoiseConfig) -> dict:
    """Denoise every input; returns counts ``{"done", "skipped", "failed", "outdir"}``.

    Under ``torchrun`` rank 0 (``"is_main"``) returns every rank's counts, to report and exit
    by; the other ranks their own share.
    """
    inputs = expand_inputs(cfg.inputs)
    check_picture_pixel_size(inputs, cfg.pixel_size)
    ctx = init_distributed(cfg.device)  # under torchrun: one shard of the inputs per rank
    rank, world = ctx.rank, ctx.world_size
    given: list[str | Path] = [*cfg.inputs, *(it.path for it in inputs.items)]
    make_output_folder(cfg.outdir, given, beside_inputs=False)  # before the model loads
    denoiser = _load_as_recorded(cfg, ctx)
    failures = FailureLog(cfg.outdir, rank=rank)
    items, fulls = inputs.items, {it.path for it in inputs.items}
    if cfg.blends:  # the halves of an input are its data, not micrographs of their own
        items = [it for it in items if not is_half(it.path, fulls)]
    mine = shard(items, rank, world)
    for it in [it for it in mine if not it.path.name]:  # a STAR row "/" or ".": no file name
        failures.record(it.path, str(DracoInputError("is a folder, not a micrograph", it.path)))
        mine.remove(it)
    # Taken before any input is read, recorded beside each output once it is written.
    states = {it.path: input_states(_sources(inputs, it, cfg)) for it in mine}
    todo, changed = _to_do(cfg, mine, states)
    n_skipped = len(mine) - len(todo)

    def fail(src: Path, reason: str) -> None:
        """An input redone (changed since, or ``--overwrite``) that fails keeps its earlier
        output on disk, out of the STAR (:func:`draco_em.io.resume.failed_redo`); its line
        says so."""
        earlier = output_path(cfg.outdir, src)
        if earlier.exists():  # the next run tries again, --overwrite's settings or not
            record_failed_redo(cfg.outdir, earlier)
            reason = failed_redo(reason)
        failures.record(src, reason)

    halves: dict[Path, tuple[Path, Path]] = {}
    if cfg.blends:
        for it in list(todo):
            try:
                if pair := halves_of(inputs, it):
                    halves[it.path] = pair
            except DracoInputError as exc:  # the STAR names a missing half: this one fails
                fail(it.path, str(exc))
                todo.remove(it)
    loader = DataLoader(
        _Reader(todo, pixel_sizes(inputs, cfg.pixel_size), halves),
        batch_size=None,
        # One input leaves nothing to overlap: a worker would only add its start-up and the
        # arrays' trip through a pipe (1.5 s for a 4096² micrograph with its halves).
        num_workers=cfg.workers if len(todo) > 1 else 0,
        worker_init_fn=die_with_parent,  # a SIGKILLed denoise takes its readers along
        collate_fn=_as_is,
    )
    done, redone = 0, []  # redone: names of the changed inputs done again
    how: dict[str, int] = {}  # blended with halves / with pseudo-halves / plain
    not_counts = ""  # the first input --pseudo-halves had no noise model for, and why
    bar = tqdm(total=len(todo), unit="mic", disable=not cfg.progress or rank != 0, desc="denoise")
    for i, data, pixel_size, error, pair, layout in loader:
        src = todo[i].path
        if error:
            fail(src, error)
        else:
            try:
                sections = _section_progress(bar) if data.ndim == 3 else None
                kind = denoise_one(denoiser, cfg, src, data, pixel_size, pair, layout, sections)
                record_inputs(cfg.outdir, output_path(cfg.outdir, src), states[src])
                done += 1
                if src in changed:
                    redone.append(src.name)
                how[kind] = how.get(kind, 0) + 1
                if kind.startswith("plain: ") and not not_counts:
                    not_counts = f"{src.name}: {kind.removeprefix('plain: ')}"
            except DracoInputError as exc:
                fail(src, str(exc))
        bar.set_postfix_str("", refresh=False)
        bar.update(1)
    bar.close()
    with_halves = 0 if cfg.blends else sum(_has_halves(inputs, it, fulls) for it in mine)
    share = _Share(done, n_skipped, how, not_counts, with_halves, redone)
    # Every rank's share, to rank 0, which reports the job's counts and exits by them (it said
    # its own share, "denoised 1" of 3); also the barrier: every rank's outputs exist before
    # rank 0 lists them.
    shares = all_gather_objects(share, ctx)
    if rank == 0:
        failures.merge(world)  # one failures.txt for every rank
        failed = {Path(f) for f in failures.items()}  # an earlier output of one: unlisted
        write_output_star(inputs, cfg.outdir, same_grid=not cfg.keep_binned, unlisted=failed)
        share = _Share.total(shares)
    cleanup(ctx, wait=False)
    warnings = [
        placeholder_pixel_size_warning(inputs, cfg.pixel_size, "denoise") if rank == 0 else None,
        redone_note(share.redone),
    ]
    result = {"done": share.done, "skipped": share.skipped, "failed": failures.count,
              "outdir": str(cfg.outdir), "warnings": [w for w in warnings if w],
              "is_main": rank == 0}  # fmt: skip
    if share.redone:
        result["redone"] = len(share.redone)
    if cfg.blends:  # the rest got the plain output
        result["blended"] = share.how.get("halves", 0)
        if cfg.pseudo_halves:
            result["pseudo"] = share.how.get("pseudo", 0)
            result["not_counts"] = sum(v for k, v in share.how.items() if k.startswith("plain: "))
            result["not_counts_first"] = share.not_counts_first
    else:  # worth saying: --blend-halves scores higher where halves exist (docs/denoising.md)
        result["with_halves"] = share.with_halves
    return result


def _sources(inputs: InputSet, item: InputItem, cfg: DenoiseConfig) -> list[Path]:
    """The files an input's outputs are made from: the input, its halves where a blend reads
    them, and the tilt angles copied beside a stack (:func:`tilt_companions`)."""
    files = [item.path]
    if cfg.blends:
        try:
            files += list(halves_of(inputs, item) or ())
        except DracoInputError:  # the STAR names a missing half: the input fails (run_denoise)
            pass
    return files + tilt_companions(item.path)


def _to_do(
    cfg: DenoiseConfig, mine: list[InputItem], states: dict[Path, list[FileState]]
) -> tuple[list[InputItem], set[Path]]:
    """(the inputs to denoise, those among them whose output exists but was made from input
    files since rewritten). Resume skips an input whose output exists and whose files are as
    they were when it was made (:func:`draco_em.io.resume.inputs_changed`)."""
    if not cfg.skip_existing or cfg.overwrite:
        return list(mine), set()
    todo, changed = [], set()
    for it in mine:
        out = output_path(cfg.outdir, it.path)
        if out.exists():
            if not inputs_changed(cfg.outdir, out, states[it.path]):
                continue
            changed.add(it.path)
        todo.append(it)
    return todo, changed


def _section_progress(bar: tqdm) -> Callable[[int, int], None]:
    """Say ``section k/n`` on the bar after each section of a stack: a tilt series or a
    tomogram is one step of the bar and takes minutes (60 sections of 4096²)."""
    return lambda done, total: bar.set_postfix_str(f"section {done}/{total}")


def _has_halves(inputs: InputSet, item: InputItem, fulls: set[Path]) -> bool:
    """An input (not itself a half of another input) with both halves on disk."""
    if is_half(item.path, fulls):
        return False
    try:
        return halves_of(inputs, item) is not None
    except DracoInputError:  # the STAR names a missing half: no blend possible, no note
        return False


#: DenoiseConfig fields that shape the outputs: a folder made with others is not resumed.
OUTPUT_SETTINGS = ("tile", "overlap", "shifts", "keep_binned", "float16", "pixel_size", "bf16",
                   "blend_halves", "pseudo_halves", "blend_passes")  # fmt: skip


def _settings(cfg: DenoiseConfig) -> dict:
    weights = Path(cfg.weights)
    settings = cfg.model_dump(mode="json", include=set(OUTPUT_SETTINGS))
    for key, default in (("pseudo_halves", False), ("blend_passes", 2)):
        if settings[key] == default:  # folders made before the option existed still resume
            del settings[key]
    if cfg.weights != BUNDLED:  # a file rewritten in place (a run's best, as training goes on)
        settings[MODEL_STAMP] = model_stamp(resolve_weights(cfg.weights))
    return {"weights": str(weights.resolve()) if weights.exists() else cfg.weights, **settings}
