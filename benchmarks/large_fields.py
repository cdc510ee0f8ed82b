"""Time and peak memory of the main commands on K3-sized micrographs (2 CPU cores).

Issue 19 asks the curator to work "at any field of view (a 1k² binned image to a 6k² K3
micrograph)", and users pass Gatan K3 sums as they come out of MotionCor2: 5760 × 4092 at
about 0.83 Å/px, or 11520 × 8184 super-resolution sums at 0.415 Å/px when they did not bin.
The 4096² speed figures in docs/benchmarks.md do not say what such inputs cost. This script
makes one micrograph of each shape (with its EVN/ODD halves) and runs ``draco denoise``,
``draco denoise --blend-halves``, ``draco pick predict`` and ``draco curate predict`` on each,
one fresh process per command, recording the wall time (start-up included), the process's
peak RSS and the 1-minute load average before and after.

The images: one ``draco simulate`` micrograph (realistic preset, 2048² at 2.49 Å/px, with
halves) Fourier-padded by 3 or 6 and cropped to the K3 shape, plus white Gaussian noise of the
padded image's standard deviation, so that the power near the new Nyquist is a raw sum's
(without it every command would treat the picture as pre-denoised). The content is a
simulation's; only the size and the pixel size are the K3's, which is what time and memory
depend on.

Usage::

    draco simulate -o /work/s23/sim2k --size 2048 --pixel-size 2.49 --n-micrographs 1 \\
        --no-movies --seed 7
    OMP_NUM_THREADS=2 python benchmarks/large_fields.py --sim /work/s23/sim2k \\
        --out /work/s23/large --json /work/s23/large.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from denoise_speed import timed_command

from draco_em.imaging.fourier import fourier_resize
from draco_em.io.mrc import read_image, write_mrc

#: name → (Fourier padding factor of the 2.49 Å simulation, shape (ny, nx), pixel size Å)
FIELDS = {
    "k3": (3, (4092, 5760), 0.83),
    "k3_superres": (6, (8184, 11520), 0.415),
}
SUFFIXES = ("", "_EVN", "_ODD")
MOVIE_FRAMES = 40
EER_FRAMES, EER_SIZE, EER_PIXEL = 400, 4096, 0.73


def make_fields(sim: Path, out: Path, names: list[str], seed: int = 0) -> dict[str, Path]:
    """Write ``out/<name>/mic.mrc`` (+ halves) for each field name; returns name → folder."""
    rng = np.random.default_rng(seed)
    folders = {}
    for name in names:
        factor, shape, pixel_size = FIELDS[name]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in SUFFIXES:
            path = folder / f"mic{suffix}.mrc"
            if path.exists():
                continue
            image = read_image(sim / "micrographs" / f"mic_00001{suffix}.mrc")[0]
            n = image.shape[0] * factor
            up = fourier_resize(image.astype(np.float32), (n, n))[: shape[0], : shape[1]]
            up = np.ascontiguousarray(up, np.float32)
            up += rng.normal(0.0, float(up.std()), up.shape).astype(np.float32)
            write_mrc(path, up, pixel_size=pixel_size)
        folders[name] = folder
    return folders


def _contrast(sim: Path, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """The simulation's clean image Fourier-padded by ``factor``, cropped to ``shape`` plus
    64 px of room for the drift, standardised: the contrast the movies' count rate follows."""
    clean = read_image(sim / "clean" / "mic_00001.mrc")[0].astype(np.float32)
    n = clean.shape[0] * factor
    clean = fourier_resize(clean, (n, n))[: shape[0] + 64, : shape[1] + 64]
    return (clean - clean.mean()) / clean.std()


def make_movie(sim: Path, out: Path, seed: int = 0) -> Path:
    """A K3-shaped LZW TIFF movie ``out/k3_movie/movie.tif`` (module docstring)."""
    import tifffile

    path = out / "k3_movie" / "movie.tif"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    factor, shape, _ = FIELDS["k3"]
    clean = _contrast(sim, factor, shape)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.tif")
    with tifffile.TiffWriter(tmp) as tif:
        for i in range(MOVIE_FRAMES):
            dy, dx = round(0.4 * i), round(0.7 * i)  # 16 × 28 px over the movie
            rate = 0.8 * np.clip(1 + 0.1 * clean[dy : dy + shape[0], dx : dx + shape[1]], 0, None)
            frame = np.minimum(rng.poisson(rate), 255).astype(np.uint8)
            tif.write(frame, compression="lzw", contiguous=False)
    tmp.replace(path)
    return path


