"""Labels from STAR and CSV, class names, and the errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.labels import check_classes, read_labels


def test_star_reason_none_means_good_and_pixel_size_from_optics(toy_set: Path) -> None:
    labels = read_labels(toy_set / "micrographs.star")
    assert labels.labels[:2] == ["good", "contamination"]
    assert labels.classes() == ["good", "contamination"]
    assert labels.pixel_sizes[0] == 2.0
    assert labels.paths[0] == toy_set / "mics" / "toy_00.mrc"


def test_csv_with_own_class_names(toy_set: Path) -> None:
    labels = read_labels(toy_set / "labels.csv")
    assert set(labels.labels) == {"clean", "dirty"}
    classes, accept = check_classes(labels, None, ["clean"])
    assert classes == ["clean", "dirty"] and accept == ["clean"]
    # An explicit class list may name classes nobody labelled yet, in the user's order.
    classes, _ = check_classes(labels, ["dirty", "clean", "carbon"], ["clean"])
    assert classes == ["dirty", "clean", "carbon"]


def test_unknown_label_names_are_refused(toy_set: Path) -> None:
    labels = read_labels(toy_set / "labels.csv")
    with pytest.raises(DracoInputError, match=r"\['dirty'\] are not among the classes"):
        check_classes(labels, ["clean", "thick_ice"], ["clean"])
    with pytest.raises(DracoInputError, match="accept class"):
        check_classes(labels, None, ["good"])  # default accept name, user's names differ
    with pytest.raises(DracoInputError, match="nothing could be rejected"):
        check_classes(labels, None, ["clean", "dirty"])


def test_labels_naming_missing_micrographs(toy_set: Path, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "micrograph": [str(toy_set / "mics/toy_00.mrc"), "nowhere/ghost.mrc"],
            "label": ["good", "empty"],
        }
    ).to_csv(csv, index=False)
    with pytest.raises(DracoInputError, match=r"1 labelled micrograph.*ghost\.mrc"):
        read_labels(csv)
    assert read_labels(csv, check_files=False).stems == ["toy_00", "ghost"]


def test_csv_without_label_column(tmp_path: Path) -> None:
    csv = tmp_path / "l.csv"
    csv.write_text("micrograph,quality\na.mrc,good\n")
    with pytest.raises(DracoInputError, match="no label column"):
        read_labels(csv, check_files=False)
    assert read_labels(csv, label_column="quality", check_files=False).labels == ["good"]


def test_one_label_per_micrograph_and_one_spelling_per_class(toy_set: Path, tmp_path: Path):
    """A repeated row counts once; two labels for one micrograph, or 'Good' beside 'good'
    (which would train good micrographs as a reject class), are refused in one line."""
    a, b = str(toy_set / "mics/toy_00.mrc"), str(toy_set / "mics/toy_01.mrc")
    csv = tmp_path / "labels.csv"

    def write(names: list[str], labels: list[str]) -> None:
        pd.DataFrame({"micrograph": names, "label": labels}).to_csv(csv, index=False)

    write([a, b, a], ["good", "bad", "good"])
    labels = read_labels(csv)
    assert labels.stems == ["toy_00", "toy_01"] and labels.labels == ["good", "bad"]
    write([a, b, a], ["good", "bad", "bad"])
    with pytest.raises(DracoInputError, match=r"toy_00\.mrc is labelled both 'good' and 'bad'"):
        read_labels(csv)
    write([a, b], ["good", "Good"])
    with pytest.raises(DracoInputError, match="'good' and 'Good' differ only in case"):
        read_labels(csv)


def test_bare_names_are_found_with_their_extension(toy_set: Path, tmp_path: Path) -> None:
    """MicAssess's labels.csv names micrographs without folder or extension: they are looked
    for as <name>.<ext> in the given folder (curate train --micrographs), then beside it."""
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"name": ["toy_00", "toy_01"], "class": ["good", "bad"]}).to_csv(csv, index=False)
    with pytest.raises(DracoInputError, match=r"looked for as <name>\.mrc"):
        read_labels(csv)
    labels = read_labels(csv, folder=toy_set / "mics")
    assert labels.paths == [toy_set / "mics/toy_00.mrc", toy_set / "mics/toy_01.mrc"]
