"""Signals beyond the image: motion, CTF fit, defocus and ice from the micrographs STAR.

A RELION (or ``draco prepare`` / ``draco simulate``) micrograph list often already says why a
micrograph is bad: the motion correction's accumulated motion, the CTF fit's resolution and
defocus, an ice estimate. cryoSPARC's *Curate Exposures* rejects on thresholds of exactly
these; :func:`check_signals` does the same, *beside* the image head: a micrograph is rejected
when the image head rejects it or when any enabled threshold fails, and the reason of a
threshold rejection is the signal's (``drift`` for motion, ``ctf_fit``, ``defocus``,
``astigmatism``, ``thick_ice`` for ice). Each row of ``curation.csv`` says which signals were
read (``signals``) and which decided (``decided_by``: ``image`` or the failing signals).

Columns read (the first present wins), with their units:

=================  ================================================  ==========================
signal             STAR column(s)                                    unit
=================  ================================================  ==========================
``motion``         ``rlnAccumMotionTotal``, ``dracoTotalShift``,     Å, whole-movie path length
                   else the ``dracoMotion``/``dracoMotionFile`` CSV
                   (``frame,shift_x,shift_y`` in movie pixels)
``ctf_resolution`` ``rlnCtfMaxResolution``                           Å
``defocus``        mean of ``rlnDefocusU``, ``rlnDefocusV``          Å in the STAR, µm here
``astigmatism``    ``|rlnDefocusU - rlnDefocusV|``                   µm
``ice``            ``rlnCtfIceRingDensity``                          CTFFIND's ice-ring power
=================  ================================================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from draco_em.curate.config import SignalRules
from draco_em.errors import DracoInputError
from draco_em.io.motion import motion_stats, read_motion_csv
from draco_em.io.star import MicrographTable, finite_number

#: Signal names in the order their rejections are reported; value columns in curation.csv.
SIGNALS = ("motion", "ice", "ctf_resolution", "defocus", "astigmatism")
VALUE_COLUMNS = {
    "motion": "motion_A",
    "ice": "ice_ring_density",
    "ctf_resolution": "ctf_resolution_A",
    "defocus": "defocus_um",
    "astigmatism": "astigmatism_um",
}
#: The reject reason each signal gives.
REASONS = {
    "motion": "drift",
    "ice": "thick_ice",
    "ctf_resolution": "ctf_fit",
    "defocus": "defocus",
    "astigmatism": "astigmatism",
}


def _number(row, column: str) -> float | None:
    """``row[column]`` as a finite float, or None (absent, empty, not a number)."""
    return finite_number(row.get(column))


def _failed_fit(value: object) -> bool:
    """A CTF fit resolution written as ``inf`` (CTFFIND's failed fit): worse than any limit;
    read as absent, it would let the micrograph pass unchecked. ``nan`` stays absent: tables
    merged from several sources (draco's own outputs too) write it for a missing value."""
    try:
        return float(value) == np.inf  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def read_signals(table: MicrographTable, row_index: int) -> dict[str, float]:
    """The signals the STAR holds for the micrograph at position ``row_index``.

    Returns:
        ``{signal: value}`` for the signals present (units in the module docstring).

    Raises:
        DracoInputError: a motion CSV named in the row that cannot be read.
    """
    row = table.micrographs.iloc[row_index]
    out: dict[str, float] = {}
    for column in ("rlnAccumMotionTotal", "dracoTotalShift"):
        if (value := _number(row, column)) is not None:
            out["motion"] = value
            break
    else:
        for column in ("dracoMotion", "dracoMotionFile"):
            name = row.get(column)
            if isinstance(name, str) and name.strip() and name != '""':
                path = table.resolve(name)
                if path.is_file():
                    shifts = read_motion_csv(path)
                    px = _movie_pixel_size(table, row_index)
                    if px is None:
                        raise DracoInputError(
                            f"motion CSV {path} is in movie pixels but the STAR gives no "
                            "pixel size",
                            table.path,
                        )
                    out["motion"] = motion_stats(shifts, px).total_shift
                break
    if (value := _number(row, "rlnCtfMaxResolution")) is not None:
        out["ctf_resolution"] = value
    elif _failed_fit(row.get("rlnCtfMaxResolution")):  # CTFFIND's inf: no Thon rings fitted
        out["ctf_resolution"] = float("inf")
    du, dv = _number(row, "rlnDefocusU"), _number(row, "rlnDefocusV")
    if du is not None:
        dv = du if dv is None else dv
        out["defocus"] = (du + dv) / 2 / 1e4
        out["astigmatism"] = abs(du - dv) / 1e4
    if (value := _number(row, "rlnCtfIceRingDensity")) is not None:
        out["ice"] = value
    return out


def _movie_pixel_size(table: MicrographTable, row_index: int) -> float | None:
    """Pixel size of the movie the motion CSV counts in: ``rlnMicrographOriginalPixelSize``
    (the micrograph's or its optics group's), else the micrograph's own."""
    original = table.positive_value(row_index, "rlnMicrographOriginalPixelSize")
    return original if original is not None else table.pixel_size(row_index)


@dataclass
class SignalVerdict:
    """What the signals say about one micrograph.

    Attributes:
        values: the signals read (:func:`read_signals`).
        checked: the signals read *and* compared with an enabled threshold: those that took
            part in the decision, in :data:`SIGNALS` order.
        failed: the checked signals whose threshold failed.
    """

    values: dict[str, float]
    checked: list[str]
    failed: list[str]

    @property
    def reason(self) -> str | None:
        """The reject reason of the first failed signal, or None when all pass."""
        return REASONS[self.failed[0]] if self.failed else None


def check_signals(values: dict[str, float], rules: SignalRules) -> SignalVerdict:
    """Apply the thresholds of ``rules`` to one micrograph's signals (absent ones are skipped)."""
    checked = [s for s in SIGNALS if s in values and _enabled(rules, s)]
    failed = [s for s in checked if not _passes(values[s], rules, s)]
    return SignalVerdict(dict(values), checked, failed)


def _limit(rules: SignalRules, name: str) -> float | tuple[float, float] | None:
    """The threshold of signal ``name`` (``defocus``: a range), None when it is off."""
    return {
        "motion": rules.max_motion,
        "ice": rules.max_ice_ring_density,
        "ctf_resolution": rules.max_ctf_resolution,
        "defocus": rules.defocus_range,
        "astigmatism": rules.max_astigmatism,
    }[name]


def _enabled(rules: SignalRules, name: str) -> bool:
    return rules.enabled and _limit(rules, name) is not None


def _passes(value: float, rules: SignalRules, name: str) -> bool:
    limit = _limit(rules, name)
    if isinstance(limit, tuple):  # defocus: a range
        lo, hi = limit
        return lo <= value <= hi
    return bool(value <= float(limit))  # type: ignore[arg-type]


#: The option that sets each signal's threshold, and where a STAR carries the signal.
SIGNAL_OPTIONS = {
    "motion": ("--max-motion", "rlnAccumMotionTotal, dracoTotalShift or a motion CSV"),
    "ctf_resolution": ("--max-ctf-resolution", "rlnCtfMaxResolution"),
    "defocus": ("--defocus-range", "rlnDefocusU/V"),
    "astigmatism": ("--max-astigmatism", "rlnDefocusU/V"),
    "ice": ("--max-ice-ring-density", "rlnCtfIceRingDensity"),
}


def unused_thresholds(rules: SignalRules, seen: set[str]) -> str | None:
    """A line naming the thresholds the user set (not the defaults) that no input's STAR
    row could be checked against, or that ``--no-signals`` switched off: they were not
    applied, which must not pass unsaid."""
    default = SignalRules()
    chosen = {
        name: option_where
        for name, option_where in SIGNAL_OPTIONS.items()
        if _limit(rules, name) is not None and _limit(rules, name) != _limit(default, name)
    }
    if not rules.enabled:  # the user set a threshold and also turned every signal off
        if not chosen:
            return None
        options = ", ".join(option for option, _ in chosen.values())
        return f"thresholds not applied, since --no-signals ignores the STAR's columns: {options}"
    unused = [
        f"{option} (needs {where})" for name, (option, where) in chosen.items() if name not in seen
    ]
    if not unused:
        return None
    return f"thresholds not applied, since no input carries their signal: {'; '.join(unused)}"


def value_columns(values: dict[str, float]) -> dict[str, float]:
    """The curation.csv value columns of one micrograph (NaN for a signal not read)."""
    return {col: float(values.get(name, np.nan)) for name, col in VALUE_COLUMNS.items()}
