"""The user's labels as `pick train` / `pick calibrate` read them (``pick.labels.load_labelled``):
what would silently change the training set is said, or refused, never passed over."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.coords import make_coords, read_coords, write_box, write_cs, write_relion_coords
from draco_em.io.mrc import write_mrc
from draco_em.pick.labels import load_labelled


@pytest.fixture
def labelled(tmp_path, make_blobs, make_tiny_config):
    """Two 96×128 blob micrographs at 2 Å/px and their picks as RELION STARs."""
    rng = np.random.default_rng(3)
    mics, coords = tmp_path / "mics", tmp_path / "coords"
    mics.mkdir(), coords.mkdir()
    truth = {}
    for i in range(2):
        img, xy = make_blobs(rng, (96, 128), 8.0, 5)
        write_mrc(mics / f"m{i}.mrc", img, pixel_size=2.0)
        write_relion_coords(coords / f"m{i}.star", make_coords(f"m{i}", xy[:, 0], xy[:, 1]))
        truth[f"m{i}"] = xy
    cfg = make_tiny_config()
    return {"mics": mics, "coords": coords, "truth": truth, "cfg": cfg, "tmp": tmp_path}


def _load(lab, coords=None, mics=None, **kw):
    return load_labelled([mics or lab["mics"]], [coords or lab["coords"]], lab["cfg"], 32.0, **kw)


def _input_px(ex) -> np.ndarray:
    return ex.xy / np.asarray(ex.scale)


def test_invert_y_reads_labels_counted_from_the_bottom(labelled):
    """A .box written with y from the bottom row lands on the particles only with invert_y."""
    flipped = labelled["tmp"] / "flipped"
    flipped.mkdir()
    for stem in ("m0", "m1"):
        df = read_coords(labelled["coords"] / f"{stem}.star")
        write_box(flipped / f"{stem}.box", df, 16, invert_y=True, image_height=96)
    plain = {e.name: _input_px(e) for e in _load(labelled)}
    as_read = {e.name: _input_px(e) for e in _load(labelled, flipped)}
    inverted = {e.name: _input_px(e) for e in _load(labelled, flipped, invert_y=True)}
    for stem in plain:
        assert np.abs(inverted[stem] - plain[stem]).max() <= 0.5  # the box's whole-pixel corner
        assert np.abs(as_read[stem][:, 1] - plain[stem][:, 1]).max() > 5


def test_cs_positions_follow_the_micrograph_shape_they_were_picked_on(labelled):
    """A .cs made on the unbinned micrograph (4× the shape) keeps its fractions here."""
    cs = labelled["tmp"] / "cs"
    cs.mkdir()
    for stem in ("m0", "m1"):
        df = read_coords(labelled["coords"] / f"{stem}.star")
        df[["x", "y"]] *= 4  # the same picks on the 4× larger micrograph
        write_cs(cs / f"{stem}.cs", df, micrograph_shape=(384, 512))
    plain = {e.name: _input_px(e) for e in _load(labelled)}
    for ex in _load(labelled, cs):
        assert ex.n_outside == 0
        np.testing.assert_allclose(_input_px(ex), plain[ex.name], atol=1e-3)


def test_labels_off_the_micrograph_are_said_and_refused_when_most_are(labelled, capsys):
    unbinned = labelled["tmp"] / "unbinned"
    unbinned.mkdir()
    for stem, xy in labelled["truth"].items():  # picked on micrographs 4× the size
        big = make_coords(stem, 4 * xy[:, 0], 4 * xy[:, 1])
        write_relion_coords(unbinned / f"{stem}.star", big)
    with pytest.raises(DracoInputError, match=r"lie off their micrograph.*binning"):
        _load(labelled, unbinned)
    one_off = labelled["tmp"] / "one_off"
    one_off.mkdir()
    for stem, xy in labelled["truth"].items():
        x = xy[:, 0].copy()
        if stem == "m0":
            x[0] = 500.0
        write_relion_coords(one_off / f"{stem}.star", make_coords(stem, x, xy[:, 1]))
    _load(labelled, one_off)
    assert "warning: 1 of 10 labels lie off their micrograph (e.g. on m0, 128×96 px)" in (
        capsys.readouterr().err
    )


def test_names_that_do_not_match_are_said(labelled, capsys):
    other = labelled["tmp"] / "other"
    other.mkdir()
    df = read_coords(labelled["coords"] / "m0.star")
    write_relion_coords(other / "m0.star", df)
    write_relion_coords(other / "m0_DW.star", df.assign(micrograph="m0_DW"))
    (other / "m1.star").write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    examples = _load(labelled, other)
    assert [e.name for e in examples] == ["m0"]
    err = capsys.readouterr().err
    assert "5 labels on 1 micrograph(s) not among the inputs were not used (e.g. 'm0_DW'" in err
    assert "1 label file(s) hold no pick" in err
    nothing = labelled["tmp"] / "nothing"
    nothing.mkdir()
    write_relion_coords(nothing / "m0_DW.star", df.assign(micrograph="m0_DW"))
    with pytest.raises(DracoInputError, match=r"labels name e\.g\. 'm0_DW', the micrographs"):
        _load(labelled, nothing)


def test_a_micrograph_given_twice_and_repeated_labels_count_once(labelled, capsys):
    doubled = labelled["tmp"] / "doubled"
    doubled.mkdir()
    for stem in ("m0", "m1"):
        df = read_coords(labelled["coords"] / f"{stem}.star")
        write_relion_coords(doubled / f"{stem}.star", df.iloc[np.r_[0 : len(df), 0 : len(df)]])
    examples = load_labelled(
        [labelled["mics"], labelled["mics"] / "m0.mrc"], [doubled], labelled["cfg"], 32.0
    )
    assert sorted(e.name for e in examples) == ["m0", "m1"]
    assert all(len(e.xy) == 5 for e in examples)
    err = capsys.readouterr().err
    assert "10 repeated labels (within 1 px of another) were dropped" in err


def test_box_and_star_labels_merge(labelled):
    """Picks of one micrograph from a .box and a STAR together (box_size only on one)."""
    mixed = labelled["tmp"] / "mixed"
    mixed.mkdir()
    df = read_coords(labelled["coords"] / "m0.star")
    write_relion_coords(mixed / "m0.star", df.iloc[:2])
    write_box(mixed / "m0.box", df.iloc[2:], 16)
    (ex,) = _load(labelled, mixed)
    assert len(ex.xy) == 5
    again = labelled["tmp"] / "again"
    again.mkdir()
    write_box(again / "m0.box", df, 16)  # all five picks once more, as whole-pixel corners
    (ex,) = load_labelled([labelled["mics"] / "m0.mrc"], [mixed, again], labelled["cfg"], 32.0)
    assert len(ex.xy) == 5  # each within 1 px of the STAR's or the first .box's


def test_labels_upside_down_are_said(tmp_path, make_blobs, make_tiny_config, capsys):
    """Labels read with y counted from the other end land between the particles: said, with
    the fix; the same labels read the right way are not."""
    rng = np.random.default_rng(5)
    mics, coords = tmp_path / "mics", tmp_path / "coords"
    mics.mkdir(), coords.mkdir()
    for i in range(3):
        img, xy = make_blobs(rng, (256, 256), 8.0, 12, noise=0.3)
        write_mrc(mics / f"u{i}.mrc", img, pixel_size=2.0)
        write_relion_coords(coords / f"u{i}.star", make_coords(f"u{i}", xy[:, 0], xy[:, 1]))
    cfg = make_tiny_config()
    load_labelled([mics], [coords], cfg, 32.0)
    assert "upside down" not in capsys.readouterr().err
    load_labelled([mics], [coords], cfg, 32.0, invert_y=True)
    err = capsys.readouterr().err
    assert "the labels sit on the particles only upside down" in err and "drop --invert-y" in err


def test_cryosparc_names_match_the_plain_micrographs(labelled, capsys):
    """Picks exported from cryoSPARC name its copies of the micrographs, `<21-digit uid>_<name>
    _patch_aligned_doseweighted`; matched only by exact stem, none was used (peers.md: users of
    pyem and CryoSegNet strip them by hand)."""
    cs_named = labelled["tmp"] / "cs_named"
    uid = "012345678901234567890"
    for stem in ("m0", "m1"):
        df = read_coords(labelled["coords"] / f"{stem}.star")
        name = f"{uid}_{stem}_patch_aligned_doseweighted"
        write_relion_coords(cs_named / f"{name}.star", df.assign(micrograph=name))
    examples = _load(labelled, cs_named)
    assert sorted(e.name for e in examples) == ["m0", "m1"]
    assert all(len(e.xy) == 5 for e in examples)
    assert (
        "2 label file(s) matched to micrographs without cryoSPARC's uid" in capsys.readouterr().err
    )
