"""The house rules of core/: wings import one way, no circles, and never the daemon's world.

Every module under ``src/flowdrop/core`` is found with ``rglob``, so a new wing or module is
checked the day it appears. Imports are read with ``ast`` (function-level imports included: a
circle hidden inside a function is still a circle).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import flowdrop.core
from tests.sourcegraph import import_graph, imports

FORBIDDEN = ("watchdog", "signal", "daemon", "flowdrop.daemon", "argparse")
CORE = Path(flowdrop.core.__file__).parent
# Lower rank imports nothing of a higher one; equal ranks (other than 0) do not import each other.
RANKS = {
    "": 0,
    "fs": 1,
    "templating": 1,
    "engine": 2,
    "telemetry": 3,
    "report": 4,
    "orchestration": 5,
}
MAX_LOOSE = 6


def _graph() -> dict[str, set[str]]:
    return import_graph(CORE)


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 or (len(parts) == 3 and parts[2] in RANKS) else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Module edges, minus a package's own ``__init__`` re-exporting its submodules."""
    return {(a, b) for a, deps in graph.items() for b in deps if not b.startswith(a + ".")}


def test_core_never_imports_watchdog_signals_python_daemon_or_the_cli() -> None:
    offenders = {
        f"{path.relative_to(CORE)}: {name}"
        for path in sorted(CORE.rglob("*.py"))
        for name in imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offenders == set()


def test_core_has_at_least_four_wings_and_few_loose_modules() -> None:
    wings = {p.parent.name for p in CORE.glob("*/__init__.py")}
    loose = {p.stem for p in CORE.glob("*.py")} - {"__init__"}
    assert wings == set(RANKS) - {""}
    assert len(loose) <= MAX_LOOSE, loose


def test_wings_import_in_one_direction() -> None:
    wrong = sorted(
        f"{a} -> {b}"
        for a, b in _package_edges(_graph())
        if (ra := RANKS[_wing(a)]) < (rb := RANKS[_wing(b)])
        or (ra == rb and ra > 0 and _wing(a) != _wing(b))
    )
    assert wrong == []


def test_no_import_circle_between_modules() -> None:
    graph = _graph()
    edges = _package_edges(graph)
    assert _cycles({a: {b for x, b in edges if x == a} for a in graph}) == []


def test_no_import_circle_between_wings() -> None:
    wing_graph: dict[str, set[str]] = {}
    for a, b in _package_edges(_graph()):
        if _wing(a) != _wing(b):
            wing_graph.setdefault(_wing(a), set()).add(_wing(b))
    assert _cycles(wing_graph) == []


def test_the_checkers_see_a_forbidden_import_and_a_circle(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import signal\ndef f():\n    from watchdog.observers import Observer\n")
    assert {"signal", "watchdog.observers"} <= imports(module)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("module", "wing"),
    [
        ("flowdrop.core.errors", ""),
        ("flowdrop.core.engine", "engine"),
        ("flowdrop.core.engine.queues", "engine"),
        ("flowdrop.core.fs.storage", "fs"),
    ],
)
def test_modules_are_assigned_to_their_wing(module: str, wing: str) -> None:
    assert _wing(module) == wing
