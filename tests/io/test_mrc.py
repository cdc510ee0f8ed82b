"""MRC reading/writing: round trips, atomic writes, pixel sizes, real files, broken files."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.io.mrc import SIMULATE_LABEL, mrc_summary, read_image, read_mrc, write_mrc
from draco_em.io.validate import expect_same_shape, validate_image
from tests.conftest import shared_file

# --- round trips -------------------------------------------------------------------------


def test_2d_float32_is_the_default(tmp_path: Path, rng: np.random.Generator) -> None:
    img = rng.normal(size=(20, 30))  # float64 in, float32 on disk
    path = write_mrc(tmp_path / "mic.mrc", img, 1.06)
    mrc = read_mrc(path)
    assert mrc.mode == 2 and mrc.data.dtype == np.float32
    assert mrc.data.shape == (20, 30)  # [ny, nx]: row = y, column = x
    np.testing.assert_allclose(mrc.data, img, rtol=1e-6)
    assert mrc.pixel_size == pytest.approx(1.06)
    assert mrc.voxel_size == pytest.approx((1.06, 1.06, 1.06))
    with mrcfile.open(path) as f:  # what other programs see
        assert (int(f.header.nx), int(f.header.ny)) == (30, 20)
        assert float(f.header.dmean) == pytest.approx(img.mean(), abs=1e-5)


def test_float16_is_mode_12_with_voxel_size(tmp_path: Path, rng: np.random.Generator) -> None:
    img = rng.normal(size=(16, 24)).astype(np.float32)
    mrc = read_mrc(write_mrc(tmp_path / "half.mrc", img, 4.2, float16=True))
    assert mrc.mode == 12 and mrc.data.dtype == np.float16
    assert mrc.pixel_size == pytest.approx(4.2, rel=1e-6)
    np.testing.assert_allclose(mrc.data.astype(np.float32), img, atol=2e-3)


def test_stack_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    stack = rng.normal(size=(5, 12, 14)).astype(np.float32)
    mrc = read_mrc(write_mrc(tmp_path / "particles.mrcs", stack, 1.34))
    assert mrc.is_stack and mrc.data.shape == (5, 12, 14)
    np.testing.assert_array_equal(mrc.data, stack)
    with mrcfile.open(tmp_path / "particles.mrcs") as f:
        assert f.is_image_stack()


def test_volume_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = rng.normal(size=(6, 7, 8)).astype(np.float32)
    mrc = read_mrc(write_mrc(tmp_path / "map.mrc", vol, 2.0, origin=(1.0, 2.0, 3.0)))
    assert not mrc.is_stack and mrc.data.shape == (6, 7, 8)
    assert mrc.origin == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(mrc.data, vol)


def test_integer_data_keeps_its_mode(tmp_path: Path) -> None:
    counts = np.arange(12, dtype=np.int16).reshape(3, 4)
    mrc = read_mrc(write_mrc(tmp_path / "counts.mrc", counts, 1.0))
    assert mrc.mode == 1
    np.testing.assert_array_equal(mrc.data, counts)


def test_mmap_and_single_section(tmp_path: Path, rng: np.random.Generator) -> None:
    img = rng.normal(size=(1, 9, 11)).astype(np.float32)  # many tools write micrographs so
    path = write_mrc(tmp_path / "one.mrc", img, 1.0)
    image, px = read_image(path)
    assert image.shape == (9, 11) and image.dtype == np.float32 and px == 1.0
    mapped = read_mrc(path, mmap=True)
    np.testing.assert_array_equal(np.asarray(mapped.data), img[0])


# --- atomic writes -----------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_mrc(tmp_path / "a.mrc", np.ones((4, 4)) * 2, 1.0)
    write_mrc(tmp_path / "a.mrc", np.ones((4, 4)) * 3, 1.0)  # replaces the old output
    assert os.listdir(tmp_path) == ["a.mrc"]
    assert read_mrc(tmp_path / "a.mrc").data[0, 0] == 3.0


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="shape"):
        write_mrc(tmp_path / "bad.mrc", np.zeros((2, 2, 2, 2)), 1.0)
    old = write_mrc(tmp_path / "out.mrc", np.ones((4, 4)), 1.0).read_bytes()

    def disk_full(self: object, slab: object) -> None:
        raise OSError("No space left on device")

    # A crash half-way through writing: the old output survives, no temp file is left behind.
    monkeypatch.setattr("draco_em.io.mrc._SlabStats.add", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_mrc(tmp_path / "out.mrc", np.zeros((4, 4)), 1.0)
    assert os.listdir(tmp_path) == ["out.mrc"]
    assert (tmp_path / "out.mrc").read_bytes() == old


def test_full_disk_is_an_oserror_naming_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_mrc(tmp_path / "out.mrc", np.ones((4, 4)), 1.0).read_bytes()

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(OSError, match=r"no space left to write .*out\.mrc") as err:
        write_mrc(tmp_path / "out.mrc", np.zeros((64, 64)), 1.0)
    assert err.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["out.mrc"]
    assert (tmp_path / "out.mrc").read_bytes() == old


def test_without_fallocate_the_file_is_written_back_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    def unsupported(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    img = rng.normal(size=(300, 700)).astype(np.float32)  # > 1 MiB: several rewrite chunks
    mrc = read_mrc(write_mrc(tmp_path / "a.mrc", img, 2.5, origin=(1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(mrc.data, img)
    assert mrc.pixel_size == pytest.approx(2.5)
    with mrcfile.open(tmp_path / "a.mrc", header_only=True) as f:  # header written after it
        assert float(f.header.dmean) == pytest.approx(float(img.mean()), abs=1e-5)
        assert tuple(float(v) for v in f.header.origin.item()) == (1.0, 2.0, 3.0)


FULL_DISK_SCRIPT = """
import sys
import numpy as np
from draco_em.io.mrc import write_mrc
try:
    write_mrc(sys.argv[1] + "/big.mrc", np.zeros((1024, 1024), np.float32), 1.0)