def make_eer(sim: Path, out: Path, seed: int = 0) -> Path:
    """A Falcon-4-shaped EER movie ``out/falcon4_eer/movie.eer`` (module docstring)."""
    from draco_em.io.movie_writers import write_eer

    path = out / "falcon4_eer" / "movie.eer"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = _contrast(sim, 3, (EER_SIZE, EER_SIZE))
    rng = np.random.default_rng(seed)

    def frames():
        # Events on the 4× sub-pixel grid, as a Falcon 4 records them (at most one per physical
        # pixel and raw frame, at a random sub-pixel): --eer-upsampling 2 then renders real
        # super-resolution detail, not events stuck on every other pixel.
        for i in range(EER_FRAMES):
            dy, dx = round(0.04 * i), round(0.07 * i)  # 16 × 28 px over the movie
            p = 0.03 * np.clip(1 + 0.1 * clean[dy : dy + EER_SIZE, dx : dx + EER_SIZE], 0, None)
            y, x = np.nonzero(rng.random((EER_SIZE, EER_SIZE), dtype=np.float32) < p)
            frame = np.zeros((4 * EER_SIZE, 4 * EER_SIZE), bool)
            frame[4 * y + rng.integers(0, 4, len(y)), 4 * x + rng.integers(0, 4, len(x))] = True
            yield frame

    tmp = path.with_suffix(".tmp.eer")
    write_eer(tmp, frames(), pixel_size=EER_PIXEL, subpixel_factor=4)
    tmp.replace(path)
    return path


def timed(cmd: list[str]) -> dict:
    """:func:`denoise_speed.timed_command` (wall time, peak RSS, load) and the command line."""
    return {"command": " ".join(cmd), **timed_command(cmd)}


def commands(folder: Path, out: Path, diameter: float) -> dict[str, list[str]]:
    mic = str(folder / "mic.mrc")
    draco = [sys.executable, "-m", "draco_em"]
    return {
        "denoise": [*draco, "denoise", mic, "-o", str(out / "denoise")],
        "denoise --blend-halves": [
            *draco,
            "denoise",
            mic,
            "-o",
            str(out / "blend"),
            "--blend-halves",
        ],
        "pick predict": [
            *draco,
            "pick",
            "predict",
            mic,
            "-o",
            str(out / "pick"),
            "--diameter",
            str(diameter),
        ],
        "curate predict": [*draco, "curate", "predict", mic, "-o", str(out / "curate")],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", type=Path, required=True, help="draco simulate output (2048², 2.49 Å)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--fields", nargs="+", default=list(FIELDS), choices=list(FIELDS))
    ap.add_argument("--only", nargs="+", default=None, help="command names to run (default all)")
    ap.add_argument("--diameter", type=float, default=200.0, help="pick diameter in Å")
    ap.add_argument("--movie", action="store_true", help="also time draco prepare on a K3 movie")
    ap.add_argument("--eer", action="store_true", help="also time draco prepare on a Falcon 4 EER")
    args = ap.parse_args(argv)
    folders = make_fields(args.sim, args.out / "images", args.fields)
    rows = []
    if args.movie and (not args.only or "prepare" in args.only):
        movie = make_movie(args.sim, args.out / "images")
        cmd = [sys.executable, "-m", "draco_em", "prepare", str(movie), "-o",
               str(args.out / "runs" / "k3_movie" / "prepare"), "--pixel-size", "0.83"]  # fmt: skip
        rows.append({"field": "k3_movie", "shape": FIELDS["k3"][1], "pixel_size": 0.83,
                     "step": "prepare", **timed(cmd)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    if args.eer and (not args.only or "prepare" in args.only):
        eer = make_eer(args.sim, args.out / "images")
        for up in (1, 2):
            cmd = [sys.executable, "-m", "draco_em", "prepare", str(eer), "-o",
                   str(args.out / "runs" / "falcon4_eer" / f"prepare_up{up}"), "--pixel-size",
                   str(EER_PIXEL), "--eer-grouping", "10", "--eer-upsampling", str(up)]  # fmt: skip
            shape = (EER_SIZE * up,) * 2
            rows.append({"field": f"falcon4_eer_up{up}", "shape": shape, "step": "prepare",
                         "pixel_size": EER_PIXEL / up, **timed(cmd)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    for name, folder in folders.items():
        for label, cmd in commands(folder, args.out / "runs" / name, args.diameter).items():
            if args.only and label not in args.only:
                continue
            row = {"field": name, "shape": FIELDS[name][1], "pixel_size": FIELDS[name][2],
                   "step": label, **timed(cmd)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(args.json)


if __name__ == "__main__":
    main()
