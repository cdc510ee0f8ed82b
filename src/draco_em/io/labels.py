"""Labelled micrographs for curation: a micrographs STAR or a CSV of micrograph and label.

Accepted forms:

* a micrographs STAR (e.g. ``draco simulate``'s ``micrographs.star``): the label comes from
  ``--label-column`` or the first of ``dracoReason`` (``none`` → ``good``), ``dracoLabel``,
  ``label``, ``dracoQuality``; pixel sizes from the optics block;
* a CSV with a micrograph column (``micrograph``, ``rlnMicrographName``, ``path`` or ``name``)
  and a label column (``label``, ``class`` or ``reason``, or ``--label-column``). Relative
  paths resolve against the CSV's folder first, then the current directory; a bare name
  without an image extension (MicAssess's ``labels.csv``) is looked for as ``<name>.<ext>``
  in ``folder`` (``curate train --micrographs``), then beside the CSV.

Class names are free text: the simulator's (``good``, ``thick_ice``, ``drift``, ``empty``,
``contamination``, ``crystalline_ice``, ``carbon_only``) or the user's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.batch import MICROGRAPH_SUFFIXES
from draco_em.io.classes import GOOD
from draco_em.io.star import read_micrographs_star

STAR_LABEL_COLUMNS = ("dracoReason", "dracoLabel", "label", "dracoQuality")
CSV_NAME_COLUMNS = ("micrograph", "rlnMicrographName", "path", "name")
CSV_LABEL_COLUMNS = ("label", "class", "reason")


@dataclass
class LabelSet:
    """Labelled micrographs.

    Attributes:
        paths: image file of each micrograph.
        labels: its class name.
        pixel_sizes: its pixel size in Å, or None where the list does not say.
        source: the labels file.
    """

    paths: list[Path]
    labels: list[str]
    pixel_sizes: list[float | None]
    source: Path

    @property
    def stems(self) -> list[str]:
        """File stems, the key that predictions and truth are matched on."""
        return [p.stem for p in self.paths]

    def classes(self) -> list[str]:
        """Class names present, ``good`` first, then in order of first appearance."""
        seen = list(dict.fromkeys(self.labels))
        return sorted(seen, key=lambda c: (c != GOOD, seen.index(c)))


def read_labels(
    path: str | Path,
    label_column: str | None = None,
    check_files: bool = True,
    folder: str | Path | None = None,
) -> LabelSet:
    """Read a labels STAR or CSV.

    Args:
        path: the labels file (``.star`` or ``.csv``/``.tsv``).
        label_column: column holding the label (default: see the module docstring).
        check_files: raise if a micrograph named in the list does not exist.
        folder: where bare names (no folder, no image extension) of a CSV are looked for.

    Raises:
        DracoInputError: unreadable file, no label or micrograph column, empty labels,
            or micrographs that do not exist.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a labels file" if path.is_dir() else "labels file not found"
        raise DracoInputError(f"{what} (a CSV micrograph,label or a micrographs STAR)", path)
    if path.suffix.lower() == ".star":
        out = _read_star_labels(path, label_column)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        out = _read_csv_labels(path, label_column, None if folder is None else Path(folder))
    else:
        raise DracoInputError("labels must be a micrographs .star or a .csv file", path)
    if not out.paths:
        raise DracoInputError("the labels file lists no micrographs", path)
    if any(not lab for lab in out.labels):
        raise DracoInputError("some micrographs have an empty label", path)
    out = _one_label_each(out)
    if check_files:
        missing = [str(p) for p in out.paths if not p.is_file()]
        if missing:
            raise DracoInputError(
                f"{len(missing)} labelled micrograph(s) not found, e.g. {', '.join(missing[:3])} "
                "(names without an extension are looked for as <name>.mrc, .png, … beside the "
                "labels file and in --micrographs)",
                path,
            )
    return out


