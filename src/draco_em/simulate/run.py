"""``draco simulate``: make a dataset of micrographs with exact ground truth.

Layout of ``OUTDIR`` (fixed names, relied on by other commands and benchmarks)::

    micrographs.star              RELION micrograph STAR + the dataset-manifest columns
    micrographs/<name>.mrc        full sum (electrons)     <name>_EVN.mrc / <name>_ODD.mrc
    clean/<name>.mrc              noise-free expectation of the full sum
    coordinates/<name>.star       every particle whose centre is inside the image
    motion/<name>.csv             frame,shift_x,shift_y (true global shift, pixels)
    movies/<name>.mrcs            raw counts (unless --no-movies);  gain.mrc with --gain
    meta/<name>.json              per-micrograph record, written last: marks it finished
    simulate_config.json          the settings; failures.txt lists micrographs that failed

Every output is written atomically; a re-run with the same settings skips finished
micrographs and rebuilds ``micrographs.star`` (atomically too). A re-run with a larger
``n_micrographs`` and otherwise the same settings adds the missing micrographs: micrograph *i*
is the same whatever the count (:func:`_check_growth` says where that does not hold).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError
from draco_em.imaging.normalize import clip_stats
from draco_em.io import manifest
from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import FailureLog, make_output_folder, settings_changes
from draco_em.io.coords import write_relion_coords
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.manifest import optics_group, stats_columns
from draco_em.io.motion import motion_stats
from draco_em.io.mrc import SIMULATE_LABEL, write_mrc
from draco_em.io.star import read_star, write_star
from draco_em.simulate import bad, detector
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.library import ENV_VAR, HELD_OUT, default_library_dir, read_library
from draco_em.simulate.micrograph import Micrograph, simulate_micrograph
from draco_em.simulate.phantoms import make_phantoms
from draco_em.simulate.potential import Structure, load_structure
from draco_em.simulate.projection import Projector, ProjectorPool

log = logging.getLogger(__name__)

#: The run's settings, in the output folder: a resumed run must match them.
_CONFIG_FILE = "simulate_config.json"
# Settings that do not change what is simulated (a resumed run may change them).
_NOT_PHYSICS = {"jobs", "outdir", "cache_dir"}
# Settings that folders made before they existed did not record: their value there.
_LEGACY = {"preset": "classic", "realism": None}


@dataclass
class RunSummary:
    """What a run did."""

    made: int
    skipped: int
    failed: int
    star: Path


def load_structures(cfg: SimulateConfig) -> list[Structure]:
    """The dataset's structures: the files given (via the potential cache), else phantoms."""
    if not cfg.structures:
        return make_phantoms(cfg.seed, cfg.n_phantoms, cfg.pixel_size, cfg.voltage)
    return [
        load_structure(p, cfg.pixel_size, cfg.voltage, cfg.potential_cache, cfg.map_pixel_size)
        for p in cfg.structures
    ]


def structure_files(cfg: SimulateConfig) -> list[Path]:
    """Realistic preset: the library's files in the size range (when the library is used and
    present) followed by the user's ``structures``; empty = use phantoms."""
    realism = cfg.realism
    files: list[Path] = []
    if realism is not None and realism.library:
        folder = realism.library_dir or default_library_dir()
        if folder is None:
            env = os.environ.get(ENV_VAR)
            log.warning(
                "structure library not found (%s): %s",
                f"{ENV_VAR}={env} is not a folder"
                if env
                else f"give --library-dir or set {ENV_VAR} to a folder holding structures.csv",
                "using only --structures" if cfg.structures else "using built-in phantoms",
            )
        else:
            files = [e.path for e in read_library(folder, realism.particle_size_range)]
    held = [Path(p).name for p in cfg.structures if HELD_OUT.search(Path(p).name)]
    if held and realism is not None:  # said, not refused: the evaluation sets are made so
        log.warning(
            "%s: held out for evaluation (ribosomes); a set with it must never train a bundled "
            "model (%s)",
            ", ".join(held),
            doc_ref("simulator"),
        )
    return files + list(cfg.structures)


def structure_sources(cfg: SimulateConfig, progress: bool = False) -> list:
    """What each worker's :class:`ProjectorPool` builds from: for the realistic preset, loaders
    of cached potentials (computed here once, in the main process, so workers never race to
    compute one); else the structures themselves."""
    if cfg.realism is None:
        return load_structures(cfg)
    files = structure_files(cfg)
    if not files:
        return make_phantoms(cfg.seed, cfg.n_phantoms, cfg.pixel_size, cfg.voltage)
    loaders = []
    # A potential not yet cached takes 0.2–5 s at 2 Å/px, up to a minute at 1 Å/px.
    for path in tqdm(files, desc="potentials", unit="structure", disable=not progress):
        load = partial(
            load_structure,
            path,
            cfg.pixel_size,
            cfg.voltage,
            cfg.potential_cache,
            cfg.map_pixel_size,
        )
        load()  # fills the cache (or checks the file) now: errors surface before any image
        loaders.append(load)
    return loaders


