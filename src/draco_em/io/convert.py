"""``draco convert``: coordinate files from one format to another, through the one convention.

Every input is read into the package's coordinate table (:mod:`draco_em.io.coords`), scaled,
and written in the target format. A file that cannot be read is recorded in a failures file
and the others go on.

Example:
    >>> cfg = ConvertConfig(inputs=["particles.txt"], output="relion_coords", to="star",
    ...                     scale=0.25)
    >>> convert_coords(cfg).n_particles
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field, field_validator
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.io import coords
from draco_em.io.batch import FailureLog, make_output_folder
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.mrc import read_mrc
from draco_em.io.star import project_path, read_micrographs_star, resolve_star_path

CoordFormat = Literal["star", "box", "topaz", "cs"]


class ConvertConfig(BaseModel):
    """Options of ``draco convert``."""

    inputs: list[Path] = Field(min_length=1)
    """Coordinate files, folders of them, or globs."""
    output: Path
    """A folder for per-micrograph formats (star, box), a file for topaz and cs."""
    to: CoordFormat
    """Target format."""
    from_format: CoordFormat | None = None
    """Input format; guessed from each file's extension or content when None."""
    scale: float = Field(1.0, gt=0)
    """Multiplies x and y (px): 0.25 goes from unbinned to 4× binned micrographs."""
    box_size: int | None = Field(None, gt=0)
    """Box edge in output px, for .box output (default: the box size read from .box input)."""
    micrograph_shape: tuple[int, int] | None = None
    """(ny, nx) of the micrographs in output px: needed by .cs output and by --invert-y."""
    pixel_size: float | None = Field(None, gt=0)
    """Å/px of the output micrographs, written into .cs files."""
    invert_y: bool = False
    """.box files count rows from the bottom (y → ny − 1 − y), for tools that need it."""
    micrographs: Path | None = None
    """The micrographs STAR the picks belong to: ``coordinate_files.star`` then names each
    micrograph exactly as it does (RELION 4/5 matches the names exactly). Without it, the name
    read from the input (a coordinate index) is kept, else ``<stem>.mrc``."""

    @field_validator("micrograph_shape", mode="before")
    @classmethod
    def _parse_shape(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.lower().replace("×", "x").split("x")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"expected NYxNX such as 4096x4096, got {value!r}")
            value = int(parts[0]), int(parts[1])
        if isinstance(value, tuple) and min(value) < 1:  # 0x0 would put the picks at infinity
            raise ValueError(f"micrograph sides must be at least 1 px, got {value[0]}x{value[1]}")
        return value


@dataclasses.dataclass
class ConvertResult:
    """What a conversion wrote."""

    outputs: list[Path]
    n_particles: int
    n_micrographs: int
    n_failed: int
    failure_log: Path
    n_inputs: int = 0  # coordinate files read (failed ones included)
    #: picks centred at negative coordinates: off any micrograph (a flipped axis, a box corner
    #: read as a centre); written as given, the user's to judge
    n_outside: int = 0
    #: micrographs of the picks that ``--micrographs`` does not list (named ``<stem>.mrc``,
    #: which RELION and cryoSPARC will not match to their micrographs)
    unlisted: list[str] = dataclasses.field(default_factory=list)


