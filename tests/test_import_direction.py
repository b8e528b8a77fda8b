"""Imports flow one way (DESIGN.md, "Layout and the direction of imports").

Every module of ``src/membra`` is parsed (no import is executed) and every ``import`` and
``from ... import`` in it is collected, at module level AND inside functions, classes and
``if`` blocks (``ast.walk``), relative imports resolved against the module's package. Each
import from one membra package into another must

- go downward or sideways in :data:`LEVEL` (never to a higher level), and
- name nothing private: no ``_name`` imported from another package and no path through a
  private module (``membra.kernels._prep``) of another package.

Imports inside one package are free. The allow-list :data:`ALLOWED` names each remaining
violation in code that other open work rewrites, with the issue section that removes it; an
entry that no longer occurs fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "membra"

#: DESIGN.md's order, lowest first: ``functional <- kernels <- nn <- {losses, metrics, models,
#: data, plotting} <- {convert, construct, homeostasis, export, analysis} <- {train, control}
#: <- experiments <- cli``. Placements DESIGN.md does not spell out:
#:
#: - ``energy`` (``membra/energy/``): synaptic operations and energy, which DESIGN.md puts in
#:   ``metrics/`` ("firing rates, synaptic operations (SOPs) and energy"): metrics level.
#: - ``bench``: the latency benchmark, which DESIGN.md lists among the ``experiments`` runners:
#:   experiments level.
#: - ``analysis``: "pure analysis of results": its own place in the convert level.
#: - ``membra`` itself (``membra/__init__.py``, ``from membra import readout``): the facade
#:   re-exports functional, kernels, nn, losses and metrics, so it sits at their level
#:   (``load_run`` is a lazy attribute, imported on first use, not an import statement).
#: - ``__main__`` (``python -m membra``) starts the CLI: cli level.
LEVEL = {
    "functional": 0,
    "kernels": 1,
    "nn": 2,
    "losses": 3, "metrics": 3, "energy": 3, "models": 3, "data": 3, "plotting": 3,
    "membra": 3,
    "convert": 4, "construct": 4, "homeostasis": 4, "export": 4, "analysis": 4,
    "train": 5, "control": 5,
    "experiments": 6, "bench": 6,
    "cli": 7, "__main__": 7,
}

#: ``(importing module, imported module or module.name, kind)`` of each remaining violation,
#: each with the open work that removes it. Keep it short; delete an entry with its cause.
ALLOWED = {
    # `membra control sweep` resolves a controller name through control's private resolver.
    # Issue 16 section 4 rewrites that resolver (a local folder named like a shipped
    # controller must not shadow it silently) and section 1 asks for no private
    # cross-package import: make it public there (e.g. control.checkpoint.resolve_controller).
    ("membra.cli.control", "membra.control.checkpoint._resolve", "private"):
        "issue 16 section 4 (control CLI) / section 1 (no private cross-package import)",
}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), is_pkg, path


def _package(module: str) -> str:
    """``membra.train.engine -> train``, ``membra -> membra``, ``membra.__main__ ->
    __main__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "membra"


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    base = SRC / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(module: str, is_pkg: bool, tree: ast.AST):
    """``(target module or module.name, names checked for privacy, line)`` for every import
    of a membra module, wherever it appears in the file."""
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "membra" or a.name.startswith("membra."):
                    yield a.name, [a.name.split(".")[-1]], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if not (src == "membra" or src.startswith("membra.")):
                continue
            for a in node.names:
                full = f"{src}.{a.name}"
                # `from membra.x import y`: y is a submodule or a name defined in membra.x
                yield (full if _is_module(full) else src), [a.name], node.lineno


def _private(target: str, names: list[str]) -> bool:
    parts = target.split(".")[1:] + names
    return any(p.startswith("_") and not p.startswith("__") for p in parts)


def violations():
    found = {}
    for module, is_pkg, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = _package(module)
        for target, names, line in _imports(module, is_pkg, tree):
            there = _package(target)
            if there == here:
                continue
            # a module import names the module; a name import names module.name
            name = target if target.endswith("." + names[0]) else f"{target}.{names[0]}"
            if LEVEL[there] > LEVEL[here]:
                found.setdefault((module, name, "upward"), f"{path.name}:{line}")
            if _private(target, names):
                found.setdefault((module, name, "private"), f"{path.name}:{line}")
    return found


def test_every_package_has_a_level():
    packages = {_package(m) for m, _, _ in _modules()}
    assert packages <= set(LEVEL), sorted(packages - set(LEVEL))


def test_imports_flow_one_way_and_name_nothing_private():
    found = violations()
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not new, "imports against DESIGN.md's direction or of private names:\n" + "\n".join(
        f"  {m} imports {t} ({kind}) at {where}" for (m, t, kind), where in sorted(new.items()))
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"allow-list entries that no longer occur (delete them): {stale}"


def test_the_checker_sees_what_it_must():
    """The checker itself, on generated sources: upward imports at module level, inside a
    function, a class body and a try block, relative and absolute; private names and private
    modules of another package; the same imports inside one package are free."""
    cases = [
        ("membra.nn.layers", False, "from ..train import fit", "upward"),
        ("membra.nn.layers", False, "def f():\n    from membra.train import fit", "upward"),
        ("membra.convert.snn", False, "class A:\n    import membra.train.engine", "upward"),
        ("membra.convert.snn", False, "try:\n    from ..cli import app\nexcept ImportError:\n"
                                      "    pass", "upward"),
        ("membra.train.engine", False, "from ..convert.qcfs import replace_relu", None),
        ("membra.cli.train", False, "from ..train.engine import _info", "private"),
        ("membra.train", True, "from ..kernels._prep import prepare", "private"),
        ("membra.train.runs", False, "from .engine import _info", None),
        ("membra.kernels.cpu", False, "from ._prep import x", None),
        ("membra.functional.neuron", False, "from .. import readout", "upward"),
    ]
    for module, is_pkg, code, expected in cases:
        here = _package(module)
        kinds = set()
        for target, names, _ in _imports(module, is_pkg, ast.parse(code)):
            there = _package(target)
            if there == here:
                continue
            if LEVEL[there] > LEVEL[here]:
                kinds.add("upward")
            if _private(target, names):
                kinds.add("private")
        assert (expected in kinds) if expected else not kinds, (module, code, kinds)