except OSError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_really_full_disk_is_no_sigbus(tmp_path: Path) -> None:
    """The crash that killed a CI run: a 4 MiB write through a memory map onto a full file
    system died of SIGBUS. Run on a 1 MiB tmpfs in a private mount namespace (root only)."""
    if shutil.which("unshare") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a tiny tmpfs in a private namespace")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    shell = f'mount -t tmpfs -o size=1M tmpfs "{mnt}" && exec "{sys.executable}" -c "$0" "{mnt}"'
    run = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, FULL_DISK_SCRIPT], capture_output=True, text=True
    )
    assert run.returncode == 3, (run.returncode, run.stderr[-500:])  # SIGBUS would be -7
    assert "no space left to write 4.0 MiB" in run.stdout and "big.mrc" in run.stdout


def test_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    src = write_mrc(tmp_path / "in.mrc", np.ones((4, 4)), 1.0)
    before = src.read_bytes()
    with pytest.raises(DracoInputError, match=r"in\.mrc.*overwrite"):
        write_mrc(tmp_path / "." / "in.mrc", np.zeros((4, 4)), 1.0, inputs=[src])
    assert src.read_bytes() == before


@pytest.mark.parametrize("bad", [0.0, -1.0, None, float("nan")])
def test_write_needs_a_pixel_size(tmp_path: Path, bad: float | None) -> None:
    with pytest.raises(ValueError, match="pixel size"):
        write_mrc(tmp_path / "x.mrc", np.ones((4, 4)), bad)  # type: ignore[arg-type]


# --- pixel sizes -------------------------------------------------------------------------


def _header_pixel(tmp_path: Path, value: float) -> Path:
    path = tmp_path / f"px{value}.mrc"
    with mrcfile.new(path) as f:
        f.set_data(np.arange(16, dtype=np.float32).reshape(4, 4))
        f.voxel_size = value
    return path


def test_header_zero_means_unknown_and_can_be_overridden(tmp_path: Path) -> None:
    path = _header_pixel(tmp_path, 0.0)
    assert read_mrc(path).pixel_size is None
    assert read_mrc(path).pixel_size_is_placeholder
    assert read_mrc(path, pixel_size=1.31).pixel_size == 1.31
    assert read_image(path, pixel_size=0.82)[1] == 0.82


def test_header_one_is_a_placeholder(tmp_path: Path) -> None:
    path = _header_pixel(tmp_path, 1.0)
    mrc = read_mrc(path)
    assert mrc.pixel_size == 1.0 and mrc.pixel_size_is_placeholder
    assert any("placeholder" in n for n in mrc_summary(path)["notes"])
    assert read_mrc(path, pixel_size=3.4).pixel_size == 3.4
    assert not read_mrc(_header_pixel(tmp_path, 1.5)).pixel_size_is_placeholder


