"""What ``draco denoise`` writes: each input's denoised file (:func:`denoise_one`: the
image, each section of a stack, or the blend of its halves; an MRC input's layout and origin
kept, a tilt series' angle files copied beside it), checked for ``--float16``, and the batch's
``denoised_micrographs.star``. The batch itself is :mod:`draco_em.infer.run_denoise`.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.denoise import Denoiser
from draco_em.infer.halves_blend import blend_halves
from draco_em.infer.pseudo_halves import pseudo_halves
from draco_em.io.atomic import copy_atomic
from draco_em.io.batch import InputSet
from draco_em.io.images import is_raster
from draco_em.io.mrc import STACK_SUFFIXES, write_mrc
from draco_em.io.preview import save_preview
from draco_em.io.star import SOURCE_COLUMN, MicrographTable, project_path, write_micrographs_star


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


def denoise_one(
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
