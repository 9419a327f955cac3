"""House rules for all of src/: no dead module, no module over 400 lines.

Every module is imported by another module of the package or is an entry point (the console
script, or a package's ``__init__``); a module nobody imports is dead weight that still has to
be read, typed and kept working.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import flowdrop

SRC = Path(flowdrop.__file__).parent
PYPROJECT = SRC.parents[1] / "pyproject.toml"
MAX_LINES = 400
# Modules whose callers live outside src/ on purpose.
SUPPORT = {"flowdrop.daemon.testing"}  # test and benchmark support API, like structlog.testing


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & modules


def _entry_points() -> set[str]:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    return {str(target).partition(":")[0] for target in scripts.values()}


def test_every_module_has_a_caller_or_is_an_entry_point() -> None:
    paths = {_name(p): p for p in SRC.rglob("*.py")}
    modules = set(paths)
    used = {dep for name, path in paths.items() for dep in _imported(path, modules) - {name}}
    packages = {name for name, path in paths.items() if path.name == "__init__.py"}
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
    assert _imported(tmp_path / "a.py", {"pkg.b", "pkg.c", "pkg.d"}) == {"pkg.b", "pkg.c"}
