"""House rules for all of src/: no dead module, no module over 400 lines.

Every module is imported by another module of the package or is an entry point (the console
script, or a package's ``__init__``); a module nobody imports is dead weight that still has to
be read, typed and kept working.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.sourcegraph import SRC, import_graph, imports, module_name

PYPROJECT = SRC.parents[1] / "pyproject.toml"
MAX_LINES = 400
# Modules whose callers live outside src/ on purpose.
SUPPORT = {"flowdrop.daemon.testing"}  # test and benchmark support API, like structlog.testing


def _entry_points() -> set[str]:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    return {str(target).partition(":")[0] for target in scripts.values()}


def test_every_module_has_a_caller_or_is_an_entry_point() -> None:
    graph = import_graph(SRC)
    used = {dep for deps in graph.values() for dep in deps}
    packages = {module_name(p) for p in SRC.rglob("__init__.py")}
    modules = set(graph)
    assert sorted(modules - used - packages - _entry_points() - SUPPORT) == []


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_dead_module_check_sees_an_unimported_module(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import pkg.b\nfrom pkg import c\n")
    assert imports(tmp_path / "a.py") & {"pkg.b", "pkg.c", "pkg.d"} == {"pkg.b", "pkg.c"}