def _one_label_each(labels: LabelSet) -> LabelSet:
    """``labels`` with a micrograph listed twice under one label kept once.

    Raises:
        DracoInputError: one micrograph under two labels, or two class names that differ only
            in case ("Good" and "good" would train a good class as a reject one).
    """
    by_case: dict[str, str] = {}
    for name in dict.fromkeys(labels.labels):
        other = by_case.setdefault(name.casefold(), name)
        if other != name:
            raise DracoInputError(
                f"the labels {other!r} and {name!r} differ only in case: spell each class one way",
                labels.source,
            )
    first: dict[Path, int] = {}
    for i, (path, label) in enumerate(zip(labels.paths, labels.labels, strict=True)):
        j = first.setdefault(path.resolve(), i)
        if labels.labels[j] != label:
            raise DracoInputError(
                f"{path.name} is labelled both {labels.labels[j]!r} and {label!r}: give each "
                "micrograph one label",
                labels.source,
            )
    keep = sorted(first.values())
    if len(keep) == len(labels.paths):
        return labels
    return LabelSet(
        [labels.paths[i] for i in keep],
        [labels.labels[i] for i in keep],
        [labels.pixel_sizes[i] for i in keep],
        labels.source,
    )


def _pick(
    columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, path: Path
) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DracoInputError(f"no {what} column {wanted!r} (columns: {columns})", path)
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise DracoInputError(
        f"no {what} column: expected one of {', '.join(defaults)} (columns: {columns})", path
    )


def _read_star_labels(path: Path, label_column: str | None) -> LabelSet:
    table = read_micrographs_star(path)
    mics = table.micrographs
    column = _pick(list(mics.columns), label_column, STAR_LABEL_COLUMNS, "label", path)
    labels = [str(v).strip() for v in mics[column]]
    if column == "dracoReason":  # the simulator writes reason "none" on good micrographs
        labels = [GOOD if lab == "none" else lab for lab in labels]
    paths = [table.resolve(str(n)) for n in mics["rlnMicrographName"]]
    pixel_sizes = [table.pixel_size(i) for i in range(len(mics))]
    return LabelSet(paths, labels, pixel_sizes, path)


def _read_csv_labels(path: Path, label_column: str | None, folder: Path | None) -> LabelSet:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DracoInputError(f"unreadable CSV: {exc}", path) from exc
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    name_col = _pick(columns, None, CSV_NAME_COLUMNS, "micrograph", path)
    label_col = _pick(columns, label_column, CSV_LABEL_COLUMNS, "label", path)
    paths = [_resolve(path.parent, str(v).strip(), folder) for v in frame[name_col]]
    labels = [str(v).strip() for v in frame[label_col]]
    pixel_sizes: list[float | None] = [None] * len(paths)
    if "pixel_size" in columns:
        pixel_sizes = [float(v) if v else None for v in frame["pixel_size"]]
    return LabelSet(paths, labels, pixel_sizes, path)


def _resolve(folder: Path, value: str, micrographs: Path | None = None) -> Path:
    """Relative paths: beside the labels file first, then the current directory. A bare name
    with no image extension that names no file: ``<name>.<ext>`` in ``micrographs``, then
    beside the labels file (the first extension of ``MICROGRAPH_SUFFIXES`` that exists)."""
    candidate = Path(value)
    if candidate.is_absolute():
        return candidate
    beside = folder / candidate
    found = beside if beside.exists() or not candidate.exists() else candidate
    if found.exists() or candidate.suffix.lower() in MICROGRAPH_SUFFIXES:
        return found
    for base in [b for b in (micrographs, folder) if b is not None]:
        for ext in MICROGRAPH_SUFFIXES:
            if (base / f"{value}{ext}").is_file():
                return base / f"{value}{ext}"
    return found


def check_classes(
    labels: LabelSet, classes: list[str] | None, accept: list[str]
) -> tuple[list[str], list[str]]:
    """Validate class names against the labels; return ``(classes, accept)``.

    Raises:
        DracoInputError: a label outside ``classes``, an ``accept`` class that is not a class,
            fewer than two classes, or no accept / no reject class.
    """
    found = labels.classes()
    classes = list(dict.fromkeys(classes)) if classes else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DracoInputError(
            f"labels {unknown} are not among the classes {classes} (check --classes or the "
            "label spelling)",
            labels.source,
        )
    if len(classes) < 2:
        raise DracoInputError(f"need at least two classes, the labels hold only {classes}")
    bad_accept = [a for a in accept if a not in classes]
    if bad_accept:
        raise DracoInputError(
            f"accept class(es) {bad_accept} are not among the classes {classes} (pass --accept "
            "with your own name for good micrographs)"
        )
    if set(accept) >= set(classes):
        raise DracoInputError("every class is an accept class: nothing could be rejected")
    return classes, list(dict.fromkeys(accept))