@pytest.mark.parametrize("bad", [0.0, -2.0, float("inf")])
def test_bad_override_is_a_user_error(tmp_path: Path, bad: float) -> None:
    with pytest.raises(DracoInputError, match="pixel size override"):
        read_mrc(_header_pixel(tmp_path, 0.0), pixel_size=bad)


# --- real files, read in place -------------------------------------------------------------


def test_emd_3001_anisotropic_voxels() -> None:
    mrc = read_mrc(shared_file("mrcfile/EMD-3001.map"))
    assert mrc.data.shape == (25, 43, 73) and not mrc.is_stack
    assert mrc.voxel_size == pytest.approx((0.44825, 0.3925, 0.45875), abs=1e-5)
    assert mrc.pixel_size == pytest.approx(0.44825, abs=1e-5)
    assert any("anisotropic" in n for n in mrc.notes)


def test_emd_3197_non_zero_start() -> None:
    mrc = read_mrc(shared_file("mrcfile/EMD-3197.map"), mmap=True)
    assert mrc.nstart == (-2, 0, 0)
    assert mrc.data.shape == (20, 20, 20)
    assert mrc.pixel_size == pytest.approx(11.4)


def test_real_micrograph() -> None:
    image, px = read_image(shared_file("micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"))
    assert image.shape == (927, 959) and image.dtype == np.float32
    assert px == 1.0  # the placeholder: callers must override
    assert float(image.mean()) == pytest.approx(6802, abs=1)
    assert float(image.std()) == pytest.approx(8.9, abs=0.2)
    validate_image(image, "Ucsf_stack_1142_DW.mrc")


def test_real_particle_stack() -> None:
    path = shared_file("aspire/sample.mrcs")
    mrc = read_mrc(path, pixel_size=1.338)
    assert mrc.is_stack and mrc.data.shape == (17, 200, 200)
    assert mrc.pixel_size == 1.338 and read_mrc(path).pixel_size is None  # header says 0
    summary = mrc_summary(path)
    assert summary["kind"] == "stack" and summary["n_frames"] == 17
    with pytest.raises(DracoInputError, match=r"sample\.mrcs.*2D"):
        read_image(path)


# --- broken files: each a DracoInputError naming the file -----------------------------------


def _good(path: Path) -> Path:
    data = np.random.default_rng(1).normal(size=(32, 40)).astype(np.float32)
    return write_mrc(path, data, 1.0)


def _truncated(path: Path) -> Path:
    raw = _good(path).read_bytes()
    path.write_bytes(raw[: 1024 + 1000])
    return path


def _short_header(path: Path) -> Path:
    path.write_bytes(_good(path).read_bytes()[:300])
    return path


def _corrupt_header(path: Path) -> Path:
    raw = bytearray(_good(path).read_bytes())
    raw[208:212] = b"JUNK"  # the "MAP " identifier
    path.write_bytes(bytes(raw))
    return path


def _bad_mode(path: Path) -> Path:
    raw = bytearray(_good(path).read_bytes())
    raw[12:16] = struct.pack("<i", 77)
    path.write_bytes(bytes(raw))
    return path


def _no_pixels(path: Path) -> Path:
    raw = bytearray(_good(path).read_bytes())
    raw[0:12] = struct.pack("<3i", 0, 0, 1)
    path.write_bytes(bytes(raw[:1024]))
    return path


def _text_file(path: Path) -> Path:
    path.write_text("this is not an MRC file\n" * 100)
    return path


BROKEN: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda p: p, "not found"),
    "folder": (lambda p: (p.mkdir(), p)[1], "folder"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], "1024-byte MRC header"),
    "truncated": (_truncated, r"truncated.*40x32x1 float32.*ends after 2024 bytes"),
    "short_header": (_short_header, "1024-byte MRC header"),
    "corrupt_header": (_corrupt_header, "Map ID"),
    "bad_mode": (_bad_mode, "mode"),
    "no_pixels": (_no_pixels, "no pixels"),
    "text": (_text_file, "not a readable MRC"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_files_are_user_errors(tmp_path: Path, kind: str) -> None:
    make, message = BROKEN[kind]
    path = make(tmp_path / f"broken_{kind}.mrc")
    for mmap in (False, True):
        with pytest.raises(DracoInputError, match=message) as err:
            read_mrc(path, mmap=mmap)
        assert f"broken_{kind}.mrc" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DracoInputError, match=f"broken_{kind}"):
        mrc_summary(path)