def expand_coord_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders → their coordinate files (sorted; the rule of
    :func:`~draco_em.io.coords.coord_folder_files`), globs → matches."""
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            if not (files := coords.coord_folder_files(path)):  # a typo, or x.star made a folder
                raise DracoInputError("folder holds no coordinate files", path)
            found += files
        elif path.exists() or not glob.has_magic(str(raw)):
            found.append(path)  # a missing file is reported as a per-file failure
        else:
            found += [Path(m) for m in sorted(glob.glob(str(raw)))]
    if not found:
        raise DracoInputError(f"no coordinate files found in {[str(p) for p in inputs]}")
    return found


@releases_folder_locks
def convert_coords(config: ConvertConfig, progress: bool = True) -> ConvertResult:
    """Read every input, scale, and write ``config.to``; see :class:`ConvertConfig`."""
    per_micrograph = config.to in ("star", "box")
    if not per_micrograph and config.output.is_dir():
        raise DracoInputError(
            f"--to {config.to} writes one file, but this is a folder", config.output
        )
    log_dir = config.output if per_micrograph else config.output.parent
    if config.micrograph_shape is None and config.micrographs is not None:
        if config.to == "cs" or config.invert_y:
            config = config.model_copy(
                update={"micrograph_shape": _shape_from_star(config.micrographs)}
            )
    if config.invert_y and config.micrograph_shape is None:
        raise DracoInputError("--invert-y needs the micrograph height: pass --micrograph-shape")
    paths = expand_coord_inputs(config.inputs)
    if config.invert_y and config.to != "box" and config.from_format not in (None, "box"):
        raise DracoInputError("--invert-y flips .box files, but neither --from nor --to is box")
    if config.invert_y and config.to != "box" and config.from_format is None:
        if not any(p.is_file() and coords.guess_format(p) == "box" for p in paths):
            # it was ignored without a word: star, topaz and cs count y from the top
            raise DracoInputError(
                "--invert-y flips .box files, but no input is a .box file and --to is not box"
            )
    # Per-micrograph files beside their inputs would be read back as inputs by the next run.
    make_output_folder(log_dir, paths if per_micrograph else (), beside_inputs=not per_micrograph)
    # After the folder checks and lock: a run still writing there keeps its failures list.
    failures = FailureLog(
        log_dir, "failures.txt" if per_micrograph else f"{config.output.name}.failures.txt"
    )
    frames, errors = _read_all(paths, config, failures, progress)
    if not frames:
        more = f" and {len(errors) - 1} more, listed in {failures.path}" if len(errors) > 1 else ""
        raise DracoInputError(f"no input could be read: {errors[0]}{more}")
    df = coords.scale_coords(pd.concat(frames, ignore_index=True), config.scale)
    df, unlisted = _named_as_listed(config, df)
    for out in _targets(config, df):
        for src in paths:
            if out.exists() and out.resolve() == src.resolve():
                raise DracoInputError("refusing to overwrite an input file", out)
    writer = {"star": _write_star, "box": _write_boxes, "topaz": _write_topaz, "cs": _write_cs}
    outputs = writer[config.to](config, df, failures)
    return ConvertResult(
        outputs, len(df), int(df["micrograph"].nunique()), failures.count, failures.path,
        len(paths), int(((df["x"] < -0.5) | (df["y"] < -0.5)).sum()), unlisted,
    )  # fmt: skip


def _named_as_listed(config: ConvertConfig, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The picks with each micrograph named as ``--micrographs`` lists it (its path and pixel
    size, for every output format: RELION and cryoSPARC match names exactly), and the
    micrographs it does not list."""
    if config.micrographs is None:
        return df, []
    table = read_micrographs_star(config.micrographs)
    names, sizes = {}, {}
    for i, name in enumerate(table.micrographs["rlnMicrographName"].astype(str)):
        stem = coords.micrograph_stem(name)
        names[stem], sizes[stem] = name, table.pixel_size(i)
    df = df.copy()
    stems = df["micrograph"].astype(str)
    listed = stems.isin(names.keys())
    df["micrograph_path"] = stems.map(names).where(listed, coords.micrograph_paths(df))
    known = stems.map(sizes).astype(float)  # the listed micrographs are the output's
    old = pd.to_numeric(df["pixel_size"], errors="coerce") if "pixel_size" in df else known * 0
    df["pixel_size"] = old.where(old.notna() & (old > 0), known)
    return df, sorted(set(stems[~listed]))


