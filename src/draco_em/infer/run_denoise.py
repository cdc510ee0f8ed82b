"""``draco denoise``: a resumable batch over thousands of micrographs, stacks and tilt series.

A DataLoader decodes and normalises inputs in worker processes while the model runs; outputs
are written atomically, finished ones are skipped (``skip_existing``) unless an input file
changed since (:func:`draco_em.io.resume.inputs_changed`), a file that fails goes to
``OUTDIR/failures.txt`` and the rest continue. Under ``torchrun`` each rank takes its share.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field, model_validator
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.infer.denoise import Denoiser
from draco_em.infer.halves_blend import blend_halves
from draco_em.infer.pseudo_halves import pseudo_halves
from draco_em.io.atomic import copy_atomic
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
from draco_em.io.mrc import STACK_SUFFIXES, check_micrograph_pixels, read_mrc, write_mrc
from draco_em.io.preview import save_preview
from draco_em.io.resume import (
    FileState,
    failed_redo,
    input_states,
    inputs_changed,
    record_inputs,
    redone_note,
)
from draco_em.io.star import SOURCE_COLUMN, MicrographTable, project_path, write_micrographs_star
from draco_em.model.weights import BUNDLED_DENOISER, load_model, resolve_weights
from draco_em.runtime import (
    DistContext,
    all_gather_objects,
    cleanup,
    cpu_has_bf16,
    die_with_parent,
    init_distributed,
)


class DenoiseConfig(BaseModel):
    """Options of ``draco denoise``."""

    inputs: list[str] = Field(description="Files, globs, folders or one micrographs STAR.")
    outdir: Path = Field(description="Output folder.")
    weights: str = Field(
        "bundled", description="'bundled' (draco_denoise_tiny), a .safetensors or an official .pth."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    # At most 4096: (4096/16)² = 65536 tokens per tile already need tens of GiB of attention.
    tile: int = Field(256, ge=32, le=4096, description="Tile side in px at the working pixel size.")
    overlap: int | None = Field(None, ge=0, description="Tile overlap in px (default tile/8).")
    batch_size: int = Field(8, ge=1, description="Tiles per forward pass.")
    shifts: int = Field(1, description="Patch-grid offsets averaged per tile: 1, 2 or 4.")
    keep_binned: bool = Field(False, description="Write at the working pixel size.")
    float16: bool = Field(False, description="Write MRC mode 12 (float16) instead of float32.")
    png: bool = Field(False, description="Also write 8-bit PNG previews to OUTDIR/png.")
    skip_existing: bool = Field(True, description="Skip inputs whose output exists (resume).")
    workers: int = Field(1, ge=0, description="DataLoader worker processes for reading.")
    pixel_size: float | None = Field(None, gt=0, description="Override the header pixel size (Å).")
    bf16: bool | None = Field(
        None, description="Run the model in bf16; default on for CUDA and bf16-capable CPUs."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Redo every output, even with other settings.")
    blend_halves: bool = Field(
        False,
        description="Denoise the X_EVN/X_ODD halves and blend them with their sum, ring by "
        "ring, with weights fitted on the halves (infer.halves_blend); inputs without halves "
        "get the plain output.",
    )
    blend_passes: Literal[1, 2] = Field(
        2,
        description="Model passes of the blends: 2 (both halves denoised) or 1 (the even half "
        "alone, fitted against the odd: half the model time, ~0.1 dB less).",
    )
    pseudo_halves: bool = Field(
        False,
        description="As blend_halves, and inputs without halves are blended with pseudo-halves "
        "recorrupted from their sum (infer.pseudo_halves; needs a raw sum in electron counts, "
        "others get the plain output).",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> DenoiseConfig:
        # The one tiling routine blends each edge over `overlap` px: two ramps must fit a tile.
        if self.overlap is not None and self.overlap > self.tile // 2:
            raise ValueError(f"--overlap {self.overlap} must be at most tile/2 = {self.tile // 2}")
        for flag, given in (("--blend-halves", self.blend_halves),
                            ("--pseudo-halves", self.pseudo_halves)):  # fmt: skip
            if given and self.keep_binned:
                raise ValueError(f"{flag} writes at the input's pixel size: drop --keep-binned")
        return self

    @property
    def blends(self) -> bool:
        """Real halves are looked for and blended (``--blend-halves`` or ``--pseudo-halves``)."""
        return self.blend_halves or self.pseudo_halves


def output_path(outdir: Path, src: Path) -> Path:
    """Denoised file name: the input's name inside OUTDIR (stacks keep their suffix; any
    other input, a picture too, becomes ``.mrc``)."""
    suffix = src.suffix.lower() if src.suffix.lower() in STACK_SUFFIXES else ".mrc"
    return outdir / f"{src.stem}{suffix}"


def tilt_companions(src: Path) -> list[Path]:
    """The files kept beside a tilt series ``ts.st`` that name its sections: IMOD's tilt
    angles ``ts.rawtlt``/``ts.tlt`` and SerialEM's ``ts.st.mdoc`` (those that exist)."""
    names = [src.with_suffix(".rawtlt"), src.with_suffix(".tlt"), src.with_name(src.name + ".mdoc")]
    return [p for p in names if p.is_file()]


