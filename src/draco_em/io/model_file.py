"""Model files: find one, open it, check its format tag, read its metadata; one error wording.

Every trained thing draco-em writes (DRACO weights, curation heads, pickers) is one safetensors
file whose string metadata carries a ``format`` tag and JSON fields; training checkpoints are
``torch.save`` dicts read with ``weights_only=True``. Every loader goes through here, so that

* ``"bundled"``, a run folder and a file are resolved the same way (:func:`resolve_model_file`);
* a missing, unreadable or foreign file is always a :class:`DracoInputError` naming the file,
  worded ``<what> not found``, ``cannot read <what> (<reason>)`` (a torch file:
  ``cannot read <what>: not a PyTorch checkpoint, or a damaged one (<reason>)``) or
  ``not a <what> (format tag ...)``;
* a Ctrl-C while a file is read stops the command as Ctrl-C (exit 130), never as a damaged
  file (:func:`interrupt_after`).

The files shipped with the package live in :mod:`draco_em.weights` (read with
``importlib.resources``; never downloaded).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path

T = TypeVar("T")

#: The model name that means "the file shipped with the package".
BUNDLED = "bundled"
#: Package holding the shipped model files.
BUNDLED_PACKAGE = "draco_em.weights"
#: What each draco-em format tag is, so that a model file given where another kind is expected
#: is named in the error and ``draco info`` describes every safetensors kind. The tags are
#: defined beside their readers (``model.weights``, ``curate.head``, ``pick.model_io``,
#: ``pick.checkpoint``); a test checks that they agree with this table.
FORMAT_KINDS = {
    "draco-em/1": "DRACO weights (draco export)",
    "draco-em-curator/1": "curation model (draco curate train)",
    "draco-em-picker/1": "particle picker (draco pick train)",
    "draco-em-pick-train-checkpoint/1": "checkpoint of an unfinished draco pick train run "
    "(finish it with the same pick train command and --resume latest)",
}
#: The model file each training command leaves in its run folder, and its tag, so that a run
#: folder given where another kind is expected is named (a test checks them against
#: ``pick.model_io`` and ``curate.head``).
RUN_FILES = {
    "picker.safetensors": "draco-em-picker/1",
    "curator.safetensors": "draco-em-curator/1",
}


def resolve_model_file(
    model: str | Path,
    bundled_file: str,
    *,
    missing_bundled: str,
    not_found: str,
    run_file: str | None = None,
) -> Path:
    """The one way every command finds a model file: ``"bundled"``, a run folder or a file.

    Args:
        model: ``"bundled"`` (the file shipped in :mod:`draco_em.weights`), a run folder (with
            ``run_file``) or a path.
        bundled_file: name of the shipped file.
        missing_bundled: message when the package ships no such file.
        not_found: message when the given path is not a file.
        run_file: file name inside a run folder, when folders are accepted.
    """
    if str(model) == BUNDLED:
        bundled = importlib.resources.files(BUNDLED_PACKAGE) / bundled_file
        if not bundled.is_file():
            raise DracoInputError(missing_bundled)
        return Path(str(bundled))
    path = Path(model)
    folder = path.is_dir()
    if run_file is not None and folder:
        path = path / run_file
    if not path.is_file():
        raise DracoInputError(not_found + (folder_holds(Path(model)) if folder else ""), path)
    return path


def folder_holds(folder: Path) -> str:
    """What model a run folder of another command holds, for a refusal: ``"; the folder holds
    picker.safetensors, a particle picker (draco pick train)"``, or ``""``."""
    held = [f"{name}, a {FORMAT_KINDS[tag]}" for name, tag in RUN_FILES.items()
            if (folder / name).is_file()]  # fmt: skip
    return f"; the folder holds {' and '.join(held)}" if held else ""


#: The settings key of :func:`model_stamp` (denoise's weights, pick predict's picker).
MODEL_STAMP = "model_file"


def model_stamp(path: Path) -> str:
    """A model file's version as a batch folder's settings record it (``model_file``): name,
    size and modification time. A file rewritten in place (a ``draco pretrain`` run's best
    checkpoint as it trains on, a picker trained again at the same path) then differs from the
    record, so that outputs made with the old one are not resumed beside new ones
    (:func:`draco_em.io.batch.check_settings`)."""
    st = path.stat()
    # in UTC: a folder made on a node in another time zone (a container's UTC) stays the same
    utc = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
    when = utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return f"{path.name}, {st.st_size} bytes, modified {when}"