def _check_resume(cfg: SimulateConfig) -> str:
    """Refuse to mix two different simulations in one folder; the settings to record (JSON).

    A larger ``n_micrographs`` with every other setting the same grows the set (see
    :func:`_check_growth`); a smaller one is refused.
    """
    path = cfg.outdir / _CONFIG_FILE
    current = json.loads(cfg.model_dump_json())
    if not path.exists():
        return json.dumps(current, indent=2)
    ignore = _NOT_PHYSICS | {"n_micrographs"}
    if diff := settings_changes(path, current, _LEGACY, ignore, recorded_only=True):
        raise DracoInputError(
            f"holds a simulation with other settings ({diff}); "
            "use a new output folder or the same settings to resume",
            cfg.outdir,
        )
    recorded = json.loads(path.read_text()).get("n_micrographs")  # readable: compared above
    if isinstance(recorded, int) and recorded != cfg.n_micrographs:
        _check_growth(cfg, recorded)
    return json.dumps(current, indent=2)


def _check_growth(cfg: SimulateConfig, recorded: int) -> None:
    """Allow ``recorded`` → ``cfg.n_micrographs`` micrographs only where the micrographs made
    so far are those a run of the new count makes.

    Micrograph *i* draws from ``default_rng([seed, i])`` whatever the count; only which ones are
    bad (:func:`~draco_em.simulate.bad.bad_indices`, drawn for the whole set) depends on it. With
    ``bad_fraction`` 0 nothing does; otherwise the first ``recorded`` would mostly change, and
    the seeding stays as it is (changing it would change every data set made so far).
    """
    n = cfg.n_micrographs
    if n < recorded:
        raise DracoInputError(
            f"holds a set of {recorded} micrographs; --n-micrographs {n} would drop "
            f"{recorded - n} of them: give {recorded} or more, or a new output folder",
            cfg.outdir,
        )
    before = bad.bad_indices(cfg.model_copy(update={"n_micrographs": recorded}))
    if {i for i in bad.bad_indices(cfg) if i < recorded} != before:
        raise DracoInputError(
            f"cannot grow this set from {recorded} to {n} micrographs: with --bad-fraction "
            f"{cfg.bad_fraction:g} which micrographs are bad is drawn for the whole set, so the "
            f"first {recorded} would change; make the {n} in a new output folder",
            cfg.outdir,
        )


def _relpaths(cfg: SimulateConfig, name: str) -> dict[str, str]:
    return {
        "full": f"micrographs/{name}.mrc",
        "even": f"micrographs/{name}_EVN.mrc",
        "odd": f"micrographs/{name}_ODD.mrc",
        "clean": f"clean/{name}.mrc",
        "coords": f"coordinates/{name}.star",
        "motion": f"motion/{name}.csv",
        "movie": f"movies/{name}.mrcs" if cfg.movies else "",
        "regions": f"regions/{name}.mrc" if cfg.region_masks else "",
        "meta": f"meta/{name}.json",
    }


def _write_image(path: Path, data: np.ndarray, pixel_size: float, stack: bool = False) -> None:
    """``write_mrc`` with a fixed header label instead of mrcfile's creation time stamp, so
    that the same seed gives byte-identical files."""
    write_mrc(path, data, pixel_size, stack=stack)
    with open(path, "r+b") as fh:  # label 0 of the 1024-byte MRC2014 header: bytes 224-303
        fh.seek(224)
        fh.write(SIMULATE_LABEL)


