"""The package's layering, checked on the source (``ast``), so that it cannot drift.

The rules are those of ``docs/architecture.md``: the layout follows the data's path and a
package imports only the layers below it; no import cycles; imports inside functions only where
start-up time needs them (the command line's, the TIFF reader's), at most
:data:`MAX_IMPORTS_IN_FUNCTIONS`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "draco_em"

#: Package → the draco_em packages it may import (besides itself). ``""`` is draco_em itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    # stdlib only: where the docs/*.md lie, and how a message points at one (doc_ref)
    "docs_index": {"errors"},
    "weights": set(),  # data only
    "launch": set(),  # stdlib only: the rank of this process, for runtime and the folder lock
    "runtime": {"errors", "launch"},
    "allocator": set(),  # stdlib only: the entry point calls it before torch is imported
    "io": {"errors", "launch"},
    "imaging": {"errors", "io"},
    "model": {"errors", "runtime", "io", "imaging"},
    "simulate": {"errors", "docs_index", "runtime", "io", "imaging"},
    # motion correction shares the simulator's dose-damage curve; the default target pixel
    # size is the bundled model's
    "prepare": {"errors", "runtime", "io", "imaging", "simulate", "model"},
    # metrics sit below the heads: curate and pick use them, they use neither; realism
    # compares micrographs through the encoder (model)
    "evaluate": {"errors", "runtime", "io", "imaging", "model"},
    "infer": {"errors", "runtime", "io", "imaging", "model"},
    # validation on whole micrographs uses the one tiled denoiser and the one PSNR
    "train": {"errors", "docs_index", "runtime", "io", "imaging", "model", "infer", "evaluate"},
    # curate and pick do not import each other, infer or train
    "curate": {"errors", "docs_index", "runtime", "io", "imaging", "model", "evaluate"},
    "pick": {"errors", "docs_index", "runtime", "io", "imaging", "model", "evaluate"},
    "demo": {"errors", "runtime", "io", "imaging", "model", "simulate", "infer", "evaluate"},
    "cli": {
        "",
        "allocator",
        "errors",
        "docs_index",
        "runtime",
        "io",
        "imaging",
        "model",
        "simulate",
        "prepare",
        "train",
        "infer",
        "curate",
        "pick",
        "evaluate",
        "demo",
    },
    "__main__": {"cli"},
}
#: Package imports inside functions allowed in all (issue 15: at most 20, one per command's
#: library; 21 since `draco relion`, session 20 of issues 18-20, a command with its own; 22
#: since `draco watch`, session 21, another).
MAX_IMPORTS_IN_FUNCTIONS = 22


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. draco_em.pick.run
    target: str  # imported module, e.g. draco_em.io.coords
    line: int
    in_function: bool
    type_only: bool  # under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """``draco_em.pick.run`` → ``pick``; ``draco_em.errors`` → ``errors``; ``draco_em`` → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> list[Import]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        in_function: set[int] = set()
        type_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function |= {id(n) for n in ast.walk(node)}
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_only |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target == "draco_em" or target.startswith("draco_em."):
                    out.append(Import(module, target, node.lineno, id(node) in in_function,
                                      id(node) in type_only))  # fmt: skip
    return out


IMPORTS = _imports()


def test_the_scan_sees_the_package() -> None:
    modules = {i.source for i in IMPORTS}
    assert {"draco_em.pick.run", "draco_em.model.encoder", "draco_em.io.coords"} <= modules
    assert len(IMPORTS) > 200


def test_every_package_has_a_rule() -> None:
    packages = {_package(_module_name(p)) for p in SRC.rglob("*.py")} - {""}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_imports_follow_the_layers() -> None:
    bad = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in IMPORTS
        if (src := _package(i.source)) != (dst := _package(i.target)) and dst not in ALLOWED[src]
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    for i in IMPORTS:
        target = i.target if i.target in modules else i.target.rsplit(".", 1)[0]
        if not i.type_only and target in modules and target != i.source:
            graph.setdefault(i.source, set()).add(target)
    # Package __init__ modules are imported with each of their modules: drop those edges
    # (a module importing its own package's __init__ is not a cycle of the design).
    for source, targets in graph.items():
        targets -= {t for t in targets if source.startswith(t + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_few_imports_inside_functions() -> None:
    lazy = [f"{i.source}:{i.line} {i.target}" for i in IMPORTS if i.in_function]
    assert len(lazy) <= MAX_IMPORTS_IN_FUNCTIONS, "\n".join(lazy)
    # Outside the command line, only the TIFF/EER reader is imported late (tifffile).
    library = [i for i in IMPORTS if i.in_function and _package(i.source) != "cli"]
    assert [i.target for i in library] == ["draco_em.io.tiff_movies"]


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [("pick", "curate", False), ("curate", "pick", False), ("io", "model", False),
     ("model", "io", True), ("evaluate", "curate", False), ("pick", "evaluate", True)],
)  # fmt: skip
def test_the_rules_say_what_the_issue_says(source: str, target: str, allowed: bool) -> None:
    assert (target in ALLOWED[source]) is allowed