def rewritten_while_read(before: str, after: str, path: str | Path) -> DracoInputError:
    """The one refusal of a model file whose :func:`model_stamp` changed while a run read it
    (a ``draco pretrain`` run saving its best checkpoint): what the run used is unknown."""
    return DracoInputError(
        f"the model file was rewritten while this run read it ({before} → {after}): run "
        "again once it is written, or give a copy of it",
        path,
    )


def load_stamped(path: Path | None, load: Callable[[], T]) -> tuple[T, str | None]:
    """(``load()``, the :func:`model_stamp` of ``path`` it was loaded from; None where
    ``path`` is None: a bundled model). The stamp is taken before and checked after, so that
    the version a batch folder records is the one its outputs are made with.

    Raises:
        DracoInputError: the file was rewritten while it was loaded
            (:func:`rewritten_while_read`).
    """
    before = None if path is None else model_stamp(path)
    value = load()
    if path is not None and before is not None and (after := model_stamp(path)) != before:
        raise rewritten_while_read(before, after, path)
    return value, before


def is_bundled_model(model: str | Path, resolve: Callable[[str | Path], Path]) -> bool:
    """True for ``"bundled"`` and for the shipped file given by its path (or its run folder);
    ``resolve`` is the command's own :func:`resolve_model_file` wrapper."""
    if str(model) == BUNDLED:
        return True
    try:
        return resolve(model).resolve() == resolve(BUNDLED).resolve()
    except DracoInputError:  # nothing shipped, or ``model`` not found (reported later)
        return False


@dataclass
class ModelFile:
    """A safetensors model file as read.

    Attributes:
        path: the file.
        what: what it should be, for messages ("DRACO weights file", "curation model", ...).
        header: its string metadata (``format`` tag and JSON fields).
        tensors: name → tensor (empty when read with ``tensors=False``).
        shapes: name → shape of every tensor.
    """

    path: Path
    what: str
    header: dict[str, str]
    tensors: dict[str, torch.Tensor]
    shapes: dict[str, list[int]]

    def json(self, key: str, default: Any = None) -> Any:
        """The JSON field ``key`` of the metadata, or ``default`` when absent."""
        if key not in self.header:
            return default
        return parse_json_field(self.header, key, self.path, self.what)


def parse_json_field(header: Mapping[str, Any], key: str, path: Path, what: str) -> Any:
    """``json.loads(header[key])`` whose failure names the file and the field."""
    try:
        return json.loads(header[key])
    except (json.JSONDecodeError, TypeError) as exc:
        raise DracoInputError(f"cannot read {what} (corrupt {key} metadata: {exc})", path) from None