def write_micrograph(cfg: SimulateConfig, mic: Micrograph) -> dict:
    """Write every output file of one micrograph; return its row of ``micrographs.star``."""
    out, px, paths = cfg.outdir, cfg.pixel_size, _relpaths(cfg, mic.name)
    for key in ("full", "even", "odd", "clean"):
        _write_image(out / paths[key], getattr(mic, key), px)
    if mic.movie is not None:
        # uint8 counts ≤ 127 are the same bytes as int8 (MRC mode 0): a view, not a copy.
        small = mic.movie.dtype == np.uint8 and int(mic.movie.max(initial=0)) <= 127
        counts = mic.movie.view(np.int8) if small else mic.movie.astype(np.int16)
        _write_image(out / paths["movie"], counts, px, stack=True)
    if cfg.region_masks and mic.regions is not None:
        _write_image(out / paths["regions"], mic.regions, px)
    lens = mic.optics
    p = mic.particles
    dose = cfg.dose if mic.dose is None else mic.dose
    coords = pd.DataFrame(
        {
            "micrograph": mic.name,
            "x": p["x"].astype(float),
            "y": p["y"].astype(float),
            "psi": p["psi"],
            "class_number": p["species"].astype(int) + 1,
            "rlnAngleRot": p["rot"],
            "rlnAngleTilt": p["tilt"],
            "rlnDefocusU": lens.defocus_u,
            "rlnDefocusV": lens.defocus_v,
            "rlnDefocusAngle": lens.defocus_angle,
            "dracoStructure": p["structure"],
            "dracoAggregate": p["aggregate"].astype(int),
        }
    )
    write_relion_coords(out / paths["coords"], coords)
    if mic.junk is not None and len(mic.junk):
        _add_junk_block(out / paths["coords"], mic.junk)
    motion = pd.DataFrame(
        {
            "frame": np.arange(len(mic.shifts)),
            "shift_x": mic.shifts[:, 0],
            "shift_y": mic.shifts[:, 1],
        }
    )
    write_text_atomic(out / paths["motion"], motion.to_csv(index=False, float_format="%.4f"))
    row = {
        "rlnMicrographName": paths["full"],
        "rlnMicrographMovieName": paths["movie"],
        "rlnOpticsGroup": 1,
        "rlnDefocusU": lens.defocus_u,
        "rlnDefocusV": lens.defocus_v,
        "rlnDefocusAngle": lens.defocus_angle,
        "dracoQuality": mic.plan.quality,
        "dracoReason": mic.plan.reason,
        "dracoIceThickness": round(mic.ice_thickness, 1),
        "dracoContaminatedArea": round(mic.contaminated_area, 4),
        "dracoClean": paths["clean"],
        "dracoMicrographEven": paths["even"],
        "dracoMicrographOdd": paths["odd"],
        "dracoHasPairs": 1,
        "dracoCoordinates": paths["coords"],
        "dracoMotion": paths["motion"],
        # The true trajectory's length in Å under RELION's name (what motion correction
        # reports): draco curate predict reads it as the motion signal.
        "rlnAccumMotionTotal": round(motion_stats(mic.shifts, px).total_shift, 2),
        "rlnMicrographDoseRate": dose / cfg.frames,  # e⁻/Å² per frame
        "dracoDose": dose,  # total e⁻/Å² of the sums
        "dracoFrames": cfg.frames,
        "dracoNumParticles": len(p),
        # The contrast-clipped statistics, as draco prepare writes them (io/manifest.py).
        **stats_columns(clip_stats(mic.full)),
    }
    if cfg.region_masks:
        row["dracoRegions"] = paths["regions"]
    record = {"row": row, "plan": asdict(mic.plan), "optics": asdict(lens)}
    if mic.imaging is not None:
        d = mic.imaging
        row.update(
            {
                "dracoPreset": cfg.preset,
                "dracoDetectorPixelSize": d.detector_pixel_size,
                "dracoBinning": d.binning,
                "dracoCamera": d.camera,
                "dracoInterpolation": d.interpolation,
                "dracoEnvelopeBfactor": round(d.bfactor, 1),
                "dracoIceGradient": round(d.ice_gradient, 3),
                "dracoPreferredSpread": round(d.preferred_spread, 1),
                "dracoInverted": int(d.inverted),  # 1: protein white (stored inverted)
                "dracoNumJunk": 0 if mic.junk is None else len(mic.junk),
            }
        )
        record["imaging"] = d.record()
    write_text_atomic(out / paths["meta"], json.dumps(record, indent=1))  # last: "finished"
    return row


def _add_junk_block(path: Path, junk: pd.DataFrame) -> None:
    """Add a ``data_junk`` block to a coordinate STAR: objects that are not particles.

    Its columns are ``_dracoJunkX/Y`` (px, the package convention), ``_dracoJunkKind``
    (denatured, fragment, ice_ball) and ``_dracoJunkDiameter`` (Å). It has no
    ``_rlnCoordinateX``, so readers of particle coordinates (RELION, ``read_coords``) skip it;
    pickers can read it as negatives.
    """
    blocks = read_star(path)
    blocks["junk"] = pd.DataFrame(
        {
            "dracoJunkX": junk["x"].astype(float).to_numpy(),
            "dracoJunkY": junk["y"].astype(float).to_numpy(),
            "dracoJunkKind": junk["kind"].astype(str).to_numpy(),
            "dracoJunkDiameter": (2 * junk["radius"]).round(1).to_numpy(),
        }
    )
    write_star(path, blocks)