#: An input's MRC layout, kept in its output: (3D data is a volume, not a stack; origin in Å).
#: ``None`` for pictures, which carry neither.
Layout = tuple[bool, tuple[float, float, float]] | None

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
    how: dict[str, int]  # outputs by kind (_denoise_one's return value)
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
        kept = output_path(cfg.outdir, src).exists()
        failures.record(src, failed_redo(reason) if kept else reason)

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
                kind = _denoise_one(denoiser, cfg, src, data, pixel_size, pair, layout, sections)
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


def _denoise_one(
    denoiser: Denoiser,
    cfg: DenoiseConfig,
    src: Path,
    data: np.ndarray,
    pixel_size: float | None,
    pair: tuple[np.ndarray, np.ndarray] | None = None,
    layout: Layout = None,
    sections: Callable[[int, int], None] | None = None,
) -> str:
    """Denoise a 2D image or each section of a stack, then write (and preview) atomically.

    The output keeps an MRC input's layout (a volume stays a volume, a stack a stack) and its
    origin, so that a denoised tomogram or tilt series still lines up with its source.

    With ``pair`` (the image's even and odd half sums, ``--blend-halves``) the halves are
    denoised instead and blended with their sum (:func:`draco_em.infer.halves_blend`); without
    one, ``--pseudo-halves`` makes a pair from the sum (:func:`draco_em.infer.pseudo_halves`,
    seeded by the file name and section, so a re-run writes the same output).

    ``sections`` is called with (sections done, sections) after each section of a stack.

    Returns:
        ``"halves"``, ``"pseudo"``, ``"plain"``, or ``"plain: <why>"`` where
        ``--pseudo-halves`` found no noise model for the input.
    """
    kind = "halves" if pair is not None else "plain"
    if pair is None and cfg.pseudo_halves:
        try:
            if is_raster(src):
                raise DracoInputError("a PNG/JPEG/TIFF picture is not a raw sum in counts")
            made = [pseudo_halves(s, f"{src.stem}:{k}")[:2]
                    for k, s in enumerate(data if data.ndim == 3 else [data])]  # fmt: skip
            pair = (np.stack([m[0] for m in made]), np.stack([m[1] for m in made]))
            kind = "pseudo"
        except DracoInputError as exc:  # one clear reason; this input gets the plain output
            kind = f"plain: {exc}"
    if pair is not None:
        even, odd = (p if p.ndim == 3 else p[None] for p in pair)
        blended = []
        for a, b in zip(even, odd, strict=True):
            halves = (a, b) if cfg.blend_passes == 2 else (a,)
            den = [denoiser.denoise_image(half, pixel_size, False)[0] for half in halves]
            blended.append(blend_halves(den[0], den[1] if len(den) == 2 else None, a, b)[0])
            if sections is not None:
                sections(len(blended), len(even))
        out, out_px = (blended[0] if data.ndim == 2 else np.stack(blended)), pixel_size
    elif data.ndim == 2:
        out, out_px = denoiser.denoise_image(data, pixel_size, cfg.keep_binned)
    else:  # tilt series / stack: image by image (the paper's cryo-ET use, App. B)
        # Filled in place: a list of sections then np.stack held two copies of the output.
        for k, section in enumerate(data):
            denoised, out_px = denoiser.denoise_image(section, pixel_size, cfg.keep_binned)
            if k == 0:
                out = np.empty((len(data), *denoised.shape), dtype=np.float32)
            out[k] = denoised
            if sections is not None:
                sections(k + 1, len(data))
    if cfg.float16:  # before anything is written: a refused input leaves no output behind
        check_float16(out, src)
    dst = output_path(cfg.outdir, src)
    if data.ndim == 3:  # before the output, whose presence marks the input done on resume
        for companion in tilt_companions(src):  # so that IMOD/AreTomo pair the denoised series
            copy_atomic(companion, cfg.outdir / companion.name.replace(src.name, dst.name))
    volume, origin = layout if layout is not None else (False, None)
    write_mrc(dst, out, out_px or 1.0, float16=cfg.float16, stack=data.ndim == 3 and not volume,
              inputs=[src], origin=origin)  # fmt: skip
    if cfg.png:
        mid = len(out) // 2 if out.ndim == 3 else None  # a stack: its middle section
        save_preview(
            cfg.outdir / "png" / f"{src.stem}.png",
            out if mid is None else out[mid],
            before=data if mid is None else data[mid],  # raw | denoised
        )
    return kind