def read_model_file(
    path: str | Path,
    what: str,
    fmt: str | None = None,
    *,
    tensors: bool = True,
    untagged: bool = False,
) -> ModelFile:
    """Open a safetensors model file and check its format tag.

    Args:
        path: the file (already resolved, :func:`resolve_model_file`).
        what: what it should be, for messages.
        fmt: required ``format`` tag; None accepts any.
        tensors: also read the tensors (False: metadata and shapes only, cheap).
        untagged: also accept a file without a draco-em tag (official DRACO safetensors have
            none; those saved by Hugging Face tools say ``format: pt``), refusing only the
            other draco-em kinds (:data:`FORMAT_KINDS`).

    Raises:
        DracoInputError: ``cannot read <what> (...)`` for a missing or corrupt file,
            ``not a <what> (format tag ...)`` for a foreign one.
    """
    path = Path(path)
    if not path.is_file():
        raise DracoInputError(f"{what} not found", path)
    with interrupt_after():
        try:
            with safe_open(str(path), framework="pt") as fh:
                header = dict(fh.metadata() or {})
                shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
                state = {k: fh.get_tensor(k) for k in fh.keys()} if tensors else {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise DracoInputError(f"cannot read {what} ({exc})", path) from None
    tag = header.get("format")
    foreign = untagged and tag not in FORMAT_KINDS
    if fmt is not None and tag != fmt and not foreign:
        kind = FORMAT_KINDS.get(str(tag))
        raise DracoInputError(
            f"not a {what} (format tag {tag!r}, expected {fmt!r}"
            + (f": this is a {kind})" if kind else ")"),
            path,
        )
    return ModelFile(path, what, header, state, shapes)


def describe_model_file(file: ModelFile) -> dict:
    """Summary of any draco-em model file for ``draco info``: its kind, tag, parameter count
    and metadata fields (JSON parsed; lists and nested objects of more than a few values left
    out, as the file's own reader has them)."""
    tag = file.header.get("format")
    fields: dict[str, Any] = {}
    for key, text in file.header.items():
        if key == "format":
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        fields[key] = (
            {k: v for k, v in value.items() if _brief(v)} if isinstance(value, dict) else value
        )
    return {
        "format": FORMAT_KINDS.get(str(tag), "safetensors"),
        "format_tag": tag,
        "parameters": sum(int(torch.Size(s).numel()) for s in file.shapes.values()),
        **fields,
    }


def _brief(value: Any) -> bool:
    """A value short enough for one line of ``draco info``: a scalar or a few scalars."""
    if isinstance(value, list):
        return len(value) <= 8 and all(not isinstance(v, (list, dict)) for v in value)
    return not isinstance(value, dict)


def write_model_file(
    path: str | Path, tensors: Mapping[str, torch.Tensor], header: Mapping[str, str]
) -> Path:
    """Write tensors (moved to the CPU, contiguous) and string metadata atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=dict(header))
    return path


def read_torch_file(path: str | Path, what: str, fmt: str | None = None) -> Any:
    """``torch.load(weights_only=True)`` on the CPU (never unpickles code), one error wording.

    Args:
        fmt: the ``format`` tag the file should carry, if any: a file tagged as another
            draco-em kind (:data:`FORMAT_KINDS`) is refused as :func:`read_model_file` does
            (pretrain's and official checkpoints carry no tag and pass).
    """
    path = Path(path)
    if not path.is_file():
        raise DracoInputError(f"{what} not found", path)
    with interrupt_after():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and safety errors all mean "not such a file"
            raise DracoInputError(f"cannot read {what}: {_torch_load_reason(exc)}", path) from None
    tag = state.get("format") if isinstance(state, Mapping) else None
    if isinstance(tag, str) and tag in FORMAT_KINDS and tag != fmt:
        raise DracoInputError(
            f"not a {what} (format tag {tag!r}: this is the {FORMAT_KINDS[tag]})", path
        )
    return state


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back until the block ends, then raise KeyboardInterrupt.

    Used where an interrupt inside the block would leave a wrong state behind: a model read
    (below), and a training step between its optimiser update and its step count
    (``train.engine``: a checkpoint saved there applied the step twice on resume).

    A KeyboardInterrupt raised inside torch's or safetensors' native code can come out as a
    ValueError ("could not determine the shape of object type 'torch.storage.UntypedStorage'"),
    which the readers above would report as a damaged model file: exit 2 and a false alarm
    about the user's file. Reading a model takes well under a second, so the interrupt waits
    for it and then stops the command as Ctrl-C does (exit 130), whatever the block raised.
    Outside the main thread signals cannot be handled and the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and previous is not signal.SIG_IGN:
            if previous is signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)  # the default action: the process ends
            elif callable(previous) and previous is not signal.default_int_handler:
                previous(signal.SIGINT, None)  # the caller's own handler decides
            raise KeyboardInterrupt


def _torch_load_reason(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in a few words.

    torch wraps the reason in ~700 characters advising ``weights_only=False`` (which would run
    code from the file) and a bug report to PyTorch: wrong advice for a corrupt or foreign file.
    """
    text = str(exc)
    unsafe = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if unsafe:  # a readable pickle that stores Python objects, not only tensors
        return f"it holds a pickled {unsafe[1]}; draco loads only tensors and plain values"
    lines = (text.partition("WeightsUnpickler error:")[2] or text).strip().splitlines()
    # The first sentence: torch appends advice after it ("This is an internal miniz error...").
    reason = lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__
    return f"not a PyTorch checkpoint, or a damaged one ({reason})"