def test_wrong_number_of_dimensions(tmp_path: Path) -> None:
    stack = write_mrc(tmp_path / "stack.mrcs", np.zeros((3, 4, 5)), 1.0)
    with pytest.raises(DracoInputError, match=r"stack\.mrcs: expected a 2D array.*\(3, 4, 5\)"):
        read_image(stack)
    with pytest.raises(DracoInputError, match=r"mic\.mrc: expected a 3D"):
        read_mrc(_good(tmp_path / "mic.mrc"), ndim=(3,))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(tmp_path: Path, bad: float) -> None:
    img = np.ones((8, 8), np.float32)
    img[3, 4] = bad
    image, _ = read_image(write_mrc(tmp_path / "nan.mrc", img, 1.0))
    with pytest.raises(DracoInputError, match=r"nan\.mrc: image has 1 NaN/Inf pixels"):
        validate_image(image, tmp_path / "nan.mrc")


def test_zero_variance_image(tmp_path: Path) -> None:
    image, _ = read_image(write_mrc(tmp_path / "flat.mrc", np.full((8, 8), 5.0), 1.0))
    with pytest.raises(DracoInputError, match=r"flat\.mrc: image has zero variance"):
        validate_image(image, tmp_path / "flat.mrc")
    validate_image(image + np.eye(8, dtype=np.float32), "ok.mrc")  # varied: no error


def test_odd_even_pair_of_different_shapes(tmp_path: Path) -> None:
    odd, _ = read_image(write_mrc(tmp_path / "mic_odd.mrc", np.ones((8, 8)), 1.0))
    even, _ = read_image(write_mrc(tmp_path / "mic_even.mrc", np.ones((8, 9)), 1.0))
    with pytest.raises(DracoInputError, match=r"mic_odd\.mrc: shape .*mic_even\.mrc"):
        expect_same_shape(odd, even, tmp_path / "mic_odd.mrc", tmp_path / "mic_even.mrc")
    expect_same_shape(odd, odd, "a.mrc", "b.mrc")


def test_corrupt_voxel_size_counts_as_unset(tmp_path: Path) -> None:
    raw = bytearray(_good(tmp_path / "mx0.mrc").read_bytes())
    raw[28:40] = struct.pack("<3i", 0, 0, 0)  # mx = my = mz = 0: cella / 0 = inf
    (tmp_path / "mx0.mrc").write_bytes(bytes(raw))
    mrc = read_mrc(tmp_path / "mx0.mrc")
    assert mrc.pixel_size is None and mrc.voxel_size == (0.0, 0.0, 0.0)


def test_big_endian_file_and_its_truncation(tmp_path: Path) -> None:
    path = tmp_path / "big_endian.mrc"
    with mrcfile.new(path) as f:  # mrcfile writes the header in the data's byte order
        f.set_data(np.arange(20, dtype=">f4").reshape(4, 5))
        f.voxel_size = 2.0
    mrc = read_mrc(path)
    assert mrc.pixel_size == 2.0 and mrc.data[3, 4] == 19.0
    path.write_bytes(path.read_bytes()[:1050])
    with pytest.raises(DracoInputError, match=r"truncated MRC file: header says 5x4x1 float32"):
        read_mrc(path)


def test_huge_extended_header_is_rejected_before_reading(tmp_path: Path) -> None:
    raw = bytearray(_good(tmp_path / "ext.mrc").read_bytes())
    raw[92:96] = struct.pack("<i", 2**31 - 1)  # nsymbt: mrcfile would allocate 2 GB first
    (tmp_path / "ext.mrc").write_bytes(bytes(raw))
    with pytest.raises(DracoInputError, match=r"ext\.mrc: corrupt MRC header: extended header"):
        read_mrc(tmp_path / "ext.mrc")


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_slab_by_slab_write_keeps_data_and_header_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: type
) -> None:
    monkeypatch.setattr("draco_em.io.mrc._SLAB_BYTES", 100)  # many slabs, uneven last one
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 9, size=(5, 13, 11)) + (rng.normal(size=(5, 13, 11)) if
            np.dtype(dtype).kind == "f" else 0)).astype(dtype)  # fmt: skip
    for arr, name in ((data, "s.mrcs"), (data[2], "i.mrc")):
        with mrcfile.open(write_mrc(tmp_path / name, arr, 1.5)) as f:
            np.testing.assert_array_equal(f.data, arr.astype(f.data.dtype))
            ref = arr.astype(np.float64)
            assert float(f.header.dmin) == pytest.approx(ref.min())
            assert float(f.header.dmax) == pytest.approx(ref.max())
            assert float(f.header.dmean) == pytest.approx(ref.mean(), rel=1e-6)
            assert float(f.header.rms) == pytest.approx(ref.std(), rel=1e-6)
            assert f.is_image_stack() == (name == "s.mrcs") and f.voxel_size.x == 1.5