#: Largest rounding error ``--float16`` may add, as a fraction of the image's std (it adds
#: its square, 0.25 %, to the variance). The UCSF sum in shared/data (mean 6803, std 8.9, not
#: counts) was rounded in steps of 4, 25 % of its denoised std; counts (mean ≲ 100) and
#: normalised images stay under 0.5 %.
FLOAT16_MAX_ERROR = 0.05


def check_float16(image: np.ndarray, src: Path) -> None:
    """Refuse to write ``image`` as float16 where float16 cannot hold it: values beyond its
    range (written as inf) or so large against their spread that the rounding is a visible
    part of the image (a big offset in arbitrary units).

    Raises:
        DracoInputError: naming ``src`` and the numbers (the batch records it and goes on).
    """
    top = float(np.finfo(np.float16).max)
    peak = float(np.abs(image).max())
    if peak > top:
        raise DracoInputError(f"values up to {peak:.4g} exceed float16's {top:.0f}: "
                              "drop --float16 (a new -o, or --overwrite)", src)  # fmt: skip
    # Every 7th pixel: an estimate of the error without three more copies of a K3 image.
    sample = np.asarray(image, dtype=np.float32).ravel()[::7]
    error = float(np.sqrt(np.mean((sample.astype(np.float16) - sample) ** 2)))
    std = float(sample.std())
    if std > 0 and error > FLOAT16_MAX_ERROR * std:
        raise DracoInputError(
            f"float16 rounds its values (mean {float(sample.mean()):.4g}) by {error:.2g} rms, "
            f"{100 * error / std:.0f} % of their std {std:.2g}: drop --float16 (a new -o, or "
            "--overwrite)",
            src,
        )


def write_output_star(
    inputs: InputSet, outdir: Path, same_grid: bool = True, unlisted: Set[Path] = frozenset()
) -> Path | None:
    """``denoised_micrographs.star``: input columns kept, names replaced by the outputs.

    Only inputs whose output exists are listed, and not those in ``unlisted`` (this run's
    failures: the output there is an earlier one, :func:`draco_em.io.resume.failed_redo`);
    with none to list, an earlier run's STAR is removed (it would list them). Every file name,
    the input columns' too, is written as :func:`draco_em.io.star.project_path` names it
    (docs/conventions.md). Where the outputs keep the inputs' pixel grid (not
    ``--keep-binned``), ``dracoMicrographSource`` names each one's input (that of the first
    denoising, when denoised ones are denoised again): ``draco pick predict`` on the denoised
    micrographs names the picks after it, so that RELION's Extract, given the raw
    micrographs, finds them (docs/conventions.md).
    """
    outs = [output_path(outdir, it.path) for it in inputs.items]
    exists = np.array(
        [p.exists() and it.path not in unlisted for it, p in zip(inputs.items, outs, strict=True)],
        dtype=bool,
    )
    dst = outdir / "denoised_micrographs.star"
    if not exists.any():
        dst.unlink(missing_ok=True)  # made from the files as they are: a list of none is none
        return None
    if inputs.table is not None:
        table = inputs.table.rebased()
        rows = table.micrographs.copy()
        if same_grid and SOURCE_COLUMN not in rows.columns:
            rows[SOURCE_COLUMN] = rows["rlnMicrographName"].astype(str)
        elif not same_grid:
            rows = rows.drop(columns=[SOURCE_COLUMN], errors="ignore")
        for it, out in zip(inputs.items, outs, strict=True):
            rows.loc[it.star_row, "rlnMicrographName"] = project_path(out)
        keep = np.zeros(len(rows), dtype=bool)
        # Items of a STAR input all carry their row (io.batch.expand_inputs).
        star_rows = [cast(int, it.star_row) for it in inputs.items]
        keep[[r for r, e in zip(star_rows, exists, strict=True) if e]] = True
        new = MicrographTable(table.path, table.optics, rows, table.block_name).filtered(keep)
    else:
        names = [project_path(p) for p, e in zip(outs, exists, strict=True) if e]
        frame = pd.DataFrame({"rlnMicrographName": names})
        if same_grid:
            sources = [it.path for it, e in zip(inputs.items, exists, strict=True) if e]
            frame[SOURCE_COLUMN] = [project_path(p) for p in sources]
        new = MicrographTable(outdir, None, frame, "micrographs")
    write_micrographs_star(dst, new, inputs=[inputs.table.path] if inputs.table is not None else [])
    return dst
