"""The picker's STAR files follow RELION's own label definitions (metadata_label.h).

RELION declares every label with a type; ``relion_autopick`` writes per-micrograph files with a
bare ``data_`` block, ``# version 30001`` (RELION ≥ 3.1), and classes counted from 1. RELION 4/5
``Import`` of coordinates reads a ``data_coordinate_files`` index. This test parses the text as
RELION does, not through our reader.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from draco_em.io.coords import make_coords, write_coordinate_index, write_relion_coords

# From RELION 5 src/metadata_label.h (EMDL::addLabel): label → type.
RELION_LABELS = {
    "rlnCoordinateX": float,  # EMDL_DOUBLE, "X-Position of an image in a micrograph (in pixels)"
    "rlnCoordinateY": float,  # EMDL_DOUBLE
    "rlnAutopickFigureOfMerit": float,  # EMDL_DOUBLE
    "rlnClassNumber": int,  # EMDL_INT
    "rlnAnglePsi": float,  # EMDL_DOUBLE
    "rlnMicrographName": str,  # EMDL_STRING
    "rlnMicrographCoordinates": str,  # EMDL_STRING
}


def _parse(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Blocks of a STAR file: (name after ``data_``, labels, rows of tokens)."""
    blocks, labels, rows, name = [], [], [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("data_"):
            if name is not None:
                blocks.append((name, labels, rows))
            name, labels, rows = s[5:], [], []
        elif s.startswith("_"):
            labels.append(s.split()[0][1:])
            assert re.fullmatch(r"_\w+ #\d+", s), s  # "_rlnLabel #n" as RELION writes
            assert int(s.split("#")[1]) == len(labels)
        elif s and not s.startswith(("#", "loop_")):
            rows.append(s.split())
    blocks.append((name, labels, rows))
    return blocks


def _check_types(labels: list[str], rows: list[list[str]]) -> None:
    for row in rows:
        assert len(row) == len(labels)
        for label, token in zip(labels, row, strict=True):
            kind = RELION_LABELS[label]
            if kind is int:
                assert re.fullmatch(r"-?\d+", token), (label, token)
            elif kind is float:
                float(token)


def test_per_micrograph_star_matches_relion(tmp_path):
    picks = make_coords("mic_0001", [10.25, 300.5], [20.0, 7.75], score=[0.9, 0.4])
    path = tmp_path / "mic_0001_autopick.star"
    write_relion_coords(path, picks)
    text = path.read_text()
    assert "# version 30001" in text.splitlines()[:3]
    [(name, labels, rows)] = _parse(text)
    assert name == ""  # relion_autopick writes a bare "data_" block
    assert labels[:5] == ["rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit",
                          "rlnClassNumber", "rlnAnglePsi"]  # fmt: skip
    assert set(labels) <= set(RELION_LABELS)
    _check_types(labels, rows)
    table = pd.DataFrame(rows, columns=labels)
    assert (table["rlnClassNumber"].astype(int) >= 1).all()  # RELION counts classes from 1
    np.testing.assert_allclose(table["rlnCoordinateX"].astype(float), [10.25, 300.5])
    np.testing.assert_allclose(table["rlnAutopickFigureOfMerit"].astype(float), [0.9, 0.4])
    assert (table["rlnAnglePsi"].astype(float) == -999).all()  # unknown psi, as RELION


def test_coordinate_index_matches_relion_import(tmp_path):
    path = tmp_path / "coordinate_files.star"
    write_coordinate_index(path, {"MotionCorr/job002/mic_0001.mrc":
                                  "coordinates/mic_0001_autopick.star"})  # fmt: skip
    [(name, labels, rows)] = _parse(path.read_text())
    assert name == "coordinate_files"
    assert labels == ["rlnMicrographName", "rlnMicrographCoordinates"]
    _check_types(labels, rows)


def _untrained_picker(path):
    """A tiny untrained picker file (32-Å particles; it scores ≈ 0.1 everywhere)."""
    from draco_em.pick.config import DetectorConfig
    from draco_em.pick.detector import ParticleDetector
    from draco_em.pick.model_io import save_picker

    enc = {"preset": "custom", "img_size": 64, "embed_dim": 32, "depth": 1, "num_heads": 2,
           "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
           "decoder_neck_dim": 16}  # fmt: skip
    det = ParticleDetector(DetectorConfig(encoder=enc, encoder_blocks=1, neck_dim=8,
                                          stem_dim=4, tile=64, overlap=16))  # fmt: skip
    return save_picker(path, det, diameter=32.0, threshold=0.0)


def test_predicted_star_files_follow_relion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the RELION project folder: names are relative to it
    """The files `draco pick predict` writes (through the shared writers) pass the same checks."""
    from draco_em.io.mrc import write_mrc
    from draco_em.pick.config import PickPredictConfig
    from draco_em.pick.run import predict_all

    model = _untrained_picker(tmp_path / "p.safetensors")
    rng = np.random.default_rng(0)
    write_mrc(tmp_path / "m.mrc", rng.normal(size=(96, 96)).astype(np.float32), pixel_size=1.0)
    cfg = PickPredictConfig(inputs=[tmp_path / "m.mrc"], outdir=tmp_path / "out",
                            model=str(model), threshold=0.06, previews=False)  # fmt: skip
    predict_all(cfg, progress=False)
    [(name, labels, rows)] = _parse((tmp_path / "out/coordinates/m_autopick.star").read_text())
    assert name == "" and labels[:2] == ["rlnCoordinateX", "rlnCoordinateY"]
    assert rows  # an untrained detector scores ≈ 0.1 everywhere: peaks above 0.06 exist
    _check_types(labels, rows)
    [(iname, _ilabels, irows)] = _parse((tmp_path / "out/coordinate_files.star").read_text())
    assert iname == "coordinate_files" and irows[0][1] == "out/coordinates/m_autopick.star"
    assert irows[0][0] == "m.mrc"


def test_picks_on_denoised_micrographs_are_named_after_the_raw_ones(tmp_path, monkeypatch):
    """RELION's Extract finds a micrograph's picks by its name and extracts from the raw
    micrographs: picks made on ``draco denoise`` output carry the raw micrograph's name."""
    from pathlib import Path

    from draco_em.io.mrc import write_mrc
    from draco_em.io.star import MicrographTable, write_micrographs_star
    from draco_em.pick.config import PickPredictConfig
    from draco_em.pick.run import predict_all

    monkeypatch.chdir(tmp_path)
    model = _untrained_picker(tmp_path / "p.safetensors")
    rng = np.random.default_rng(0)
    Path("Denoise/job4").mkdir(parents=True)
    write_mrc("Denoise/job4/m.mrc", rng.normal(size=(96, 96)).astype(np.float32), 1.0)
    rows = pd.DataFrame({"rlnMicrographName": ["Denoise/job4/m.mrc"],
                         "dracoMicrographSource": ["MotionCorr/job2/m.mrc"]})  # fmt: skip
    star = Path("Denoise/job4/denoised_micrographs.star")
    write_micrographs_star(star, MicrographTable(star, None, rows))
    cfg = PickPredictConfig(inputs=[star], outdir=Path("out"), model=str(model),
                            threshold=0.06, previews=False)  # fmt: skip
    predict_all(cfg, progress=False)
    [(_, _, irows)] = _parse(Path("out/coordinate_files.star").read_text())
    assert irows[0][0] == "MotionCorr/job2/m.mrc"


def test_pick_reads_a_star_rows_pixel_size_where_the_header_has_none(tmp_path):
    """A micrographs STAR's optics pixel size stands in for a header that says 0 (RELION reads
    the STAR too); the same micrograph given alone has none and fails with the one message."""
    import mrcfile
    import pandas as pd

    from draco_em.io.star import MicrographTable, write_micrographs_star
    from draco_em.pick.config import PickPredictConfig
    from draco_em.pick.run import predict_all

    model = _untrained_picker(tmp_path / "p.safetensors")
    with mrcfile.new(tmp_path / "m.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(96, 96)).astype(np.float32))
        mrc.voxel_size = 0.0
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [1.0]})  # fmt: skip
    mics = pd.DataFrame({"rlnMicrographName": ["m.mrc"], "rlnOpticsGroup": [1]})
    star = tmp_path / "mics.star"
    write_micrographs_star(star, MicrographTable(star, optics, mics))
    common = {"model": str(model), "threshold": 0.06, "previews": False}
    alone = predict_all(PickPredictConfig(inputs=[tmp_path / "m.mrc"], outdir=tmp_path / "a",
                                          **common), progress=False)  # fmt: skip
    assert alone["failed"] == 1
    assert "pixel size unknown" in (tmp_path / "a" / "failures.txt").read_text()
    listed = predict_all(PickPredictConfig(inputs=[star], outdir=tmp_path / "b", **common),
                         progress=False)  # fmt: skip
    assert listed["failed"] == 0 and listed["micrographs"] == 1


def test_coordinate_index_names_resolve_from_the_current_folder(tmp_path, monkeypatch):
    """A STAR naming its micrographs relative to itself, picked from another folder: the index
    names them from the current folder, as every STAR draco writes (the helper's QA, session
    20: the STAR's own spelling was copied and did not resolve)."""
    from pathlib import Path

    from draco_em.io.mrc import write_mrc
    from draco_em.io.star import MicrographTable, write_micrographs_star
    from draco_em.pick.config import PickPredictConfig
    from draco_em.pick.run import predict_all

    model = _untrained_picker(tmp_path / "p.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    write_mrc(data / "m.mrc", np.random.default_rng(0).normal(size=(96, 96)), 1.0)
    star = data / "mics.star"
    write_micrographs_star(star, MicrographTable(star, None, pd.DataFrame(
        {"rlnMicrographName": ["m.mrc"]})))  # fmt: skip
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = PickPredictConfig(inputs=[star], outdir=Path("out"), model=str(model),
                            threshold=0.06, previews=False)  # fmt: skip
    predict_all(cfg, progress=False)
    [(_, _, irows)] = _parse(Path("out/coordinate_files.star").read_text())
    assert Path(irows[0][0]).resolve() == (data / "m.mrc").resolve()