# --- inputs users give by mistake (QA, issue 29): each one line naming the file ---------------


def test_an_unreadable_file_is_a_user_error(tmp_path: Path, monkeypatch) -> None:
    """No read permission (a colleague's folder) raised a bare PermissionError: denoise
    crashed with a traceback instead of recording it in failures.txt."""
    path = _good(tmp_path / "theirs.mrc")
    real_open = Path.open

    def refuse(self: Path, *args, **kwargs):  # chmod 000 is no use: tests may run as root
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DracoInputError, match=r"theirs\.mrc: cannot read the file \(Permission"):
        read_mrc(path)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_complex_data_is_no_image(tmp_path: Path) -> None:
    """A Fourier transform (mode 4) was denoised and picked from its real part, with only a
    numpy ComplexWarning on stderr; draco info still describes it."""
    path = tmp_path / "fft.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(
            (np.arange(64, dtype=np.float32) * (1 + 2j)).reshape(8, 8).astype(np.complex64)
        )
    for read in (read_mrc, read_image):
        with pytest.raises(DracoInputError, match=r"fft\.mrc: holds complex values \(MRC mode 4"):
            read(path)
    summary = mrc_summary(path)
    assert summary["mode"] == 4 and any("complex" in note for note in summary["notes"])


def _imod_bytes(path: Path, stored: np.ndarray, flags: int | None) -> Path:
    """A mode 0 file; ``flags``: IMOD's stamp and imodFlags (header bytes 152-159), or none."""
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored.view(np.int8))
    if flags is not None:
        raw = bytearray(path.read_bytes())
        raw[152:160] = struct.pack("<2i", 1146047817, flags)  # "IMOD", then its flags
        path.write_bytes(bytes(raw))
    return path


def test_imod_unsigned_bytes_keep_their_values(tmp_path: Path) -> None:
    """IMOD writes 8-bit images as unsigned bytes unless imodFlags bit 0 says signed; mrcfile
    reads every mode 0 file as int8, so 128-255 became -128..-1 and the image was garbage."""
    stored = np.array([[0, 100, 200, 255]] * 16, np.uint8)
    path = _imod_bytes(tmp_path / "u.mrc", stored, 0)
    for mmap in (False, True):
        unsigned = read_mrc(path, mmap=mmap).data
        assert unsigned.dtype == np.uint8 and np.array_equal(unsigned, stored)
    signed = read_mrc(_imod_bytes(tmp_path / "s.mrc", stored, 1)).data  # flag: signed
    standard = read_mrc(_imod_bytes(tmp_path / "m.mrc", stored, None)).data  # MRC2014: signed
    for data in (signed, standard):
        assert data.dtype == np.int8 and data[0].tolist() == [0, 100, -56, -1]
    assert read_image(tmp_path / "u.mrc")[0][0].tolist() == [0, 100, 200, 255]


def test_a_single_section_where_a_stack_is_needed(tmp_path: Path) -> None:
    """A one-frame movie said "expected a 3D array, found shape (16, 24)" of a 1x16x24 file."""
    path = write_mrc(tmp_path / "movie.mrcs", np.ones((1, 16, 24), np.float32), 1.0)
    with pytest.raises(DracoInputError, match=r"movie\.mrcs: expected a 3D .*single 24x16 image"):
        read_mrc(path, ndim=(3,))


def test_info_notes_what_commands_refuse_and_not_simulate_pixel_size(tmp_path: Path) -> None:
    """draco info said nothing of a constant image, which every command refuses, and called
    draco simulate's own 1.0 Å "often a placeholder", which no command says of it."""
    const = write_mrc(tmp_path / "const.mrc", np.zeros((16, 16), np.float32), 2.0)
    assert any("zero variance" in note for note in mrc_summary(const)["notes"])
    simulated = _good(tmp_path / "sim.mrc")  # header 1.0 Å, then simulate's label
    raw = bytearray(simulated.read_bytes())
    raw[224:304] = SIMULATE_LABEL
    simulated.write_bytes(bytes(raw))
    assert not any("placeholder" in note for note in mrc_summary(simulated)["notes"])
    assert any("placeholder" in note for note in mrc_summary(_good(tmp_path / "x.mrc"))["notes"])