def _shape_from_star(star: Path) -> tuple[int, int]:
    """(ny, nx) shared by the MRC micrographs a STAR lists, read from their headers."""
    names = read_micrographs_star(star).micrographs["rlnMicrographName"]
    shapes = set()
    for name in names:
        path = resolve_star_path(star, name)
        try:
            shapes.add(tuple(int(n) for n in read_mrc(path, mmap=True).data.shape[-2:]))
        except (DracoInputError, OSError, ValueError) as err:
            raise DracoInputError(
                f"cannot read the micrograph size from {name} ({err}): pass --micrograph-shape",
                star,
            ) from err
    if len(shapes) != 1:
        raise DracoInputError(
            f"the micrographs have {len(shapes) or 'no'} different sizes: pass "
            "--micrograph-shape, or convert each size separately", star
        )  # fmt: skip
    ny, nx = shapes.pop()
    return ny, nx


def _read_all(
    paths: list[Path], config: ConvertConfig, failures: FailureLog, progress: bool
) -> tuple[list[pd.DataFrame], list[str]]:
    """Read every input; a file that fails is recorded and skipped."""
    height = None  # the input's: --micrograph-shape is in output px, before --scale here
    if config.micrograph_shape:
        height = round(config.micrograph_shape[0] / config.scale)
    frames, errors = [], []
    for path in tqdm(paths, desc="reading", unit="file", disable=not progress):
        try:
            fmt = config.from_format or (coords.guess_format(path) if path.is_file() else None)
            box = {"invert_y": config.invert_y, "image_height": height} if fmt == "box" else {}
            frames.append(coords.read_coords(path, fmt, **box))
        except (DracoInputError, OSError) as exc:  # record and go on with the other files
            reason = str(exc)
            if not isinstance(exc, DracoInputError):  # no read permission, an I/O error
                reason = str(DracoInputError(f"cannot read the file ({exc.strerror})", path))
            failures.record(path, reason)
            errors.append(reason)
    return frames, errors


def _targets(config: ConvertConfig, df: pd.DataFrame) -> list[Path]:
    if config.to == "star":
        names = [coords.coord_star_name(m) for m in df["micrograph"].unique()]
        return [config.output / n for n in [*names, "coordinate_files.star"]]
    if config.to == "box":
        return [config.output / f"{m}.box" for m in df["micrograph"].unique()]
    return [config.output]


def _groups(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(micrograph stem, its picks), in order of first appearance."""
    yield from df.groupby("micrograph", sort=False)


def _write_star(config: ConvertConfig, df: pd.DataFrame, failures: FailureLog) -> list[Path]:
    """Per-micrograph STARs plus the ``coordinate_files.star`` index RELION 4/5 imports."""
    index, outputs = {}, []
    for mic, picks in _groups(df):
        out = config.output / coords.coord_star_name(mic)
        try:
            coords.write_relion_coords(out, picks)
        except (DracoInputError, OSError) as exc:
            failures.record(out, str(exc))
            continue
        index[coords.micrograph_paths(picks).iloc[0]] = project_path(out)
        outputs.append(out)
    index_path = config.output / "coordinate_files.star"
    coords.write_coordinate_index(index_path, index)
    return [*outputs, index_path]


def _write_boxes(config: ConvertConfig, df: pd.DataFrame, failures: FailureLog) -> list[Path]:
    if config.box_size is None and "box_size" not in df.columns:
        raise DracoInputError("the .box format needs the box size: pass --box-size PX")
    outputs = []
    for mic, picks in _groups(df):
        out = config.output / f"{mic}.box"
        size = config.box_size or int(picks["box_size"].iloc[0])
        height = config.micrograph_shape[0] if config.micrograph_shape else None
        try:
            coords.write_box(out, picks, size, invert_y=config.invert_y, image_height=height)
        except (DracoInputError, OSError) as exc:
            failures.record(out, str(exc))
            continue
        outputs.append(out)
    return outputs


def _write_topaz(config: ConvertConfig, df: pd.DataFrame, failures: FailureLog) -> list[Path]:
    coords.write_topaz(config.output, df)
    return [config.output]


def _write_cs(config: ConvertConfig, df: pd.DataFrame, failures: FailureLog) -> list[Path]:
    coords.write_cs(config.output, df, config.micrograph_shape, config.pixel_size)
    return [config.output]