# Worker state: projectors are built once per process, not once per micrograph.
_STATE: dict = {}


def _init_worker(cfg: SimulateConfig, structures: list, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _STATE["cfg"] = cfg
    if cfg.realism is None:
        _STATE["projectors"] = [Projector(s, cfg.pixel_size) for s in structures]
    else:  # a library: built when a micrograph first uses them, a few kept
        _STATE["projectors"] = ProjectorPool(structures, cfg.pixel_size)
    _STATE["bad"] = bad.bad_indices(cfg)
    _STATE["sensitivity"] = _sensitivity(cfg)


def _sensitivity(cfg: SimulateConfig) -> np.ndarray | None:
    if not cfg.gain:
        return None
    return detector.gain_sensitivity(np.random.default_rng([cfg.seed, 0x6A1]), (cfg.size,) * 2)


def _one(index: int) -> dict:
    cfg = _STATE["cfg"]
    mic = simulate_micrograph(
        cfg, index, _STATE["projectors"], index in _STATE["bad"], _STATE["sensitivity"]
    )
    return write_micrograph(cfg, mic)


def _finished_row(cfg: SimulateConfig, index: int) -> dict | None:
    meta = cfg.outdir / _relpaths(cfg, cfg.micrograph_name(index))["meta"]
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text())["row"]
    except (ValueError, KeyError):
        return None  # a damaged record: make the micrograph again


def write_manifest(cfg: SimulateConfig, rows: list[dict]) -> Path:
    """``micrographs.star``: optics block + one row per finished micrograph."""
    px = cfg.pixel_size
    optics = [optics_group(1, px, px, cfg.voltage, cfg.cs, cfg.amplitude_contrast)]
    return manifest.write_manifest(cfg.outdir / "micrographs.star", optics, rows)


@releases_folder_locks
def run_simulation(cfg: SimulateConfig, progress: bool = True) -> RunSummary:
    """Make (or finish) the dataset described by ``cfg``; see the module docstring."""
    make_output_folder(cfg.outdir)
    settings = _check_resume(cfg)
    rows = {i: _finished_row(cfg, i) for i in range(cfg.n_micrographs)}
    todo = [i for i, row in rows.items() if row is None]
    # Structures before the settings are recorded: a bad map must not leave a run whose
    # settings (with that map) refuse the corrected command as "other settings".
    structures = structure_sources(cfg, progress) if todo else []
    write_text_atomic(cfg.outdir / _CONFIG_FILE, settings)
    failures = FailureLog(cfg.outdir)
    if todo:
        if (sensitivity := _sensitivity(cfg)) is not None:  # cfg.gain
            _write_image(cfg.outdir / "gain.mrc", 1.0 / sensitivity, cfg.pixel_size)
        bar = tqdm(total=len(todo), desc="simulate", unit="mic", disable=not progress)
        jobs = min(cfg.jobs, len(todo))
        if jobs == 1:
            # One torch thread everywhere: float results (hence Poisson draws) then do not
            # depend on -j, so the same seed gives the same bytes. Use -j for speed.
            _init_worker(cfg, structures, threads=1)
            for i in todo:
                rows[i] = _guarded(i, cfg, failures)
                bar.update()
        else:
            with ProcessPoolExecutor(
                jobs,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(cfg, structures, 1),
            ) as pool:
                futures = {pool.submit(_one, i): i for i in todo}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        rows[i] = future.result()
                    except Exception as exc:  # one bad micrograph must not stop the batch
                        failures.record(cfg.micrograph_name(i), f"{type(exc).__name__}: {exc}")
                    bar.update()
        bar.close()
    done = [row for i in sorted(rows) if (row := rows[i]) is not None]
    star = write_manifest(cfg, done)
    return RunSummary(
        made=len(done) - (cfg.n_micrographs - len(todo)),
        skipped=cfg.n_micrographs - len(todo),
        failed=failures.count,
        star=star,
    )


def _guarded(index: int, cfg: SimulateConfig, failures: FailureLog) -> dict | None:
    try:
        return _one(index)
    except DracoInputError:
        raise
    except Exception as exc:  # recorded, the batch goes on
        failures.record(cfg.micrograph_name(index), f"{type(exc).__name__}: {exc}")
        return None
